"""Regenerate ``envoy_rls_reference.json``: Envoy's rate-limit contract, from upstream.

Tollgate serves ``envoy.service.ratelimit.v3.RateLimitService`` from a trimmed copy of
Envoy's protos (``protos/envoy``). This script records, from Envoy's own generated
stubs (the ``xds-protos`` distribution, compiled from envoyproxy/data-plane-api by the
gRPC project), what ``tests/unit/ratelimit/test_envoy_contract.py`` checks the vendored
stubs against:

- ``contract``: the method's path and types, and for every message and enum a
  ShouldRateLimit call carries, each field's number, label, type, message or enum type,
  JSON name and oneof, and each enum value's number;
- ``request_hex`` and ``response_hex``: a RateLimitRequest and a RateLimitResponse with
  every field set (``sample_request``, ``sample_response``), serialized
  deterministically.

Run it from the repository root in a scratch venv that holds upstream's stubs, so that
``envoy`` is not the vendored package::

    python3.11 -m venv /tmp/envoy-ref
    /tmp/envoy-ref/bin/pip install 'xds-protos==1.85.0'
    /tmp/envoy-ref/bin/python tests/data/make_envoy_rls_reference.py

It refuses to write anything when ``envoy`` resolves to the vendored stubs.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from envoy.type.v3 import ratelimit_unit_pb2
from google.protobuf import (
    descriptor_pb2,
    duration_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)

OUTPUT = Path(__file__).with_name("envoy_rls_reference.json")
SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
# Well-known types are protobuf's own, not part of what is vendored.
_WELL_KNOWN = ".google.protobuf."
_FILES = (base_pb2, ratelimit_pb2, rls_pb2, ratelimit_unit_pb2)


def _definitions() -> tuple[
    dict[str, descriptor_pb2.DescriptorProto],
    dict[str, descriptor_pb2.EnumDescriptorProto],
]:
    """Every message and enum of the four Envoy files, by fully qualified name."""
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}

    def visit(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        messages[name] = message
        for enum in message.enum_type:
            enums[f"{name}.{enum.name}"] = enum
        for nested in message.nested_type:
            visit(name, nested)

    for module in _FILES:
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        for message in file.message_type:
            visit(f".{file.package}", message)
        for enum in file.enum_type:
            enums[f".{file.package}.{enum.name}"] = enum
    return messages, enums


def contract_table() -> dict[str, Any]:
    """The wire contract of ShouldRateLimit as the importable ``envoy`` stubs define it.

    Starts from the method's request and response types and follows every message and
    enum field, so a definition a call can carry is in the table and nothing else is.
    """
    messages, enums = _definitions()
    service = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"]
    method = service.methods_by_name["ShouldRateLimit"]
    table: dict[str, Any] = {
        "methods": {
            f"/{SERVICE}/ShouldRateLimit": {
                "input": f".{method.input_type.full_name}",
                "output": f".{method.output_type.full_name}",
            }
        },
        "messages": {},
        "enums": {},
    }
    pending = [
        table["methods"][f"/{SERVICE}/ShouldRateLimit"][k] for k in ("input", "output")
    ]
    while pending:
        name = pending.pop()
        if name in table["messages"] or name in table["enums"]:
            continue
        if name in enums:
            table["enums"][name] = {v.name: v.number for v in enums[name].value}
            continue
        message = messages[name]
        # CopyToProto leaves json_name out; the loaded descriptors have it.
        loaded = rls_pb2.DESCRIPTOR.pool.FindMessageTypeByName(name[1:])
        fields: dict[str, Any] = {}
        for field in message.field:
            fields[field.name] = {
                "number": field.number,
                "label": descriptor_pb2.FieldDescriptorProto.Label.Name(field.label),
                "type": descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
                "type_name": field.type_name,
                "json_name": loaded.fields_by_name[field.name].json_name,
                "oneof": (
                    message.oneof_decl[field.oneof_index].name
                    if field.HasField("oneof_index")
                    else ""
                ),
            }
            if field.type_name and not field.type_name.startswith(_WELL_KNOWN):
                pending.append(field.type_name)
        table["messages"][name] = fields
    return table


def sample_request() -> Any:
    """A RateLimitRequest with every field, and every field of its descriptors, set."""
    descriptor = ratelimit_pb2.RateLimitDescriptor
    return rls_pb2.RateLimitRequest(
        domain="tollgate",
        descriptors=[
            descriptor(
                entries=[
                    descriptor.Entry(key="tenant", value="acme"),
                    descriptor.Entry(key="user_id", value=""),
                ],
                limit=descriptor.RateLimitOverride(
                    requests_per_unit=42, unit=ratelimit_unit_pb2.RateLimitUnit.HOUR
                ),
                hits_addend=wrappers_pb2.UInt64Value(value=2**40),
            ),
            descriptor(entries=[descriptor.Entry(key="model", value="gpt-4.1")]),
        ],
        hits_addend=7,
    )


def sample_response() -> Any:
    """A RateLimitResponse with every field, and every nested field, set."""
    response = rls_pb2.RateLimitResponse
    quota = response.Quota(
        requests=5,
        valid_until=timestamp_pb2.Timestamp(seconds=1_767_225_600, nanos=5),
        id="shared",
    )
    metadata = struct_pb2.Struct()
    metadata.update({"layer": "tenant", "remaining": 3.0, "degraded": False})
    return response(
        overall_code=response.OVER_LIMIT,
        statuses=[
            response.DescriptorStatus(
                code=response.OVER_LIMIT,
                current_limit=response.RateLimit(
                    name="user:acme:u1:requests",
                    requests_per_unit=3,
                    unit=response.RateLimit.WEEK,
                ),
                limit_remaining=0,
                duration_until_reset=duration_pb2.Duration(seconds=20, nanos=1),
                quota=quota,
            ),
            response.DescriptorStatus(code=response.OK, limit_remaining=49),
        ],
        response_headers_to_add=[
            base_pb2.HeaderValue(key="x-ratelimit-limit", value="3"),
        ],
        request_headers_to_add=[
            base_pb2.HeaderValue(key="x-tollgate-layer", raw_value=b"\xfftenant"),
        ],
        raw_body=b"rate limited",
        dynamic_metadata=metadata,
        quota=quota,
    )


def reference() -> dict[str, Any]:
    """The contents of ``envoy_rls_reference.json``, from the importable stubs."""
    return {
        "source": (
            f"xds-protos {importlib.metadata.version('xds-protos')}, "
            f"protobuf {importlib.metadata.version('protobuf')}"
        ),
        "contract": contract_table(),
        "request_hex": sample_request().SerializeToString(deterministic=True).hex(),
        "response_hex": sample_response().SerializeToString(deterministic=True).hex(),
    }


def main() -> int:
    """Write the reference file from upstream's stubs, or refuse."""
    dependencies = {file.name for file in rls_pb2.DESCRIPTOR.dependencies}
    # Upstream's rls.proto imports its validation rules; the vendored copy does not.
    if "validate/validate.proto" not in dependencies:
        print(
            f"refusing: {rls_pb2.__file__} is not upstream's stub (install xds-protos "
            "in a scratch venv; see this script's docstring)",
            file=sys.stderr,
        )
        return 1
    OUTPUT.write_text(json.dumps(reference(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
