"""gRPC surface of the ratelimit service: validate, decode, call the domain, encode.

Two services share the limiter: Tollgate's own ``RateLimitService`` and Envoy's
``envoy.service.ratelimit.v3.RateLimitService`` (ShouldRateLimit), so an Envoy or
Istio global rate limit can point at Tollgate.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
import structlog
from envoy.service.ratelimit.v3 import (
    rls_pb2 as envoy_rls_pb,
)
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb

from services.core import metrics
from services.core.errors import FieldViolation, InvalidArgumentError
from services.core.prototime import duration as _duration
from services.core.prototime import timestamp as _timestamp
from services.ratelimit.domain import (
    BucketStatus,
    Caller,
    DescriptorDecision,
    ModelBackoff,
    RateLimiter,
    UpstreamOutcome,
    decode_descriptor,
)
from services.ratelimit.ports import Layer, Metric

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_LAYERS = {
    Layer.USER: ratelimit_pb.LIMIT_LAYER_USER,
    Layer.SERVICE: ratelimit_pb.LIMIT_LAYER_SERVICE,
    Layer.GLOBAL: ratelimit_pb.LIMIT_LAYER_GLOBAL,
}
_METRICS = {
    Metric.REQUESTS: ratelimit_pb.LIMIT_METRIC_REQUESTS,
    Metric.TOKENS: ratelimit_pb.LIMIT_METRIC_TOKENS,
}
_UPSTREAM_OUTCOMES = {
    ratelimit_pb.UPSTREAM_OUTCOME_THROTTLED: UpstreamOutcome.THROTTLED,
    ratelimit_pb.UPSTREAM_OUTCOME_SUCCESS: UpstreamOutcome.SUCCESS,
}


class RateLimitServicer:
    """Implements ``tollgate.ratelimit.v1.RateLimitService`` over a RateLimiter."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def Acquire(
        self, request: ratelimit_pb.AcquireRequest, context: Context
    ) -> ratelimit_pb.AcquireResponse:
        """Admit or deny one request; a denial is DECISION_DENY, not an error."""
        violations = _acquire_violations(request)
        if violations:
            raise InvalidArgumentError(violations)
        structlog.contextvars.bind_contextvars(tenant=request.caller.tenant_id)
        return await self._acquire(request)

    async def AcquireBatch(
        self, request: ratelimit_pb.AcquireBatchRequest, context: Context
    ) -> ratelimit_pb.AcquireBatchResponse:
        """Decide each item as Acquire would, in order; an invalid one is refused."""
        violations = _batch_violations(len(request.items))
        if violations:
            raise InvalidArgumentError(violations)
        response = ratelimit_pb.AcquireBatchResponse()
        for item in request.items:
            result = response.results.add()
            refused = _acquire_violations(item)
            if not refused:
                try:
                    result.decided.CopyFrom(await self._acquire(item))
                    continue
                except InvalidArgumentError as error:  # it could never be admitted
                    refused = list(error.violations)
            result.rejected.field_violations.extend(
                ratelimit_pb.FieldViolation(field=v.field, description=v.description)
                for v in refused
            )
        return response

    async def _acquire(
        self, request: ratelimit_pb.AcquireRequest
    ) -> ratelimit_pb.AcquireResponse:
        result = await self._limiter.acquire(
            _decode_caller(request.caller), request.model, request.estimated_tokens
        )
        _count_decision("acquire", result.allowed, result.denied_by)
        response = ratelimit_pb.AcquireResponse(
            decision=(
                ratelimit_pb.DECISION_ALLOW
                if result.allowed
                else ratelimit_pb.DECISION_DENY
            ),
            reservation_id=result.reservation_id,
            buckets=[_encode_bucket(bucket) for bucket in result.buckets],
            degraded=result.degraded,
        )
        if result.reservation_expires_at is not None:
            response.reservation_expires_at.CopyFrom(
                _timestamp(result.reservation_expires_at)
            )
        if result.retry_after is not None:
            response.retry_after.CopyFrom(_duration(result.retry_after))
        if result.denied_by is not None:
            response.denied_by.CopyFrom(_encode_bucket(result.denied_by))
        return response

    async def Reconcile(
        self, request: ratelimit_pb.ReconcileRequest, context: Context
    ) -> ratelimit_pb.ReconcileResponse:
        """Settle a reservation; an unknown one is an outcome, not an error."""
        violations = _reconcile_violations(request, "")
        if violations:
            raise InvalidArgumentError(violations)
        return await self._reconcile(request)

    async def ReconcileBatch(
        self, request: ratelimit_pb.ReconcileBatchRequest, context: Context
    ) -> ratelimit_pb.ReconcileBatchResponse:
        """Settle each item as Reconcile would, in order, once all are valid."""
        violations = _batch_violations(len(request.items))
        for index, item in enumerate(request.items):
            violations.extend(_reconcile_violations(item, f"items[{index}]."))
        if violations:
            raise InvalidArgumentError(violations)
        return ratelimit_pb.ReconcileBatchResponse(
            results=[await self._reconcile(item) for item in request.items]
        )

    async def _reconcile(
        self, request: ratelimit_pb.ReconcileRequest
    ) -> ratelimit_pb.ReconcileResponse:
        result = await self._limiter.reconcile(
            request.reservation_id, request.actual_tokens
        )
        return ratelimit_pb.ReconcileResponse(
            outcome=(
                ratelimit_pb.RECONCILE_OUTCOME_SETTLED
                if result.settled
                else ratelimit_pb.RECONCILE_OUTCOME_UNKNOWN_RESERVATION
            ),
            refunded_tokens=result.refunded_tokens,
        )

    async def ReportUpstreamThrottle(
        self, request: ratelimit_pb.ReportUpstreamThrottleRequest, context: Context
    ) -> ratelimit_pb.ReportUpstreamThrottleResponse:
        """Feed one upstream outcome into the model's adaptive backoff."""
        violations = []
        if not request.model:
            violations.append(FieldViolation("model", "must be set"))
        outcome = _UPSTREAM_OUTCOMES.get(request.outcome)
        if outcome is None:
            violations.append(
                FieldViolation(
                    "outcome",
                    "must be UPSTREAM_OUTCOME_THROTTLED or UPSTREAM_OUTCOME_SUCCESS",
                )
            )
        retry_after: float | None = None
        if request.HasField("retry_after"):
            retry_after = request.retry_after.ToNanoseconds() / 1e9
            if retry_after < 0:
                violations.append(FieldViolation("retry_after", "must be >= 0"))
        if violations or outcome is None:
            raise InvalidArgumentError(violations)
        backoff = await self._limiter.report_upstream(
            request.model, outcome, retry_after
        )
        response = ratelimit_pb.ReportUpstreamThrottleResponse(
            backoff_factor=backoff.factor
        )
        if backoff.paused_until is not None:
            response.paused_until.CopyFrom(_timestamp(backoff.paused_until))
        return response

    async def GetStatus(
        self, request: ratelimit_pb.GetStatusRequest, context: Context
    ) -> ratelimit_pb.GetStatusResponse:
        """Show the buckets of a caller and model, and every model's backoff."""
        caller: Caller | None = None
        if request.HasField("caller"):
            violations = _caller_violations(request.caller)
            if violations:
                raise InvalidArgumentError(violations)
            structlog.contextvars.bind_contextvars(tenant=request.caller.tenant_id)
            caller = _decode_caller(request.caller)
        status = await self._limiter.status(caller, request.model)
        return ratelimit_pb.GetStatusResponse(
            buckets=[_encode_bucket(bucket) for bucket in status.buckets],
            backoffs=[_encode_backoff(backoff) for backoff in status.backoffs],
            backend=status.backend,
            degraded=status.degraded,
        )


# Envoy's uint32 limit_remaining.
_MAX_UINT32 = 2**32 - 1


class EnvoyRateLimitServicer:
    """Implements ``envoy.service.ratelimit.v3.RateLimitService`` over a RateLimiter.

    Descriptor entries map onto the limiter's layers through the limits file's
    ``envoy`` section; every descriptor's buckets are debited all-or-nothing.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def ShouldRateLimit(self, request: Any, context: Context) -> Any:
        """Answer OK or OVER_LIMIT overall and per descriptor."""
        violations = []
        if not request.domain:
            violations.append(FieldViolation("domain", "must be set"))
        if not request.descriptors:
            violations.append(FieldViolation("descriptors", "must not be empty"))
        for index, descriptor in enumerate(request.descriptors):
            if not descriptor.entries:
                violations.append(
                    FieldViolation(f"descriptors[{index}].entries", "must not be empty")
                )
            elif any(not entry.key for entry in descriptor.entries):
                violations.append(
                    FieldViolation(
                        f"descriptors[{index}].entries", "every entry needs a key"
                    )
                )
        if violations:
            raise InvalidArgumentError(violations)
        mapping = self._limiter.limits.envoy
        # hits_addend 0 means 1 (Envoy's rule); a descriptor's own overrides it.
        default_hits = request.hits_addend or 1
        descriptors = [
            decode_descriptor(
                mapping,
                [(entry.key, entry.value) for entry in descriptor.entries],
                (
                    descriptor.hits_addend.value
                    if descriptor.HasField("hits_addend")
                    else default_hits
                ),
                path=f"descriptors[{index}].entries",
            )
            for index, descriptor in enumerate(request.descriptors)
        ]
        result = await self._limiter.should_rate_limit(request.domain, descriptors)
        _count_decision(
            "envoy",
            result.allowed,
            next((d.limit for d in result.decisions if d.over_limit), None),
        )
        return envoy_rls_pb.RateLimitResponse(
            overall_code=(
                envoy_rls_pb.RateLimitResponse.OK
                if result.allowed
                else envoy_rls_pb.RateLimitResponse.OVER_LIMIT
            ),
            statuses=[_encode_envoy_status(d) for d in result.decisions],
        )


def _encode_envoy_status(decision: DescriptorDecision) -> Any:
    status = envoy_rls_pb.RateLimitResponse.DescriptorStatus(
        code=(
            envoy_rls_pb.RateLimitResponse.OVER_LIMIT
            if decision.over_limit
            else envoy_rls_pb.RateLimitResponse.OK
        )
    )
    if decision.limit is None:
        return status
    bucket = decision.limit.bucket
    status.current_limit.CopyFrom(
        envoy_rls_pb.RateLimitResponse.RateLimit(
            name=f"{bucket.layer.value}:{bucket.key}:{bucket.metric.value}",
            requests_per_unit=min(decision.limit.limit_per_minute, _MAX_UINT32),
            unit=envoy_rls_pb.RateLimitResponse.RateLimit.MINUTE,
        )
    )
    status.limit_remaining = min(decision.limit.remaining, _MAX_UINT32)
    status.duration_until_reset.CopyFrom(_duration(decision.duration_until_reset))
    return status


def _count_decision(api: str, allowed: bool, denied_by: BucketStatus | None) -> None:
    layer = metric = "none"
    if not allowed and denied_by is not None:
        layer, metric = denied_by.bucket.layer.value, denied_by.bucket.metric.value
    metrics.RATELIMIT_DECISIONS.labels(
        api, "allow" if allowed else "deny", layer, metric
    ).inc()


def _caller_violations(caller: common_pb.Caller) -> list[FieldViolation]:
    if not caller.tenant_id:
        return [FieldViolation("caller.tenant_id", "must be set")]
    return []


def _decode_caller(caller: common_pb.Caller) -> Caller:
    return Caller(
        tenant_id=caller.tenant_id,
        service=caller.service,
        user_id=caller.user_id,
        user_tier=caller.user_tier,
    )


def _encode_bucket(status: BucketStatus) -> ratelimit_pb.BucketStatus:
    return ratelimit_pb.BucketStatus(
        layer=_LAYERS[status.bucket.layer],
        key=status.bucket.key,
        metric=_METRICS[status.bucket.metric],
        limit_per_minute=status.limit_per_minute,
        effective_limit_per_minute=status.effective_limit_per_minute,
        capacity=status.capacity,
        remaining=status.remaining,
    )


def _encode_backoff(backoff: ModelBackoff) -> ratelimit_pb.ModelBackoff:
    encoded = ratelimit_pb.ModelBackoff(
        model=backoff.model, backoff_factor=backoff.factor
    )
    if backoff.paused_until is not None:
        encoded.paused_until.CopyFrom(_timestamp(backoff.paused_until))
    return encoded


MAX_BATCH_ITEMS = 1000
"""The most items one ReconcileBatch carries."""


def _batch_violations(count: int) -> list[FieldViolation]:
    if not 1 <= count <= MAX_BATCH_ITEMS:
        return [FieldViolation("items", f"must hold 1 to {MAX_BATCH_ITEMS} items")]
    return []


def _acquire_violations(request: ratelimit_pb.AcquireRequest) -> list[FieldViolation]:
    violations = _caller_violations(request.caller)
    if not request.model:
        violations.append(FieldViolation("model", "must be set"))
    if request.estimated_tokens < 0:
        violations.append(FieldViolation("estimated_tokens", "must be >= 0"))
    return violations


def _reconcile_violations(
    request: ratelimit_pb.ReconcileRequest, prefix: str
) -> list[FieldViolation]:
    violations = []
    if not request.reservation_id:
        violations.append(FieldViolation(f"{prefix}reservation_id", "must be set"))
    if request.actual_tokens < 0:
        violations.append(FieldViolation(f"{prefix}actual_tokens", "must be >= 0"))
    return violations
