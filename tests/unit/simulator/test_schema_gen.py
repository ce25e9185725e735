"""Generated values validate against their schema, deterministically."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.simulator.schema_gen import SchemaError, generate

Schema = dict[str, Any]


def _valid(schema: Schema, value: object) -> None:
    validator = jsonschema.Draft202012Validator
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(value)


NESTED: Schema = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 40},
        "status": {"type": "string", "enum": ["draft", "published", "archived"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "even": {"type": "integer", "minimum": 3, "maximum": 11, "multipleOf": 2},
        "published": {"type": ["string", "null"], "format": "date"},
        "contact": {"type": "string", "format": "email"},
        "homepage": {"type": "string", "format": "uri"},
        "created": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "kind": {"const": "article"},
        "author": {"$ref": "#/$defs/person"},
        "reviewers": {
            "type": "array",
            "items": {"$ref": "#/$defs/person"},
            "minItems": 2,
            "maxItems": 4,
        },
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "flag": {"type": "boolean"},
        "nothing": {"type": "null"},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "legacy": {"$ref": "#/definitions/legacy"},
    },
    "required": ["title", "status", "priority", "author", "reviewers"],
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 18, "maximum": 99},
                "role": {"enum": ["owner", "editor", "viewer"]},
            },
            "required": ["name", "age", "role"],
            "additionalProperties": False,
        }
    },
    "definitions": {"legacy": {"type": "integer", "minimum": -5, "maximum": -1}},
}

TREE: Schema = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                "parent": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            },
            "required": ["value", "children", "parent"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}


@pytest.mark.parametrize("seed", [b"a", b"b", b"c", b"d", b"e"])
@pytest.mark.parametrize("strict", [True, False])
def test_nested_schema(seed: bytes, strict: bool) -> None:
    value = generate(NESTED, seed, strict=strict)
    _valid(NESTED, value)
    assert isinstance(value, dict)
    if strict:
        assert set(value) == set(NESTED["properties"])


def test_same_seed_same_value_other_seed_other_value() -> None:
    assert generate(NESTED, b"seed") == generate(NESTED, b"seed")
    values = {repr(generate(NESTED, bytes([i]), strict=True)) for i in range(10)}
    assert len(values) > 1


def test_recursive_schema_terminates() -> None:
    for seed in (b"1", b"2", b"3"):
        value = generate(TREE, seed, strict=True)
        _valid(TREE, value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 6},
        {"type": "integer", "minimum": 5, "exclusiveMinimum": True, "maximum": 7},
        {"type": "integer", "maximum": -1000},
        {"type": "integer", "minimum": 10_000},
        {"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 25},
        {"type": "number", "minimum": 1.5, "maximum": 1.5},
        {"type": "number", "multipleOf": 0.25, "minimum": 0, "maximum": 2},
        {"type": "number", "multipleOf": 0.1},
        {"type": "string", "minLength": 50},
        {"type": "string", "maxLength": 1},
        {"type": "string", "format": "made-up", "maxLength": 4},
        {"type": "array", "minItems": 5},
        {"type": "array", "items": {"enum": [1, 2]}, "maxItems": 0},
        {"enum": [None, 3, "x"]},
        {"type": ["null"]},
        {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
        {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
        {"type": "object", "required": ["undeclared"]},
        {},
    ],
)
def test_edge_cases(schema: Schema) -> None:
    for seed in (b"x", b"y", b"z"):
        _valid(schema, generate(schema, seed, strict=True))
        _valid(schema, generate(schema, seed))


def test_bad_refs_raise() -> None:
    with pytest.raises(SchemaError):
        generate({"$ref": "#/$defs/missing"}, b"s")
    with pytest.raises(SchemaError):
        generate({"$ref": "https://example.com/schema.json"}, b"s")
    with pytest.raises(SchemaError):
        generate({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, b"s")


# --- property test over many schemas ------------------------------------------

_NAMES = st.sampled_from(["name", "city", "id", "count", "items", "when", "x"])


@st.composite
def _strings(draw: st.DrawFn) -> Schema:
    schema: Schema = {"type": "string"}
    if draw(st.booleans()):
        low = draw(st.integers(0, 12))
        schema["minLength"] = low
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(low, low + 20))
    elif draw(st.booleans()):
        schema["maxLength"] = draw(st.integers(0, 30))
    if len(schema) == 1 and draw(st.booleans()):
        # Only without lengths: a format and a length can contradict each other.
        schema["format"] = draw(
            st.sampled_from(["date", "date-time", "email", "uri", "uuid", "time"])
        )
    return schema


@st.composite
def _integers(draw: st.DrawFn) -> Schema:
    schema: Schema = {"type": "integer"}
    low = draw(st.integers(-1000, 1000))
    step = draw(st.integers(1, 12))
    span = draw(st.integers(step + 1, 500))
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + span
    if draw(st.booleans()):
        schema["multipleOf"] = step
    return schema


@st.composite
def _numbers(draw: st.DrawFn) -> Schema:
    schema: Schema = {"type": "number"}
    low = draw(st.floats(-1e6, 1e6, allow_nan=False))
    span = draw(st.floats(0.5, 1e4))
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + span
    return schema


_SCALARS = st.one_of(
    _strings(),
    _integers(),
    _numbers(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), min_size=1, max_size=4).map(
        lambda values: {"enum": values}
    ),
    st.one_of(st.integers(), st.text(max_size=5)).map(lambda v: {"const": v}),
)


def _nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    return {**schema, "type": [kind, "null"]} if isinstance(kind, str) else schema


def _extend(children: st.SearchStrategy[Schema]) -> st.SearchStrategy[Schema]:
    objects = st.dictionaries(_NAMES, children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required: {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            },
            st.lists(st.sampled_from(sorted(props)), unique=True)
            if props
            else st.just([]),
        )
    )
    arrays = st.builds(
        lambda items, low, extra: {
            "type": "array",
            "items": items,
            "minItems": low,
            "maxItems": low + extra,
        },
        children,
        st.integers(0, 3),
        st.integers(0, 3),
    )
    unions = st.lists(children, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
    return st.one_of(objects, arrays, unions, children.map(_nullable))


SCHEMAS = st.recursive(_SCALARS, _extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(schema=SCHEMAS, seed=st.binary(max_size=8), strict=st.booleans())
def test_generated_values_validate(schema: Schema, seed: bytes, strict: bool) -> None:
    value = generate(schema, seed, strict=strict)
    _valid(schema, value)
    assert generate(schema, seed, strict=strict) == value


@settings(max_examples=100, deadline=None)
@given(schema=SCHEMAS, seed=st.binary(max_size=8))
def test_values_under_defs_validate(schema: Schema, seed: bytes) -> None:
    wrapped: Schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/inner"}, "b": {"$ref": "#/$defs/inner"}},
        "required": ["a", "b"],
        "additionalProperties": False,
        "$defs": {"inner": schema},
    }
    _valid(wrapped, generate(wrapped, seed, strict=True))
