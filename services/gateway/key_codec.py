"""Protobuf codec of the key admin RPCs (CreateKey, ListKeys, RevokeKey, RotateKey)."""

from __future__ import annotations

import re

from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core import prototime
from services.core.errors import FieldViolation, InvalidArgumentError
from services.gateway.keys import (
    DEFAULT_SERVICE,
    DEFAULT_TIER,
    KeyRecord,
    KeySource,
    NewKey,
)

MAX_NAME_CHARS = 128
MAX_TIER_CHARS = 64
MAX_MODELS = 64
MAX_GRACE_SECONDS = 30 * 86_400
MAX_TTL_SECONDS = 100 * 365 * 86_400
# A stored key's id, or a keys-file key's (auth.key_id_of).
KEY_ID = re.compile(r"^(tk|key)_[0-9a-f]{16}$")
CURRENCY = "USD"

_SOURCES = {
    KeySource.STORE: gateway_pb.API_KEY_SOURCE_STORE,
    KeySource.FILE: gateway_pb.API_KEY_SOURCE_FILE,
}


def _name(violations: list[FieldViolation], field: str, value: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        violations.append(FieldViolation(field, f"must be at most {limit} characters"))
    elif any(not ch.isprintable() for ch in value):
        violations.append(FieldViolation(field, "must be printable text"))
    return value


def decode_create(request: gateway_pb.CreateKeyRequest) -> NewKey:
    """Validate a CreateKeyRequest; every problem becomes a field violation."""
    violations: list[FieldViolation] = []
    tenant_id = _name(violations, "tenant_id", request.tenant_id, MAX_NAME_CHARS)
    if not tenant_id:
        violations.append(FieldViolation("tenant_id", "is required"))
    service = _name(violations, "service", request.service, MAX_NAME_CHARS)
    user_id = _name(violations, "user_id", request.user_id, MAX_NAME_CHARS)
    user_tier = _name(violations, "user_tier", request.user_tier, MAX_TIER_CHARS)
    if len(request.models) > MAX_MODELS:
        violations.append(
            FieldViolation("models", f"must name at most {MAX_MODELS} models")
        )
    models: list[str] = []
    for index, model in enumerate(request.models[:MAX_MODELS]):
        name = _name(violations, f"models[{index}]", model, MAX_NAME_CHARS)
        if not name:
            violations.append(FieldViolation(f"models[{index}]", "must not be empty"))
        elif name not in models:
            models.append(name)
    ttl_seconds: float | None = None
    if request.HasField("ttl"):
        ttl_seconds = request.ttl.ToNanoseconds() / 1e9
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            violations.append(
                FieldViolation("ttl", "must be positive and at most 100 years")
            )
    budget: int | None = None
    if request.HasField("budget_limit_micros"):
        budget = request.budget_limit_micros
        if budget <= 0:
            violations.append(FieldViolation("budget_limit_micros", "must be > 0"))
    if violations:
        raise InvalidArgumentError(violations)
    return NewKey(
        tenant_id=tenant_id,
        service=service or DEFAULT_SERVICE,
        user_id=user_id,
        user_tier=user_tier or DEFAULT_TIER,
        models=tuple(models),
        ttl_seconds=ttl_seconds,
        budget_limit_micros=budget,
    )


def decode_key_id(
    request: gateway_pb.RevokeKeyRequest | gateway_pb.RotateKeyRequest,
) -> str:
    """The key id of a RevokeKey or RotateKey request, checked for form."""
    key_id = request.key_id.strip()
    if not KEY_ID.match(key_id):
        raise InvalidArgumentError(
            [
                FieldViolation(
                    "key_id", "must be a key id: tk_ (or key_) and 16 hex digits"
                )
            ]
        )
    return key_id


def decode_grace_seconds(request: gateway_pb.RotateKeyRequest) -> float:
    """The grace period of a RotateKey request, in seconds (0 when unset)."""
    if not request.HasField("grace_period"):
        return 0.0
    seconds = request.grace_period.ToNanoseconds() / 1e9
    if not 0 <= seconds <= MAX_GRACE_SECONDS:
        raise InvalidArgumentError(
            [
                FieldViolation(
                    "grace_period", f"must be between 0 and {MAX_GRACE_SECONDS} s"
                )
            ]
        )
    return seconds


def encode_key(record: KeyRecord, now: float) -> gateway_pb.ApiKey:
    """The ApiKey message of a key; ``now`` decides whether its old secret works."""
    key = gateway_pb.ApiKey(
        key_id=record.key_id,
        source=_SOURCES[record.source],
        tenant_id=record.tenant_id,
        service=record.service,
        user_id=record.user_id,
        user_tier=record.user_tier,
        models=record.models,
        currency_code=CURRENCY,
    )
    if record.created_at is not None:
        key.create_time.CopyFrom(prototime.timestamp(record.created_at))
    if record.expires_at is not None:
        key.expire_time.CopyFrom(prototime.timestamp(record.expires_at))
    if record.revoked_at is not None:
        key.revoke_time.CopyFrom(prototime.timestamp(record.revoked_at))
    if record.rotated_at is not None:
        key.rotate_time.CopyFrom(prototime.timestamp(record.rotated_at))
    if (
        record.previous_valid_until is not None
        and record.previous_valid_until > now
        and record.revoked_at is None
    ):
        key.previous_secret_expire_time.CopyFrom(
            prototime.timestamp(record.previous_valid_until)
        )
    if record.budget_limit_micros is not None:
        key.budget_limit_micros = record.budget_limit_micros
    return key
