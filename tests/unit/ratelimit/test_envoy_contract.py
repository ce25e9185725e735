"""The vendored Envoy rate-limit stubs are wire-identical to Envoy's own.

``tests/data/envoy_rls_reference.json`` was written by
``tests/data/make_envoy_rls_reference.py`` from upstream's generated stubs (xds-protos);
here the same table and the same sample messages come from the stubs generated from
``protos/envoy`` (see tests/data/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from envoy.service.ratelimit.v3 import rls_pb2 as rls_pb

from tests.data.make_envoy_rls_reference import (
    contract_table,
    sample_request,
    sample_response,
)

REPO = Path(__file__).resolve().parents[3]
REFERENCE = json.loads(
    (REPO / "tests" / "data" / "envoy_rls_reference.json").read_text()
)


def test_envoy_resolves_to_the_vendored_stubs() -> None:
    dependencies = {file.name for file in rls_pb.DESCRIPTOR.dependencies}

    assert Path(rls_pb.__file__).resolve().is_relative_to(REPO / "gen" / "python")
    assert "validate/validate.proto" not in dependencies
    assert rls_pb.DESCRIPTOR.name == "envoy/service/ratelimit/v3/rls.proto"


def test_every_field_and_enum_value_matches_upstream() -> None:
    vendored = contract_table()

    assert vendored["methods"] == REFERENCE["contract"]["methods"]
    assert vendored["enums"] == REFERENCE["contract"]["enums"]
    for name, fields in REFERENCE["contract"]["messages"].items():
        assert vendored["messages"].get(name) == fields, name
    assert vendored == REFERENCE["contract"]


@pytest.mark.parametrize(
    ("sample", "reference_hex", "message_type"),
    [
        (sample_request, "request_hex", rls_pb.RateLimitRequest),
        (sample_response, "response_hex", rls_pb.RateLimitResponse),
    ],
)
def test_messages_match_upstream_bytes_both_ways(
    sample: Any, reference_hex: str, message_type: Any
) -> None:
    upstream = bytes.fromhex(REFERENCE[reference_hex])

    parsed = message_type.FromString(upstream)

    assert sample().SerializeToString(deterministic=True) == upstream
    assert parsed == sample()
    assert parsed.SerializeToString(deterministic=True) == upstream
