"""Typed async clients of the four downstream services.

Each wraps a generated stub with a deadline, ``x-request-id`` propagation, a trace
span (its context in ``traceparent``) and its own circuit breaker. Breakers count
only UNAVAILABLE, DEADLINE_EXCEEDED and transport failures; every other failure
still raises :class:`DependencyUnavailableError` so that the orchestrator applies
that dependency's policy, except INVALID_ARGUMENT, which is the caller's fault and
goes back to the caller with its field violations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core import prototime, tracing
from services.core.breaker import CircuitBreaker
from services.core.coalescer import Coalescer
from services.core.common_codec import (
    finish_reason_from_proto,
    finish_reason_proto,
    tool_calls_from_proto,
    tool_calls_proto,
)
from services.core.context import (
    REQUEST_ID_HEADER,
    current_request_id,
    metadata_value,
)
from services.core.conversation import FinishReason, Prompt, Role
from services.core.errors import (
    FieldViolation,
    InvalidArgumentError,
    UnavailableError,
)
from services.core.identity import ServiceTokenSigner
from services.core.tls import ClientTls, aio_channel
from services.core.tokens import count_tokens
from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    Priority,
    RateDecision,
    RateHeadroom,
    RecordResult,
    RequestType,
    ResponseRequest,
    Route,
    RouteLease,
    UpstreamAnswer,
    Usage,
    UsageRecord,
)
from services.gateway.pipeline.plan import AUTO_MODEL
from services.gateway.ports import (
    DependencyUnavailableError,
    OutcomeReport,
    ReconcileItem,
    ReusedRoutes,
)
from services.gateway.usage import (
    BudgetScopeKind,
    BudgetState,
    ReportGrouping,
    UsageLine,
    UsageReport,
    UsageTotals,
)

ResponseT = TypeVar("ResponseT")

# Reconnect quickly after a downstream restarts instead of gRPC's default backoff of
# up to two minutes. Balance over every address of the target (replicas listed as
# ipv4:10.0.0.1:50055,10.0.0.2:50055, or a DNS name resolving to each): gRPC's
# round_robin sends each call to a connected replica and skips one that is down.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.lb_policy_name", "round_robin"),
]

RECORD_BATCH_MAX_ITEMS = 256
# The most admissions one AcquireBatch carries (the service takes up to 1,000).
ACQUIRE_BATCH_MAX_ITEMS = 256
# The router's complexity classifier reads no further into the user message before
# the last one (RouteRequest.previous_input).
PREVIOUS_INPUT_CHARS = 2000
"""The most usage records one RecordBatch carries (the costs service takes 1,000)."""

_BREAKER_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)

PRIORITY_TO_PROTO = {
    Priority.CRITICAL: common_pb.PRIORITY_CRITICAL,
    Priority.REALTIME: common_pb.PRIORITY_REALTIME,
    Priority.STANDARD: common_pb.PRIORITY_STANDARD,
    Priority.BATCH: common_pb.PRIORITY_BATCH,
    Priority.LOW: common_pb.PRIORITY_LOW,
}
REQUEST_TYPE_TO_PROTO = {
    RequestType.CHAT: common_pb.REQUEST_TYPE_CHAT,
    RequestType.SUMMARIZE: common_pb.REQUEST_TYPE_SUMMARIZE,
    RequestType.ANALYZE: common_pb.REQUEST_TYPE_ANALYZE,
    RequestType.CLASSIFY: common_pb.REQUEST_TYPE_CLASSIFY,
    RequestType.GENERATE: common_pb.REQUEST_TYPE_GENERATE,
}
# Decoding: an unset enum means the documented default.
PRIORITY_FROM_PROTO = {
    common_pb.PRIORITY_UNSPECIFIED: Priority.STANDARD,
    **{value: priority for priority, value in PRIORITY_TO_PROTO.items()},
}
REQUEST_TYPE_FROM_PROTO = {
    common_pb.REQUEST_TYPE_UNSPECIFIED: RequestType.CHAT,
    **{value: kind for kind, value in REQUEST_TYPE_TO_PROTO.items()},
}
CACHE_STATUS_TO_PROTO = {
    CacheStatus.MISS: common_pb.CACHE_STATUS_MISS,
    CacheStatus.EXACT: common_pb.CACHE_STATUS_EXACT,
    CacheStatus.SEMANTIC: common_pb.CACHE_STATUS_SEMANTIC,
    CacheStatus.SKIPPED: common_pb.CACHE_STATUS_SKIPPED,
}
DEGRADATION_TO_PROTO = {
    DegradationLevel.FULL_SERVICE: common_pb.DEGRADATION_LEVEL_FULL_SERVICE,
    DegradationLevel.REDUCED_QUALITY: common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY,
    DegradationLevel.CACHED_ONLY: common_pb.DEGRADATION_LEVEL_CACHED_ONLY,
    DegradationLevel.STATIC_FALLBACK: common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK,
    DegradationLevel.MAINTENANCE: common_pb.DEGRADATION_LEVEL_MAINTENANCE,
}
_DEGRADATION_FROM_PROTO = {v: k for k, v in DEGRADATION_TO_PROTO.items()}
_LANE_FROM_PROTO = {
    router_pb.LANE_SYNC: Lane.SYNC,
    router_pb.LANE_BATCH: Lane.BATCH,
    router_pb.LANE_CACHE_ONLY: Lane.CACHE_ONLY,
    router_pb.LANE_STATIC: Lane.STATIC,
    router_pb.LANE_QUEUE: Lane.QUEUE,
}
_LANE_TO_PROTO = {lane: wire for wire, lane in _LANE_FROM_PROTO.items()}
_LAYER_NAMES = {
    ratelimit_pb.LIMIT_LAYER_USER: "user",
    ratelimit_pb.LIMIT_LAYER_SERVICE: "service",
    ratelimit_pb.LIMIT_LAYER_GLOBAL: "global",
}
_METRIC_NAMES = {
    ratelimit_pb.LIMIT_METRIC_REQUESTS: "requests per minute",
    ratelimit_pb.LIMIT_METRIC_TOKENS: "tokens per minute",
}


_HEADROOM_METRICS = {
    ratelimit_pb.LIMIT_METRIC_REQUESTS: "requests",
    ratelimit_pb.LIMIT_METRIC_TOKENS: "tokens",
}


def _headroom(
    buckets: Iterable[ratelimit_pb.BucketStatus],
) -> tuple[RateHeadroom, ...]:
    """Per metric, the bucket with the least left: the one a caller runs into first."""
    tightest: dict[str, ratelimit_pb.BucketStatus] = {}
    for bucket in buckets:
        metric = _HEADROOM_METRICS.get(bucket.metric)
        if metric is None:
            continue
        held = tightest.get(metric)
        if held is None or bucket.remaining < held.remaining:
            tightest[metric] = bucket
    headroom = []
    for metric, bucket in sorted(tightest.items()):
        rate_per_second = bucket.effective_limit_per_minute / 60
        missing = max(0, bucket.capacity - bucket.remaining)
        headroom.append(
            RateHeadroom(
                metric=metric,
                limit_per_minute=bucket.effective_limit_per_minute,
                remaining=max(0, bucket.remaining),
                reset_seconds=missing / rate_per_second if rate_per_second else 0.0,
            )
        )
    return tuple(headroom)


_BUDGET_SCOPES = {
    costs_pb.SCOPE_KIND_GLOBAL: BudgetScopeKind.GLOBAL,
    costs_pb.SCOPE_KIND_TENANT: BudgetScopeKind.TENANT,
    costs_pb.SCOPE_KIND_SERVICE: BudgetScopeKind.SERVICE,
    costs_pb.SCOPE_KIND_USER: BudgetScopeKind.USER,
    costs_pb.SCOPE_KIND_KEY: BudgetScopeKind.KEY,
}


_REPORT_LINES = {
    ReportGrouping.TENANT: "by_tenant",
    ReportGrouping.API_KEY: "by_api_key",
    ReportGrouping.USER: "by_user",
    ReportGrouping.SERVICE: "by_service",
    ReportGrouping.MODEL: "by_model",
    ReportGrouping.DAY: "by_day",
}


def _set_window(
    request: costs_pb.GetReportRequest, start: float | None, end: float | None
) -> None:
    """``[start, end)`` on a report request; both None: the ledger's month."""
    if start is None and end is None:
        request.current_period = costs_pb.BUDGET_PERIOD_MONTH
    if start is not None:
        request.start_time.CopyFrom(prototime.timestamp(start))
    if end is not None:
        request.end_time.CopyFrom(prototime.timestamp(end))


def _optional_seconds(message: costs_pb.GetReportResponse, field: str) -> float | None:
    if not message.HasField(field):
        return None
    return float(getattr(message, field).ToNanoseconds() / 1e9)


def _usage_lines(lines: Iterable[costs_pb.ReportLine]) -> tuple[UsageLine, ...]:
    return tuple(
        UsageLine(
            key=line.key,
            requests=line.requests,
            cost_micros=line.cost_micros,
            saved_micros=line.saved_micros,
            input_tokens=line.input_tokens,
            cached_input_tokens=line.cached_input_tokens,
            output_tokens=line.output_tokens,
        )
        for line in lines
    )


def _item_results(results: Iterable[Any], answered: str) -> list[Any]:
    """Each item's answer of a batch (its ``answered`` field), or its rejection.

    A batch result is a oneof of the answer and ``rejected`` (the field
    violations the single RPC would name); a rejection becomes the
    InvalidArgumentError that RPC would raise.
    """
    return [
        InvalidArgumentError(
            [
                FieldViolation(v.field, v.description)
                for v in result.rejected.field_violations
            ]
        )
        if result.WhichOneof("result") == "rejected"
        else getattr(result, answered)
        for result in results
    ]


def caller_proto(principal: Principal) -> common_pb.Caller:
    """The common Caller message for a principal."""
    return common_pb.Caller(
        tenant_id=principal.tenant_id,
        service=principal.service,
        user_id=principal.user_id,
        user_tier=principal.user_tier,
        api_key_id=principal.key_id,
    )


def usage_proto(usage: Usage) -> common_pb.Usage:
    """The common Usage message of a usage."""
    return common_pb.Usage(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def usage_from_proto(usage: common_pb.Usage) -> Usage:
    """The usage of a common Usage message."""
    return Usage(
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    )


def conversation_shape(prompt: Prompt) -> router_pb.ConversationShape | None:
    """What the router weighs of a conversation; None for one plain message."""
    last_user = prompt.last_user_index
    shape = router_pb.ConversationShape(
        messages=len(prompt.messages),
        earlier_user_turns=sum(
            1
            for message in prompt.messages[: last_user or 0]
            if message.role is Role.USER
        ),
        tools=len(prompt.tools),
        json_schema=prompt.wants_json_schema,
        images=sum(len(message.images) for message in prompt.messages),
        tool_exchanges=sum(
            len(message.tool_calls) + (message.role is Role.TOOL)
            for message in prompt.messages
        ),
        reasoning=prompt.reasoning_effort is not None,
    )
    if shape == router_pb.ConversationShape(messages=1):
        return None
    return shape


def _field_violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    raw = metadata_value(error.trailing_metadata(), "grpc-status-details-bin")
    if isinstance(raw, bytes):
        status = status_pb2.Status.FromString(raw)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                return [
                    FieldViolation(v.field, v.description)
                    for v in bad_request.field_violations
                ]
    return [FieldViolation("", error.details() or "invalid")]


class DownstreamClient:
    """A channel to one downstream service, guarded by its own breaker.

    ``channel`` replaces the network channel to ``address``: ``tollgate serve all``
    passes an in-process one (``services.allinone``), so the same stubs, breaker and
    deadline apply without a network hop.
    Otherwise ``tls`` (when given) makes the channel to ``address`` TLS or mutual TLS.
    ``signer`` (when given) adds the gateway's service token to every call, for
    services that check it (services.core.identity).
    """

    def __init__(
        self,
        name: str,
        address: str,
        breaker: CircuitBreaker,
        timeout_seconds: float,
        field_renames: dict[str, str] | None = None,
        channel: grpc.aio.Channel | None = None,
        tls: ClientTls | None = None,
        signer: ServiceTokenSigner | None = None,
    ) -> None:
        self.name = name
        self._signer = signer
        self.breaker = breaker
        self.channel = channel or aio_channel(address, tls, options=CHANNEL_OPTIONS)
        self._timeout = timeout_seconds
        self._field_renames = field_renames or {}

    async def call(
        self,
        method: Callable[..., Awaitable[ResponseT]],
        request: Any,
        request_id: str,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> ResponseT:
        """Call ``method`` under the breaker, deadline and request id."""
        if not self.breaker.allow():
            raise DependencyUnavailableError(
                self.name, f"{self.name} circuit open", self.breaker.retry_after()
            )
        try:
            with tracing.client_span(request) as trace_metadata:
                response = await method(
                    request,
                    timeout=self._timeout,
                    metadata=(
                        (REQUEST_ID_HEADER, request_id),
                        *trace_metadata,
                        *metadata,
                        *(self._signer.metadata() if self._signer else ()),
                    ),
                )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in _BREAKER_CODES:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgumentError(
                    [
                        FieldViolation(
                            self._field_renames.get(v.field, v.field), v.description
                        )
                        for v in _field_violations(error)
                    ]
                ) from error
            raise DependencyUnavailableError(
                self.name, f"{self.name} failed: {code.name}"
            ) from error
        self.breaker.record_success()
        return response

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


class RateLimitClient:
    """The ratelimit service as a :class:`RateLimiterPort`."""

    def __init__(
        self, downstream: DownstreamClient, *, batch_admissions: bool = True
    ) -> None:
        """Ask ``downstream`` for admissions, in AcquireBatches when batching.

        ``batch_admissions`` false asks Acquire per request: for an in-process
        limiter, where a batch saves no RPC and costs its task.
        """
        self._downstream = downstream
        self._stub = ratelimit_pb2_grpc.RateLimitServiceStub(downstream.channel)
        # Admissions asked for while one AcquireBatch is in flight go together in
        # the next: one RPC per batch, not per request; each waits for its own.
        self._acquires: (
            Coalescer[ratelimit_pb.AcquireRequest, ratelimit_pb.AcquireResponse] | None
        ) = (
            Coalescer(self._acquire_batch, max_items=ACQUIRE_BATCH_MAX_ITEMS)
            if batch_admissions
            else None
        )

    async def acquire(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        """Admit or deny one request (in the next AcquireBatch, when batching)."""
        request = ratelimit_pb.AcquireRequest(
            request_id=request_id,
            caller=caller_proto(principal),
            model=model,
            estimated_tokens=tokens,
        )
        response: ratelimit_pb.AcquireResponse
        if self._acquires is None:
            response = await self._downstream.call(
                self._stub.Acquire, request, request_id
            )
        else:
            response = await self._acquires.call(request)
        headroom = _headroom(response.buckets)
        if response.decision == ratelimit_pb.DECISION_ALLOW:
            return RateDecision(
                allowed=True, reservation_id=response.reservation_id, headroom=headroom
            )
        denied = response.denied_by
        layer = _LAYER_NAMES.get(denied.layer, "unknown")
        return RateDecision(
            allowed=False,
            retry_after_seconds=response.retry_after.ToTimedelta().total_seconds(),
            denied_subject=f"{layer}:{denied.key}",
            denied_description=(
                f"{layer} limit of {denied.limit_per_minute} "
                f"{_METRIC_NAMES.get(denied.metric, 'units per minute')} exceeded"
            ),
            headroom=headroom,
        )

    async def _acquire_batch(
        self, items: Sequence[ratelimit_pb.AcquireRequest]
    ) -> list[ratelimit_pb.AcquireResponse | Exception]:
        """Decide ``items`` in one call; a refused item is its InvalidArgumentError."""
        response: ratelimit_pb.AcquireBatchResponse = await self._downstream.call(
            self._stub.AcquireBatch,
            ratelimit_pb.AcquireBatchRequest(items=items),
            items[0].request_id,
        )
        return _item_results(response.results, "decided")

    async def headroom(
        self, principal: Principal, model: str
    ) -> tuple[RateHeadroom, ...]:
        """The principal's headroom now (and ``model``'s global limits, if set)."""
        response: ratelimit_pb.GetStatusResponse = await self._downstream.call(
            self._stub.GetStatus,
            ratelimit_pb.GetStatusRequest(caller=caller_proto(principal), model=model),
            current_request_id(),
        )
        return _headroom(response.buckets)

    async def reconcile(self, reservation_id: str, actual_tokens: int) -> None:
        """Settle a reservation."""
        await self._downstream.call(
            self._stub.Reconcile,
            ratelimit_pb.ReconcileRequest(
                reservation_id=reservation_id, actual_tokens=actual_tokens
            ),
            reservation_id,
        )

    async def reconcile_batch(self, items: Sequence[ReconcileItem]) -> None:
        """Settle several reservations in one ReconcileBatch."""
        await self._downstream.call(
            self._stub.ReconcileBatch,
            ratelimit_pb.ReconcileBatchRequest(
                items=[
                    ratelimit_pb.ReconcileRequest(
                        reservation_id=item.reservation_id,
                        actual_tokens=item.actual_tokens,
                    )
                    for item in items
                ]
            ),
            items[0].reservation_id,
        )

    async def report_upstream(
        self, model: str, throttled: bool, retry_after: float
    ) -> None:
        """Feed the adaptive backoff."""
        request = ratelimit_pb.ReportUpstreamThrottleRequest(
            model=model,
            outcome=(
                ratelimit_pb.UPSTREAM_OUTCOME_THROTTLED
                if throttled
                else ratelimit_pb.UPSTREAM_OUTCOME_SUCCESS
            ),
        )
        if retry_after > 0:
            request.retry_after.FromMilliseconds(int(retry_after * 1000))
        await self._downstream.call(self._stub.ReportUpstreamThrottle, request, model)


def _cacheable(key: CacheKeyParts) -> cache_pb.CacheableRequest:
    request = cache_pb.CacheableRequest(
        tenant_id=key.tenant_id,
        model=key.model,
        instructions=key.instructions,
        input=key.input,
        max_output_tokens=key.max_output_tokens,
        tools_json=key.tools_json,
        response_format_json=key.response_format_json,
        multi_turn=key.multi_turn,
        context_digest=key.context_digest,
        exact_only_reason=key.exact_only_reason,
        request_type=REQUEST_TYPE_TO_PROTO[key.request_type],
    )
    if key.temperature is not None:
        request.temperature = key.temperature
    if key.top_p is not None:
        request.top_p = key.top_p
    return request


class CacheClient:
    """The cache service as a :class:`CachePort`."""

    def __init__(self, downstream: DownstreamClient) -> None:
        self._downstream = downstream
        self._stub = cache_pb2_grpc.CacheServiceStub(downstream.channel)

    async def lookup(self, request_id: str, key: CacheKeyParts) -> CachedAnswer | None:
        """Find a cached answer."""
        response: cache_pb.LookupResponse = await self._downstream.call(
            self._stub.Lookup,
            cache_pb.LookupRequest(
                request_id=request_id, request=_cacheable(key), allow_semantic=True
            ),
            request_id,
        )
        if not response.hit:
            return None
        cached = response.response
        return CachedAnswer(
            output_text=cached.output_text,
            model=cached.model,
            usage=usage_from_proto(cached.usage),
            status=(
                CacheStatus.SEMANTIC
                if response.status == common_pb.CACHE_STATUS_SEMANTIC
                else CacheStatus.EXACT
            ),
            similarity=response.similarity,
            age_seconds=response.age.ToNanoseconds() / 1e9,
            tool_calls=tool_calls_from_proto(cached.tool_calls),
            finish_reason=finish_reason_from_proto(cached.finish_reason)
            or FinishReason.STOP,
            semantic_check=response.accepted_check,
        )

    async def store(
        self, request_id: str, key: CacheKeyParts, answer: UpstreamAnswer
    ) -> None:
        """Cache a complete answer."""
        await self._downstream.call(
            self._stub.Store,
            cache_pb.StoreRequest(
                request_id=request_id,
                request=_cacheable(key),
                response=cache_pb.CachedResponse(
                    output_text=answer.output_text,
                    model=answer.model,
                    usage=usage_proto(answer.usage),
                    tool_calls=tool_calls_proto(answer.tool_calls),
                    finish_reason=finish_reason_proto(answer.finish_reason),
                ),
                complete=not answer.truncated,
                has_tool_calls=bool(answer.tool_calls),
            ),
            request_id,
        )


class RouterClient:
    """The router service as a :class:`RouterPort`."""

    def __init__(self, downstream: DownstreamClient, admin_key: str = "") -> None:
        self._downstream = downstream
        # Holding a degradation level is an admin RPC of the router.
        self._admin_metadata = (
            (("authorization", f"Bearer {admin_key}"),) if admin_key else ()
        )
        self._stub = router_pb2_grpc.RouterServiceStub(downstream.channel)

    async def route(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        input_tokens: int,
    ) -> Route:
        """Choose model, deployment, lane and token budget.

        For "auto" the last user text's exact tokens travel with it, so the
        router's complexity classifier counts nothing and the router never holds
        the o200k_base vocabulary (about 63 MB) that this process holds anyway.
        """
        text = request.prompt.last_user_text
        response: router_pb.RouteResponse = await self._downstream.call(
            self._stub.Route,
            router_pb.RouteRequest(
                input_text_tokens=(
                    count_tokens(text) if request.model == AUTO_MODEL else None
                ),
                request_id=request_id,
                caller=caller_proto(principal),
                priority=PRIORITY_TO_PROTO[request.priority],
                request_type=REQUEST_TYPE_TO_PROTO[request.request_type],
                requested_model=request.model,
                input=text,
                previous_input=(
                    request.prompt.previous_user_text[:PREVIOUS_INPUT_CHARS]
                    if request.model == AUTO_MODEL
                    else ""
                ),
                input_tokens=input_tokens,
                max_output_tokens=request.max_output_tokens,
                conversation=conversation_shape(request.prompt),
            ),
            request_id,
        )
        return Route(
            model=response.model,
            deployment=response.deployment,
            lane=_LANE_FROM_PROTO.get(response.lane, Lane.SYNC),
            max_output_tokens=response.max_output_tokens,
            input_token_cap=response.input_token_cap,
            degradation_level=_DEGRADATION_FROM_PROTO.get(
                response.degradation_level, DegradationLevel.FULL_SERVICE
            ),
            fallback_models=tuple(response.fallback_models),
            fallback_text=response.fallback_text,
            deployment_instructions=response.deployment_instructions,
            temperature=(
                response.temperature if response.HasField("temperature") else None
            ),
            worst_case_cost_micros=response.worst_case_cost_micros,
            lease=_lease(response) if response.HasField("lease") else None,
        )

    async def hold_degradation(
        self, level: DegradationLevel, hold_seconds: float, reason: str
    ) -> None:
        """Hold ``level`` on the router for ``hold_seconds`` (it then lapses)."""
        request = router_pb.SetDegradationLevelRequest(
            level=DEGRADATION_TO_PROTO[level], reason=reason
        )
        request.hold.CopyFrom(prototime.duration(hold_seconds))
        await self._downstream.call(
            self._stub.SetDegradationLevel, request, reason, self._admin_metadata
        )

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeReport], reused: Sequence[ReusedRoutes] = ()
    ) -> None:
        """Feed the deployments' metrics and the reused decisions in one batch."""
        request = router_pb.RecordOutcomeBatchRequest()
        for outcome in outcomes:
            item = request.items.add(
                deployment=outcome.deployment,
                model=outcome.model,
                error=outcome.error,
            )
            item.latency.CopyFrom(prototime.duration(outcome.latency_seconds))
        for tally in reused:
            request.reused_routes.add(
                tier=tally.tier,
                lane=_LANE_TO_PROTO[tally.lane],
                decisions=tally.decisions,
                routed_cost_micros=tally.routed_cost_micros,
                premium_cost_micros=tally.premium_cost_micros,
            )
        await self._downstream.call(
            self._stub.RecordOutcomeBatch,
            request,
            outcomes[0].deployment if outcomes else "reused routes",
        )


def _lease(response: router_pb.RouteResponse) -> RouteLease:
    lease = response.lease
    return RouteLease(
        duration_seconds=lease.duration.ToNanoseconds() / 1e9,
        max_output_tokens_cap=lease.max_output_tokens_cap,
        tier=lease.tier,
        prices=(
            lease.prices.input_micros_per_million,
            lease.prices.output_micros_per_million,
        ),
        premium_prices=(
            lease.premium_prices.input_micros_per_million,
            lease.premium_prices.output_micros_per_million,
        ),
    )


class CostsClient:
    """The costs service as a :class:`LedgerPort`."""

    def __init__(self, downstream: DownstreamClient) -> None:
        self._downstream = downstream
        self._stub = costs_pb2_grpc.CostsServiceStub(downstream.channel)
        # Records (and releases) that finish while one RecordBatch is in flight go
        # together in the next: one RPC per batch, not per request.
        self._records: Coalescer[costs_pb.RecordRequest, costs_pb.RecordResponse] = (
            Coalescer(self._record_batch, max_items=RECORD_BATCH_MAX_ITEMS)
        )

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book one request's usage (in the next RecordBatch)."""
        response = await self._records.call(
            costs_pb.RecordRequest(
                request_id=record.request_id,
                caller=caller_proto(record.principal),
                model=record.model,
                deployment=record.deployment,
                usage=usage_proto(record.usage),
                batch=record.batch,
                cache_status=CACHE_STATUS_TO_PROTO[record.cache_status],
                occurred_at=prototime.timestamp(record.occurred_at),
                requested_model=record.requested_model,
                budget_reservation_id=record.budget_reservation_id,
            )
        )
        return RecordResult(
            cost_micros=response.cost_micros, duplicate=response.duplicate
        )

    async def _record_batch(
        self, items: Sequence[costs_pb.RecordRequest]
    ) -> list[costs_pb.RecordResponse | Exception]:
        """Book ``items`` in one call; a refused item is its InvalidArgumentError."""
        response: costs_pb.RecordBatchResponse = await self._downstream.call(
            self._stub.RecordBatch,
            costs_pb.RecordBatchRequest(items=items),
            items[0].request_id,
        )
        return _item_results(response.results, "recorded")

    async def key_usage(
        self, principal: Principal, start: float | None, end: float | None
    ) -> UsageTotals:
        """The key's ledger entries in ``[start, end)``; both None: this month."""
        request = costs_pb.GetReportRequest(
            tenant_id=principal.tenant_id, api_key_id=principal.key_id
        )
        _set_window(request, start, end)
        response: costs_pb.GetReportResponse = await self._downstream.call(
            self._stub.GetReport, request, current_request_id()
        )
        return UsageTotals(
            start=_optional_seconds(response, "start_time"),
            end=response.end_time.ToNanoseconds() / 1e9,
            requests=response.total_requests,
            cost_micros=response.total_cost_micros,
            saved_micros=(
                response.cache_saved_micros
                + response.routing_saved_micros
                + response.batch_saved_micros
            ),
            by_model=_usage_lines(response.by_model),
            by_day=_usage_lines(response.by_day),
            currency_code=response.currency_code,
        )

    async def report(
        self,
        tenant_id: str,
        start: float | None,
        end: float | None,
        group_by: ReportGrouping,
    ) -> UsageReport:
        """Every key's entries in ``[start, end)`` (both None: this month), grouped."""
        request = costs_pb.GetReportRequest(tenant_id=tenant_id)
        _set_window(request, start, end)
        response: costs_pb.GetReportResponse = await self._downstream.call(
            self._stub.GetReport, request, current_request_id()
        )
        lines = _usage_lines(getattr(response, _REPORT_LINES[group_by]))
        return UsageReport(
            start=_optional_seconds(response, "start_time"),
            end=response.end_time.ToNanoseconds() / 1e9,
            group_by=group_by,
            lines=lines,
            total=UsageLine(
                key="total",
                requests=response.total_requests,
                cost_micros=response.total_cost_micros,
                saved_micros=(
                    response.cache_saved_micros
                    + response.routing_saved_micros
                    + response.batch_saved_micros
                ),
                input_tokens=sum(line.input_tokens for line in lines),
                cached_input_tokens=sum(line.cached_input_tokens for line in lines),
                output_tokens=sum(line.output_tokens for line in lines),
            ),
            cache_saved_micros=response.cache_saved_micros,
            routing_saved_micros=response.routing_saved_micros,
            batch_saved_micros=response.batch_saved_micros,
            currency_code=response.currency_code,
        )

    async def budget_states(self, principal: Principal) -> list[BudgetState]:
        """Every budget of the principal's chain of scopes, broadest first."""
        response: costs_pb.GetBudgetStatusResponse = await self._downstream.call(
            self._stub.GetBudgetStatus,
            costs_pb.GetBudgetStatusRequest(caller=caller_proto(principal)),
            current_request_id(),
        )
        states = []
        for status in response.budgets:
            budget = status.budget
            scope = _BUDGET_SCOPES.get(budget.scope.kind)
            if scope is None:
                continue
            states.append(
                BudgetState(
                    scope=scope,
                    subject={
                        BudgetScopeKind.GLOBAL: "",
                        BudgetScopeKind.TENANT: budget.scope.tenant_id,
                        BudgetScopeKind.SERVICE: budget.scope.service,
                        BudgetScopeKind.USER: budget.scope.user_id,
                        BudgetScopeKind.KEY: budget.scope.api_key_id,
                    }[scope],
                    period=costs_pb.BudgetPeriod.Name(budget.period)
                    .removeprefix("BUDGET_PERIOD_")
                    .lower(),
                    hard=budget.hard,
                    limit_micros=budget.limit_micros,
                    spent_micros=status.spent_micros,
                    reserved_micros=status.reserved_micros,
                    remaining_micros=status.remaining_micros,
                    resets_at=status.period_end.ToNanoseconds() / 1e9,
                )
            )
        return states

    async def release_budget(self, request_id: str, reservation_id: str) -> None:
        """Release a budget reservation of a request that books nothing."""
        await self._records.call(
            costs_pb.RecordRequest(
                request_id=request_id,
                budget_reservation_id=reservation_id,
                release_only=True,
            )
        )

    async def check_budget(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
    ) -> BudgetVerdict:
        """Reserve the worst-case cost against every budget of the principal."""
        response: costs_pb.CheckBudgetResponse = await self._downstream.call(
            self._stub.CheckBudget,
            costs_pb.CheckBudgetRequest(
                request_id=request_id,
                caller=caller_proto(principal),
                model=model,
                input_tokens=input_tokens,
                max_output_tokens=max_output_tokens,
            ),
            request_id,
        )
        if response.decision == costs_pb.BUDGET_DECISION_DENY:
            budget = response.exceeded_budget
            scope = costs_pb.ScopeKind.Name(budget.scope.kind)
            period = costs_pb.BudgetPeriod.Name(budget.period)
            return BudgetVerdict(
                allowed=False,
                resets_at=(
                    response.resets_at.ToNanoseconds() / 1e9
                    if response.HasField("resets_at")
                    else None
                ),
                description=(
                    f"{scope.removeprefix('SCOPE_KIND_').lower()} "
                    f"{period.removeprefix('BUDGET_PERIOD_').lower()} budget of "
                    f"{budget.limit_micros} micro-dollars"
                ),
                remaining_micros=response.remaining_micros,
            )
        return BudgetVerdict(
            allowed=True,
            reservation_id=response.reservation_id,
            remaining_micros=response.remaining_micros,
            downgrade_model=(
                response.downgrade_model
                if response.decision == costs_pb.BUDGET_DECISION_DOWNGRADE
                else ""
            ),
            tenant_unbudgeted_seconds=(
                response.tenant_unbudgeted_for.ToTimedelta().total_seconds()
                if response.HasField("tenant_unbudgeted_for")
                else 0.0
            ),
        )


class KeyBudgetClient:
    """Sets API keys' own budgets on the costs service (its admin RPC SetBudget)."""

    def __init__(
        self,
        downstream: DownstreamClient,
        admin_key: str,
        budget_set: Callable[[str], None],
    ) -> None:
        self._downstream = downstream
        self._admin_metadata = (("authorization", f"Bearer {admin_key}"),)
        self._stub = costs_pb2_grpc.CostsServiceStub(downstream.channel)
        # Told the tenant of each budget set, so that it binds here at once.
        self._budget_set = budget_set

    async def set_key_budget(
        self, tenant_id: str, key_id: str, limit_micros: int
    ) -> None:
        """Create or replace the key's hard monthly budget.

        Raises:
            UnavailableError: the costs service did not set it (unreachable, or it
                refused the gateway's admin key).
        """
        request = costs_pb.SetBudgetRequest(
            budget=costs_pb.Budget(
                scope=costs_pb.BudgetScope(
                    kind=costs_pb.SCOPE_KIND_KEY,
                    tenant_id=tenant_id,
                    api_key_id=key_id,
                ),
                period=costs_pb.BUDGET_PERIOD_MONTH,
                limit_micros=limit_micros,
                hard=True,
            )
        )
        try:
            await self._downstream.call(
                self._stub.SetBudget,
                request,
                current_request_id(),
                self._admin_metadata,
            )
        except DependencyUnavailableError as error:
            raise UnavailableError(
                f"the key's budget could not be set, so no key was made: {error}",
                reason="KEY_BUDGET_NOT_SET",
                retry_after=max(error.retry_after, 1.0),
            ) from error
        self._budget_set(tenant_id)
