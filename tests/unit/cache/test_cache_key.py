from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from services.cache.domain import (
    KEY_SCHEMA_VERSION,
    CacheableRequest,
    canonical_request,
    exact_key,
)

BASE = CacheableRequest(
    tenant_id="acme",
    model="gpt-4.1-mini",
    instructions="Be brief.",
    input="What is the capital of France?",
    temperature=0.7,
    top_p=0.9,
    max_output_tokens=256,
    tools_json="",
    response_format_json="",
    multi_turn=False,
)


def test_key_is_hex_sha256_of_the_canonical_form() -> None:
    key = exact_key(BASE)
    assert key == hashlib.sha256(canonical_request(BASE)).hexdigest()
    assert len(key) == 64
    assert int(key, 16) >= 0


def test_canonical_form_is_sorted_compact_json_with_schema_version() -> None:
    raw = canonical_request(BASE)
    assert b" " not in raw.replace(BASE.input.encode(), b"").replace(
        BASE.instructions.encode(), b""
    )
    document = json.loads(raw)
    assert list(document) == sorted(document)
    assert document["key_schema_version"] == KEY_SCHEMA_VERSION
    assert document["temperature"] == "0.7"


def test_key_is_stable_across_calls_and_equal_requests() -> None:
    assert exact_key(BASE) == exact_key(dataclasses.replace(BASE))
    assert exact_key(BASE) == exact_key(BASE)


def test_unset_sampling_parameters_equal_openai_defaults() -> None:
    unset = dataclasses.replace(BASE, temperature=None, top_p=None)
    explicit = dataclasses.replace(BASE, temperature=1.0, top_p=1.0)
    integral = dataclasses.replace(BASE, temperature=1, top_p=1)
    assert exact_key(unset) == exact_key(explicit) == exact_key(integral)


def test_equal_floats_written_differently_give_one_key() -> None:
    assert exact_key(dataclasses.replace(BASE, temperature=0.70)) == exact_key(
        dataclasses.replace(BASE, temperature=float("0.7"))
    )
    assert exact_key(dataclasses.replace(BASE, temperature=-0.0)) == exact_key(
        dataclasses.replace(BASE, temperature=0.0)
    )


def test_non_ascii_text_is_hashed_as_utf8() -> None:
    request = dataclasses.replace(BASE, input="Ça coûte 5 €?")
    assert "Ça coûte 5 €?".encode() in canonical_request(request)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", "globex"),
        ("model", "gpt-4.1"),
        ("instructions", "Be verbose."),
        ("input", "What is the capital of Spain?"),
        ("temperature", 0.2),
        ("top_p", 0.5),
        ("max_output_tokens", 512),
        ("tools_json", '[{"type":"function","name":"f"}]'),
        ("response_format_json", '{"type":"json_object"}'),
        ("multi_turn", True),
        ("context_digest", "ab" * 32),
        ("exact_only_reason", "images"),
    ],
)
def test_every_field_changes_the_key(field: str, value: Any) -> None:
    changed = dataclasses.replace(BASE, **{field: value})
    assert exact_key(changed) != exact_key(BASE)


# Fields that select a policy but do not shape the answer: not part of the key.
_NOT_IN_KEY = {"request_type"}


def test_every_request_field_is_covered_by_the_sensitivity_test() -> None:
    document = json.loads(canonical_request(BASE))
    fields = {f.name for f in dataclasses.fields(CacheableRequest)} - _NOT_IN_KEY
    assert set(document) == fields | {"key_schema_version"}


def test_the_request_type_selects_a_policy_and_leaves_the_key_alone() -> None:
    # What a request type changes in the answer (its token budget) is in the key
    # already, through max_output_tokens.
    typed = dataclasses.replace(BASE, request_type="summarize")
    assert exact_key(typed) == exact_key(BASE)


def test_a_field_boundary_cannot_be_forged() -> None:
    # Concatenation would make these equal; JSON keeps the fields apart.
    one = dataclasses.replace(BASE, instructions="ab", input="c")
    other = dataclasses.replace(BASE, instructions="a", input="bc")
    assert exact_key(one) != exact_key(other)
