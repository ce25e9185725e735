"""Deterministic JSON values that validate against a JSON Schema.

Structured outputs and tool-call arguments are made here: :func:`generate` walks
a schema and builds a plausible value from a seed, the same value for the same
seed. It covers what OpenAI's structured outputs accept:

- ``type`` (one name, or a list such as ``["string", "null"]``, where the first
  non-null type is used), ``enum`` and ``const`` anywhere;
- objects (``properties``, ``required``; with ``strict`` every property is
  emitted, otherwise the required ones and about half of the others; no
  property outside ``properties`` is ever added);
- arrays (``items``, ``minItems``, ``maxItems``, ``uniqueItems``);
- strings (``minLength``, ``maxLength``, ``format`` date, date-time, time,
  email, uri/url, uuid, hostname, ipv4);
- integers and numbers (``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum`` as numbers or draft-4 booleans, ``multipleOf``);
- booleans and null;
- ``anyOf``/``oneOf`` (the first branch, or a non-recursive one when the value
  is already deep), ``allOf`` (merged), and ``$ref`` to ``#/$defs/...``,
  ``#/definitions/...`` or any other local JSON pointer.

``pattern`` is not interpreted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import random
import uuid
from collections.abc import Mapping

Schema = Mapping[str, object]

_DEEP = 6
"""Nesting depth past which arrays get their fewest items and recursive
branches are avoided, so that recursive schemas terminate."""

_MAX_DEPTH = 32
_DEFAULT_SPAN = 100
_EPOCH = datetime.date(2024, 1, 1)

_WORDS: tuple[str, ...] = (
    "alpha", "amber", "harbor", "meadow", "signal", "river", "summit", "cedar",
    "lantern", "orbit", "pixel", "quartz", "ridge", "tandem", "violet", "willow",
    "beacon", "canyon", "delta", "ember", "falcon", "glacier", "horizon", "island",
)  # fmt: skip

_NAMES: tuple[str, ...] = (
    "Alex Morgan", "Sam Rivera", "Jordan Lee", "Taylor Kim", "Casey Patel",
    "Robin Diaz", "Morgan Chen", "Jamie Novak",
)  # fmt: skip

_CITIES: tuple[str, ...] = (
    "Paris", "Tokyo", "Lisbon", "Toronto", "Nairobi", "Oslo", "Lima", "Seoul",
)  # fmt: skip

_COUNTRIES: tuple[str, ...] = (
    "France", "Japan", "Portugal", "Canada", "Kenya", "Norway", "Peru", "Korea",
)  # fmt: skip


class SchemaError(ValueError):
    """The schema cannot be followed (an unresolvable ``$ref``, a cycle)."""


def generate(
    schema: Schema | bool, seed: bytes | str, *, strict: bool = False
) -> object:
    """Return a value that validates against ``schema``, determined by ``seed``.

    Args:
        schema: a JSON Schema (a ``true`` schema gives a string).
        seed: the same seed always gives the same value.
        strict: emit every property of every object, as OpenAI's strict mode does.

    Raises:
        SchemaError: a ``$ref`` cannot be resolved, or refs loop without end.
    """
    raw = seed.encode() if isinstance(seed, str) else seed
    rng = random.Random(int.from_bytes(hashlib.sha256(raw).digest()[:16], "big"))
    root: Schema = schema if isinstance(schema, Mapping) else {}
    return _Generator(root, rng, strict).value(root, 0, "")


class _Generator:
    def __init__(self, root: Schema, rng: random.Random, strict: bool) -> None:
        self._root = root
        self._rng = rng
        self._strict = strict

    def value(self, schema: object, depth: int, hint: str) -> object:
        if depth > _MAX_DEPTH:
            raise SchemaError("The schema nests too deeply (or its refs loop).")
        if not isinstance(schema, Mapping):
            return self._string({}, hint)  # ``true`` or a malformed subschema
        schema = self._merged(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self._rng.choice(enum)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(branches, depth), depth + 1, hint)
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth, hint)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, hint)

    # --- schema plumbing ---------------------------------------------------

    def _merged(self, schema: Schema, depth: int) -> Schema:
        """``schema`` with its ``$ref`` and ``allOf`` folded in."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self._resolve(ref)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if depth > _MAX_DEPTH:
                raise SchemaError("The schema's refs loop without end.")
            schema = {**self._merged(target, depth + 1), **rest}
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged: dict[str, object] = {
                k: v for k, v in schema.items() if k != "allOf"
            }
            for part in parts:
                if isinstance(part, Mapping):
                    _merge_into(merged, self._merged(part, depth + 1))
            schema = merged
        return schema

    def _resolve(self, ref: str) -> Schema:
        if not ref.startswith("#"):
            raise SchemaError(f"Only local $ref values are supported, not {ref!r}.")
        node: object = self._root
        for raw in ref[1:].split("/")[1:]:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaError(f"The $ref {ref!r} cannot be resolved.")
        if not isinstance(node, Mapping):
            raise SchemaError(f"The $ref {ref!r} does not name a schema.")
        return node

    def _branch(self, branches: list[object], depth: int) -> object:
        if depth < _DEEP:
            return branches[0]
        # Deep inside a recursive schema: prefer a branch that ends the recursion.
        for branch in branches:
            if isinstance(branch, Mapping) and not _recurses(branch):
                return branch
        return branches[0]

    def _type(self, schema: Schema) -> str:
        declared = schema.get("type")
        if isinstance(declared, list):
            names = [t for t in declared if isinstance(t, str)]
            non_null = [t for t in names if t != "null"]
            return non_null[0] if non_null else (names[0] if names else "string")
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "minItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
            return "number"
        return "string"

    # --- values ------------------------------------------------------------

    def _object(self, schema: Schema, depth: int) -> dict[str, object]:
        properties = schema.get("properties")
        props = properties if isinstance(properties, Mapping) else {}
        required_raw = schema.get("required")
        required = set(required_raw) if isinstance(required_raw, list) else set()
        result: dict[str, object] = {}
        for name, subschema in props.items():
            emit = (
                self._strict
                or name in required
                or (depth < _DEEP and self._rng.random() < 0.5)
            )
            if emit:
                result[name] = self.value(subschema, depth + 1, name)
        # Required names without a property schema still have to be present.
        for name in sorted(n for n in required if isinstance(n, str)):
            if name not in result:
                result[name] = self._string({}, name)
        return result

    def _array(self, schema: Schema, depth: int, hint: str) -> list[object]:
        low = _int_or(schema.get("minItems"), 0)
        high = _int_or(schema.get("maxItems"), max(low, 3))
        high = max(low, min(high, low + 3))
        if depth >= _DEEP:
            count = low
        else:
            count = self._rng.randint(min(max(low, 1), high), high)
        items = schema.get("items", {})
        singular = hint[:-1] if hint.endswith("s") else hint
        if schema.get("uniqueItems") is not True:
            return [self.value(items, depth + 1, singular) for _ in range(count)]
        values: list[object] = []
        seen: set[str] = set()
        for _ in range(count * 8):
            if len(values) == count:
                break
            item = self.value(items, depth + 1, singular)
            key = _canonical(item)
            if key not in seen:
                seen.add(key)
                values.append(item)
        return values

    def _integer(self, schema: Schema) -> int:
        low, high = _bounds(schema)
        lo = None if low is None else _int_above(*low)
        hi = None if high is None else _int_below(*high)
        if lo is None and hi is None:
            lo, hi = 1, _DEFAULT_SPAN
        elif lo is None:
            assert hi is not None
            lo = min(hi, 0) if hi >= 0 else hi - _DEFAULT_SPAN
        elif hi is None:
            hi = max(lo, 0) + _DEFAULT_SPAN
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0 and float(step).is_integer():
            size = int(step)
            first, last = -(-lo // size), hi // size
            if first <= last:
                return self._rng.randint(first, last) * size
        return self._rng.randint(lo, max(lo, hi))

    def _number(self, schema: Schema) -> float | int:
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            return self._multiple(schema, float(step))
        low, high = _bounds(schema)
        lo = None if low is None else float(low[0])
        hi = None if high is None else float(high[0])
        if lo is None and hi is None:
            lo, hi = 0.0, float(_DEFAULT_SPAN)
        elif lo is None:
            assert hi is not None
            lo = hi - _DEFAULT_SPAN
        elif hi is None:
            hi = lo + _DEFAULT_SPAN
        value = round(self._rng.uniform(lo, hi), 2)
        if not _inside(value, low, high):
            value = (lo + hi) / 2
        return value

    def _multiple(self, schema: Schema, step: float) -> float | int:
        low, high = _bounds(schema)
        lo = -_DEFAULT_SPAN * step if low is None else float(low[0])
        hi = lo + _DEFAULT_SPAN * step if high is None else float(high[0])
        first, last = math.ceil(lo / step), math.floor(hi / step)
        candidates = list(range(first, last + 1))
        self._rng.shuffle(candidates)
        for k in candidates[:64]:
            value: float | int = int(k * step) if step.is_integer() else k * step
            # Keep only values a validator's float division sees as multiples.
            ratio = value / step
            if ratio == int(ratio) and _inside(value, low, high):
                return value
        return 0 if _inside(0, low, high) else first * step

    def _string(self, schema: Schema, hint: str) -> str:
        low = _int_or(schema.get("minLength"), 0)
        high = _int_or(schema.get("maxLength"), max(low, 64))
        fmt = schema.get("format")
        text = self._formatted(fmt) if isinstance(fmt, str) else None
        if text is None or not low <= len(text) <= high:
            text = self._plain(hint)
        if len(text) > high:
            text = self._rng.choice(_WORDS)
        while len(text) < low:
            text += " " + self._rng.choice(_WORDS)
        return text[: max(high, low)]

    def _formatted(self, fmt: str) -> str | None:
        rng = self._rng
        day = _EPOCH + datetime.timedelta(days=rng.randrange(730))
        clock = f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
        word = rng.choice(_WORDS)
        if fmt == "date":
            return day.isoformat()
        if fmt == "date-time":
            return f"{day.isoformat()}T{clock}Z"
        if fmt == "time":
            return clock + "Z"
        if fmt in ("email", "idn-email"):
            return f"{word}.{rng.choice(_WORDS)}@example.com"
        if fmt in ("uri", "url", "iri", "uri-reference"):
            return f"https://example.com/{word}/{rng.randrange(1000)}"
        if fmt == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if fmt in ("hostname", "idn-hostname"):
            return f"{word}.example.com"
        if fmt == "ipv4":
            return f"192.0.2.{rng.randrange(1, 255)}"
        if fmt == "ipv6":
            return f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
        return None

    def _plain(self, hint: str) -> str:
        rng = self._rng
        key = hint.lower()
        if key in ("name", "full_name", "fullname", "author", "person", "user"):
            return rng.choice(_NAMES)
        if key in ("city", "location", "place", "town"):
            return rng.choice(_CITIES)
        if key == "country":
            return rng.choice(_COUNTRIES)
        if key in ("id", "identifier") or key.endswith("_id"):
            return f"{key.removesuffix('_id') or 'id'}_{rng.randrange(10_000):04d}"
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 4))]
        text = " ".join(words)
        return text.capitalize() if key in ("title", "summary", "description") else text


def _merge_into(target: dict[str, object], extra: Schema) -> None:
    for key, value in extra.items():
        current = target.get(key)
        if key == "properties" and isinstance(current, Mapping):
            if isinstance(value, Mapping):
                target[key] = {**current, **value}
        elif key == "required" and isinstance(current, list):
            if isinstance(value, list):
                target[key] = [*current, *(v for v in value if v not in current)]
        elif key not in target:
            target[key] = value


def _recurses(schema: Mapping[str, object]) -> bool:
    """Whether a branch may lead back into the schema (holds a ref or children)."""
    text = _canonical(schema)
    return '"$ref"' in text or '"object"' in text or '"array"' in text


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


Bound = tuple[float, bool]
"""A bound's value and whether it is exclusive."""


def _bounds(schema: Schema) -> tuple[Bound | None, Bound | None]:
    return (
        _bound(schema, "minimum", "exclusiveMinimum", lower=True),
        _bound(schema, "maximum", "exclusiveMaximum", lower=False),
    )


def _bound(
    schema: Schema,
    inclusive_key: str,
    exclusive_key: str,
    *,
    lower: bool,
) -> Bound | None:
    inclusive = _number_or_none(schema.get(inclusive_key))
    exclusive_raw = schema.get(exclusive_key)
    if exclusive_raw is True and inclusive is not None:  # draft 4
        return (inclusive, True)
    exclusive = _number_or_none(exclusive_raw)
    if inclusive is None and exclusive is None:
        return None
    if exclusive is None:
        assert inclusive is not None
        return (inclusive, False)
    if inclusive is None:
        return (exclusive, True)
    # Both given: keep the tighter one.
    if lower:
        return (exclusive, True) if exclusive >= inclusive else (inclusive, False)
    return (exclusive, True) if exclusive <= inclusive else (inclusive, False)


def _inside(value: float, low: Bound | None, high: Bound | None) -> bool:
    if low is not None and (value <= low[0] if low[1] else value < low[0]):
        return False
    return not (high is not None and (value >= high[0] if high[1] else value > high[0]))


def _int_above(value: float, exclusive: bool) -> int:
    return math.floor(value) + 1 if exclusive else math.ceil(value)


def _int_below(value: float, exclusive: bool) -> int:
    return math.ceil(value) - 1 if exclusive else math.floor(value)


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int_or(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return max(int(value), 0)
