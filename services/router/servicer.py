"""gRPC face of the router: decode, call the domain, encode.

The wire's UNSPECIFIED priority and request type mean STANDARD and CHAT, as the
contract says; values this build does not know are INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core import metrics
from services.core.errors import FieldViolation, InvalidArgumentError
from services.core.prototime import duration as _duration
from services.core.prototime import timestamp as _timestamp
from services.router.domain import (
    ConversationShape,
    DegradationChange,
    DeploymentStatus,
    RouteDecision,
    Router,
    RouteRequest,
    TrafficAllocation,
)
from services.router.encoder_input import CONTEXT_CHARS
from services.router.enums import (
    Complexity,
    DegradationLevel,
    Lane,
    Priority,
    QualitySignal,
    RequestType,
    ShadowVerdict,
)
from services.router.ports import Outcome, TenantCounts
from services.router.table import Tier

SERVICE_NAME = router_pb.DESCRIPTOR.services_by_name["RouterService"].full_name

# Far above any model's context window; keeps worst-case costs inside int64.
MAX_TOKENS = 100_000_000

_Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_PRIORITIES: dict[common_pb.Priority, Priority] = {
    common_pb.PRIORITY_UNSPECIFIED: Priority.STANDARD,
    common_pb.PRIORITY_CRITICAL: Priority.CRITICAL,
    common_pb.PRIORITY_REALTIME: Priority.REALTIME,
    common_pb.PRIORITY_STANDARD: Priority.STANDARD,
    common_pb.PRIORITY_BATCH: Priority.BATCH,
    common_pb.PRIORITY_LOW: Priority.LOW,
}
_REQUEST_TYPES: dict[common_pb.RequestType, RequestType] = {
    common_pb.REQUEST_TYPE_UNSPECIFIED: RequestType.CHAT,
    common_pb.REQUEST_TYPE_CHAT: RequestType.CHAT,
    common_pb.REQUEST_TYPE_SUMMARIZE: RequestType.SUMMARIZE,
    common_pb.REQUEST_TYPE_ANALYZE: RequestType.ANALYZE,
    common_pb.REQUEST_TYPE_CLASSIFY: RequestType.CLASSIFY,
    common_pb.REQUEST_TYPE_GENERATE: RequestType.GENERATE,
}

# The longest a held (automatic) degradation level may last without renewal.
MAX_HOLD_SECONDS = 3600
# The longest an operator's timed degradation level may last.
MAX_LEVEL_DURATION_SECONDS = 7 * 24 * 3600

_DEGRADATION_LEVELS: dict[common_pb.DegradationLevel, DegradationLevel] = {
    common_pb.DEGRADATION_LEVEL_FULL_SERVICE: DegradationLevel.FULL_SERVICE,
    common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY: DegradationLevel.REDUCED_QUALITY,
    common_pb.DEGRADATION_LEVEL_CACHED_ONLY: DegradationLevel.CACHED_ONLY,
    common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK: DegradationLevel.STATIC_FALLBACK,
    common_pb.DEGRADATION_LEVEL_MAINTENANCE: DegradationLevel.MAINTENANCE,
}
_WIRE_DEGRADATION_LEVELS = {level: wire for wire, level in _DEGRADATION_LEVELS.items()}
_WIRE_LANES: dict[Lane, router_pb.Lane] = {
    Lane.SYNC: router_pb.LANE_SYNC,
    Lane.BATCH: router_pb.LANE_BATCH,
    Lane.CACHE_ONLY: router_pb.LANE_CACHE_ONLY,
    Lane.STATIC: router_pb.LANE_STATIC,
    Lane.QUEUE: router_pb.LANE_QUEUE,
}
_QUALITY_SIGNALS: dict[router_pb.QualitySignal, QualitySignal] = {
    router_pb.QUALITY_SIGNAL_THUMBS_UP: QualitySignal.THUMBS_UP,
    router_pb.QUALITY_SIGNAL_THUMBS_DOWN: QualitySignal.THUMBS_DOWN,
    router_pb.QUALITY_SIGNAL_ESCALATED: QualitySignal.ESCALATED,
}
_WIRE_COMPLEXITIES: dict[Complexity, router_pb.Complexity] = {
    Complexity.UNSPECIFIED: router_pb.COMPLEXITY_UNSPECIFIED,
    Complexity.TRIVIAL: router_pb.COMPLEXITY_TRIVIAL,
    Complexity.SIMPLE: router_pb.COMPLEXITY_SIMPLE,
    Complexity.MODERATE: router_pb.COMPLEXITY_MODERATE,
    Complexity.COMPLEX: router_pb.COMPLEXITY_COMPLEX,
}


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Serves tollgate.router.v1.RouterService with a :class:`Router`."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def Route(
        self, request: router_pb.RouteRequest, context: _Context
    ) -> router_pb.RouteResponse:
        """Decide where one request goes and under which token budget."""
        decision = await self._router.route(_decode_route_request(request))
        metrics.ROUTER_ROUTES.labels(
            decision.tier, decision.complexity.value, decision.lane.value
        ).inc()
        if decision.classified_by:
            metrics.ROUTER_CLASSIFICATIONS.labels(decision.classified_by).inc()
        metrics.ROUTER_DEGRADATION_LEVEL.set(decision.degradation_level)
        response = router_pb.RouteResponse(
            model=decision.model,
            deployment=decision.deployment,
            deployment_version=decision.deployment_version,
            lane=_WIRE_LANES[decision.lane],
            complexity=_WIRE_COMPLEXITIES[decision.complexity],
            tier=decision.tier,
            reason=decision.reason,
            max_output_tokens=decision.max_output_tokens,
            input_token_cap=decision.input_token_cap,
            deployment_instructions=decision.deployment_instructions,
            degradation_level=_WIRE_DEGRADATION_LEVELS[decision.degradation_level],
            fallback_models=decision.fallback_models,
            fallback_text=decision.fallback_text,
            worst_case_cost_micros=decision.worst_case_cost_micros,
            truncated_input_tokens=decision.truncated_input_tokens,
        )
        if decision.temperature is not None:
            response.temperature = decision.temperature
        if decision.lease is not None:
            response.lease.CopyFrom(_encode_lease(decision))
        return response

    async def RecordOutcome(
        self, request: router_pb.RecordOutcomeRequest, context: _Context
    ) -> router_pb.RecordOutcomeResponse:
        """Count one routed call's latency and error, and/or a quality signal."""
        violations = _outcome_violations(request, "")
        if violations:
            raise InvalidArgumentError(violations)
        return await self._record_outcome(request)

    async def RecordOutcomeBatch(
        self, request: router_pb.RecordOutcomeBatchRequest, context: _Context
    ) -> router_pb.RecordOutcomeBatchResponse:
        """Record each item as RecordOutcome would, in order, once all are valid."""
        violations: list[FieldViolation] = []
        if len(request.items) > MAX_BATCH_ITEMS:
            violations.append(
                FieldViolation("items", f"must hold at most {MAX_BATCH_ITEMS} items")
            )
        if len(request.reused_routes) > MAX_BATCH_ITEMS:
            violations.append(
                FieldViolation(
                    "reused_routes", f"must hold at most {MAX_BATCH_ITEMS} entries"
                )
            )
        if not request.items and not request.reused_routes:
            violations.append(
                FieldViolation("items", "must hold an item or a reused route")
            )
        for index, item in enumerate(request.items):
            violations.extend(_outcome_violations(item, f"items[{index}]."))
        tiers = self._router.table.tiers
        for index, reused in enumerate(request.reused_routes):
            violations.extend(
                _reused_route_violations(reused, tiers, f"reused_routes[{index}].")
            )
        if violations:
            raise InvalidArgumentError(violations)
        results = [await self._record_outcome(item) for item in request.items]
        for reused in request.reused_routes:
            await self._router.record_reused_routes(
                reused.tier,
                reused.decisions,
                reused.routed_cost_micros,
                reused.premium_cost_micros,
            )
            metrics.ROUTER_ROUTES.labels(
                reused.tier,
                Complexity.UNSPECIFIED.value,
                _LANES[reused.lane].value,
            ).inc(reused.decisions)
        return router_pb.RecordOutcomeBatchResponse(results=results)

    async def _record_outcome(
        self, request: router_pb.RecordOutcomeRequest
    ) -> router_pb.RecordOutcomeResponse:
        response = router_pb.RecordOutcomeResponse(rolled_back=False)
        if request.deployment:
            latency = request.latency
            result = await self._router.record_outcome(
                request.deployment,
                Outcome(
                    latency_ms=latency.seconds * 1000 + latency.nanos / 1_000_000,
                    error=request.error,
                ),
            )
            if result.rollback is not None:
                response.rolled_back = True
                response.rollback_reason = result.rollback.reason
        signal = _QUALITY_SIGNALS.get(request.quality)
        if signal is not None:
            route = await self._router.record_quality(request.request_id, signal)
            response.quality_recorded = route is not None
        return response

    async def SetTrafficSplit(
        self, request: router_pb.SetTrafficSplitRequest, context: _Context
    ) -> router_pb.SetTrafficSplitResponse:
        """Replace the traffic split of the deployments."""
        split = await self._router.set_traffic_split(
            [TrafficAllocation(a.deployment, a.percent) for a in request.allocations]
        )
        return router_pb.SetTrafficSplitResponse(
            allocations=[
                router_pb.TrafficAllocation(deployment=a.deployment, percent=a.percent)
                for a in split
            ]
        )

    async def GetDeploymentStatus(
        self, request: router_pb.GetDeploymentStatusRequest, context: _Context
    ) -> router_pb.GetDeploymentStatusResponse:
        """List every deployment's share and metrics."""
        return router_pb.GetDeploymentStatusResponse(
            deployments=[
                _encode_status(status)
                for status in await self._router.deployment_statuses()
            ]
        )

    async def SetDegradationLevel(
        self, request: router_pb.SetDegradationLevelRequest, context: _Context
    ) -> router_pb.SetDegradationLevelResponse:
        """Put a degradation level in force."""
        level = _DEGRADATION_LEVELS.get(request.level)
        if level is None:
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        "level", "must be a DEGRADATION_LEVEL_ other than UNSPECIFIED"
                    )
                ]
            )
        if request.HasField("duration"):
            change = await self._set_timed_level(level, request)
        elif request.HasField("hold"):
            hold_seconds = request.hold.ToNanoseconds() / 1e9
            if not 0 < hold_seconds <= MAX_HOLD_SECONDS:
                raise InvalidArgumentError(
                    [
                        FieldViolation(
                            "hold",
                            f"must be more than 0 and at most {MAX_HOLD_SECONDS} s",
                        )
                    ]
                )
            change = await self._router.hold_degradation_level(
                level, request.reason, hold_seconds
            )
        else:
            change = await self._router.set_degradation_level(
                level, request.reason, raise_only=request.raise_only
            )
        metrics.ROUTER_DEGRADATION_LEVEL.set(change.level)
        response = router_pb.SetDegradationLevelResponse(
            level=_WIRE_DEGRADATION_LEVELS[change.level],
            previous_level=_WIRE_DEGRADATION_LEVELS[change.previous_level],
            applied=change.applied,
        )
        if change.expires_at is not None:
            response.expires_at.CopyFrom(_timestamp(change.expires_at))
        return response

    async def _set_timed_level(
        self, level: DegradationLevel, request: router_pb.SetDegradationLevelRequest
    ) -> DegradationChange:
        violations = []
        if request.HasField("hold"):
            violations.append(FieldViolation("duration", "must not be set with hold"))
        if request.raise_only:
            violations.append(
                FieldViolation("duration", "must not be set with raise_only")
            )
        seconds = request.duration.ToNanoseconds() / 1e9
        if not 0 < seconds <= MAX_LEVEL_DURATION_SECONDS:
            violations.append(
                FieldViolation(
                    "duration",
                    f"must be more than 0 and at most {MAX_LEVEL_DURATION_SECONDS} s",
                )
            )
        if violations:
            raise InvalidArgumentError(violations)
        return await self._router.set_degradation_level(
            level, request.reason, duration_seconds=seconds
        )

    async def GetRoutingStats(
        self, request: router_pb.GetRoutingStatsRequest, context: _Context
    ) -> router_pb.GetRoutingStatsResponse:
        """Report routing decisions by tier and complexity, and their costs."""
        stats = await self._router.routing_stats()
        tenants = [
            _encode_tenant(tenant_id, counts)
            for tenant_id, counts in stats.tenants
            if not request.tenant_id or tenant_id == request.tenant_id
        ]
        return router_pb.GetRoutingStatsResponse(
            tenants=tenants,
            by_tier=[
                router_pb.RoutingCount(label=tier, requests=count)
                for tier, count in stats.by_tier
            ],
            by_complexity=[
                router_pb.RoutingCount(label=complexity.value, requests=count)
                for complexity, count in stats.by_complexity
            ],
            routed_cost_micros=stats.routed_cost_micros,
            premium_cost_micros=stats.premium_cost_micros,
            savings_micros=stats.premium_cost_micros - stats.routed_cost_micros,
            degradation_level=_WIRE_DEGRADATION_LEVELS[stats.degradation_level],
            degradation_level_until=(
                None
                if stats.degradation_level_until is None
                else _timestamp(stats.degradation_level_until)
            ),
        )


def _encode_tenant(
    tenant_id: str, counts: TenantCounts
) -> router_pb.TenantRoutingStats:
    requests = counts.requests
    complaints = sum(
        counts.downgraded_signals.get(signal, 0)
        for signal in (QualitySignal.THUMBS_DOWN, QualitySignal.ESCALATED)
    )
    return router_pb.TenantRoutingStats(
        tenant_id=tenant_id,
        requests=requests,
        by_complexity=[
            router_pb.RoutingCount(
                label=level.value, requests=counts.by_complexity.get(level, 0)
            )
            for level in Complexity
            if level is not Complexity.UNSPECIFIED
        ],
        downgraded_requests=counts.downgraded,
        downgrade_rate=counts.downgraded / requests if requests else 0.0,
        signals=[
            router_pb.RoutingCount(
                label=signal.value, requests=counts.signals.get(signal, 0)
            )
            for signal in QualitySignal
        ],
        downgraded_signals=[
            router_pb.RoutingCount(
                label=signal.value, requests=counts.downgraded_signals.get(signal, 0)
            )
            for signal in QualitySignal
        ],
        downgraded_complaint_rate=(
            complaints / counts.downgraded if counts.downgraded else 0.0
        ),
        shadow_verdicts=[
            router_pb.RoutingCount(label=verdict.value, requests=count)
            for verdict in ShadowVerdict
            if (count := counts.shadow.get(verdict, 0))
        ],
    )


def _encode_status(status: DeploymentStatus) -> router_pb.DeploymentStatus:
    encoded = router_pb.DeploymentStatus(
        name=status.name,
        model=status.model,
        version=status.version,
        traffic_percent=status.traffic_percent,
        requests=status.requests,
        errors=status.errors,
        error_rate=status.window.error_rate,
        p50_latency_ms=status.window.p50_latency_ms,
        p95_latency_ms=status.window.p95_latency_ms,
        window_requests=status.window.requests,
        window_errors=status.window.errors,
        baseline_deployment=status.baseline,
        state=router_pb.DEPLOYMENT_STATE_ACTIVE,
    )
    if status.rollback is not None:
        encoded.state = router_pb.DEPLOYMENT_STATE_ROLLED_BACK
        encoded.rollback_reason = status.rollback.reason
        encoded.rolled_back_at.CopyFrom(_timestamp(status.rollback.at))
    return encoded


def _decode_route_request(request: router_pb.RouteRequest) -> RouteRequest:
    violations: list[FieldViolation] = []
    if not request.caller.tenant_id:
        violations.append(FieldViolation("caller.tenant_id", "required"))
    priority = _PRIORITIES.get(request.priority)
    if priority is None:
        violations.append(FieldViolation("priority", "unknown priority"))
    request_type = _REQUEST_TYPES.get(request.request_type)
    if request_type is None:
        violations.append(FieldViolation("request_type", "unknown request type"))
    for name, value in (
        ("input_tokens", request.input_tokens),
        ("max_output_tokens", request.max_output_tokens),
        ("input_text_tokens", request.input_text_tokens),
    ):
        if not 0 <= value <= MAX_TOKENS:
            violations.append(
                FieldViolation(name, f"must be between 0 and {MAX_TOKENS}")
            )
    if violations or priority is None or request_type is None:
        raise InvalidArgumentError(violations)
    return RouteRequest(
        request_id=request.request_id,
        previous_input=request.previous_input[:CONTEXT_CHARS],
        input_text_tokens=(
            request.input_text_tokens if request.HasField("input_text_tokens") else None
        ),
        tenant_id=request.caller.tenant_id,
        user_id=request.caller.user_id,
        priority=priority,
        request_type=request_type,
        requested_model=request.requested_model,
        input=request.input,
        input_tokens=request.input_tokens,
        max_output_tokens=request.max_output_tokens,
        conversation=_conversation(request),
    )


def _conversation(request: router_pb.RouteRequest) -> ConversationShape:
    if not request.HasField("conversation"):
        return ConversationShape()
    shape = request.conversation
    return ConversationShape(
        messages=shape.messages,
        earlier_user_turns=shape.earlier_user_turns,
        tools=shape.tools,
        json_schema=shape.json_schema,
        images=shape.images,
        tool_exchanges=shape.tool_exchanges,
        reasoning=shape.reasoning,
    )


MAX_BATCH_ITEMS = 1000
"""The most items, and the most reused-route entries, one RecordOutcomeBatch carries."""

_LANES = {wire: lane for lane, wire in _WIRE_LANES.items()}


def _encode_lease(decision: RouteDecision) -> router_pb.RouteLease:
    lease = decision.lease
    assert lease is not None
    return router_pb.RouteLease(
        duration=_duration(lease.duration_seconds),
        max_output_tokens_cap=lease.max_output_tokens_cap,
        tier=decision.tier,
        prices=_prices(lease.tier),
        premium_prices=_prices(lease.premium_tier),
    )


def _prices(tier: Tier) -> router_pb.TokenPrices:
    return router_pb.TokenPrices(
        input_micros_per_million=tier.input_micros_per_million,
        output_micros_per_million=tier.output_micros_per_million,
    )


def _reused_route_violations(
    reused: router_pb.ReusedRoutes, tiers: Mapping[str, Tier], prefix: str
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if reused.tier not in tiers:
        violations.append(
            FieldViolation(f"{prefix}tier", "must be a tier of the routing table")
        )
    if reused.lane not in _LANES:
        violations.append(FieldViolation(f"{prefix}lane", "must be a known lane"))
    if reused.decisions < 1:
        violations.append(FieldViolation(f"{prefix}decisions", "must be at least 1"))
    for field in ("routed_cost_micros", "premium_cost_micros"):
        if getattr(reused, field) < 0:
            violations.append(FieldViolation(f"{prefix}{field}", "must be >= 0"))
    return violations


def _outcome_violations(
    request: router_pb.RecordOutcomeRequest, prefix: str
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if request.quality != router_pb.QUALITY_SIGNAL_UNSPECIFIED:
        if request.quality not in _QUALITY_SIGNALS:
            violations.append(
                FieldViolation(f"{prefix}quality", "unknown quality signal")
            )
        if not request.request_id:
            violations.append(
                FieldViolation(f"{prefix}request_id", "required with a quality signal")
            )
    elif not request.deployment:
        violations.append(
            FieldViolation(
                f"{prefix}deployment", "required (or request_id and quality)"
            )
        )
    latency = request.latency
    if latency.seconds < 0 or latency.nanos < 0:
        violations.append(FieldViolation(f"{prefix}latency", "must not be negative"))
    return violations
