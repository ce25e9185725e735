"""Routing decisions for the router service.

Priority picks the model, a sticky cohort hash picks the deployment, the request
type sets the token budget, and the degradation level bends all of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from services.core.errors import FieldViolation, InvalidArgumentError
from services.router.enums import (
    Complexity,
    DegradationLevel,
    Lane,
    Priority,
    RequestType,
)
from services.router.ports import ControlStore, MetricsStore
from services.router.table import RoutingTable, Tier

COHORT_BUCKETS = 10_000
"""Users are hashed into this many buckets; one percent of traffic is 100 buckets."""

AUTO_MODELS = frozenset({"", "auto"})
"""Requested model names that let the router choose."""

_TOKENS_PER_PRICE_UNIT = 1_000_000

_log = structlog.get_logger("tollgate.router")


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request to route."""

    tenant_id: str
    user_id: str
    priority: Priority
    request_type: RequestType
    requested_model: str
    input_tokens: int
    max_output_tokens: int
    """The caller's limit; 0 uses the request type's budget."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a request goes and under which budget."""

    model: str
    tier: str
    deployment: str
    deployment_version: str
    deployment_instructions: str
    temperature: float | None
    lane: Lane
    complexity: Complexity
    reason: str
    max_output_tokens: int
    input_token_cap: int
    degradation_level: DegradationLevel
    fallback_models: tuple[str, ...]
    fallback_text: str
    worst_case_cost_micros: int


@dataclass(frozen=True, slots=True)
class TrafficAllocation:
    """One deployment's share of traffic, in percent."""

    deployment: str
    percent: int


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One deployment's configuration, share and metrics."""

    name: str
    version: str
    traffic_percent: int
    requests: int
    errors: int
    error_rate: float
    p50_latency_ms: float
    p95_latency_ms: float


@dataclass(frozen=True, slots=True)
class DegradationChange:
    """The level now in force and the one before."""

    level: DegradationLevel
    previous_level: DegradationLevel


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """Distribution of routing decisions and their worst-case costs."""

    by_tier: tuple[tuple[str, int], ...]
    by_complexity: tuple[tuple[Complexity, int], ...]
    routed_cost_micros: int
    premium_cost_micros: int
    degradation_level: DegradationLevel


def cohort_bucket(tenant_id: str, user_id: str) -> int:
    """The sticky bucket (0..9999) of a user.

    sha256 rather than ``hash()``: Python salts ``hash()`` per process, and every
    replica must put the same user in the same cohort.
    """
    digest = hashlib.sha256(f"{tenant_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % COHORT_BUCKETS


def pick_deployment(split: Mapping[str, int], bucket: int) -> str:
    """The deployment whose cumulative share, in name order, covers ``bucket``.

    Sorting by name keeps a user's deployment stable across replicas and restarts.

    Raises:
        ValueError: the split does not add up to 100 percent.
    """
    cumulative = 0
    for name in sorted(split):
        cumulative += split[name] * COHORT_BUCKETS // 100
        if bucket < cumulative:
            return name
    raise ValueError("the traffic split does not add up to 100 percent")


def worst_case_cost_micros(tier: Tier, input_tokens: int, output_tokens: int) -> int:
    """The list-price cost of a call, in micro-dollars, rounded up.

    Integer arithmetic throughout; the division rounds up because a worst case must
    never be under-estimated (1 token at 0.1 micro-dollars costs 1).
    """
    scaled = (
        input_tokens * tier.input_micros_per_million
        + output_tokens * tier.output_micros_per_million
    )
    return -(-scaled // _TOKENS_PER_PRICE_UNIT)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (0.0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Router:
    """Routes requests with a routing table and shared control state."""

    def __init__(
        self, table: RoutingTable, control: ControlStore, metrics: MetricsStore
    ) -> None:
        self._table = table
        self._control = control
        self._metrics = metrics
        self._tiers_by_model = {
            tier.model: (name, tier) for name, tier in table.tiers.items()
        }
        self._premium_tier = self._tiers_by_model[table.fallback_order[0]][1]

    async def route(self, request: RouteRequest) -> RouteDecision:
        """Decide the model, deployment, lane and budget of ``request``.

        Raises:
            InvalidArgumentError: ``requested_model`` names no model of the table.
        """
        budget = self._table.request_types[request.request_type]
        priority_route = self._table.priorities[request.priority]
        lane = priority_route.lane
        if request.requested_model in AUTO_MODELS:
            tier_name = priority_route.tier
            model = self._table.tiers[tier_name].model
            reason = f"priority {request.priority.name} → {tier_name} tier {model}"
        elif request.requested_model in self._tiers_by_model:
            model = request.requested_model
            reason = f"requested model {model}"
        else:
            raise InvalidArgumentError(
                [FieldViolation("requested_model", "unknown model; use auto")]
            )
        if lane is Lane.BATCH:
            reason += " via the batch lane"
        max_output_tokens = budget.max_output_tokens
        if request.max_output_tokens:
            max_output_tokens = min(request.max_output_tokens, max_output_tokens)

        level = await self._degradation_level()
        fallback_text = ""
        if level is DegradationLevel.REDUCED_QUALITY:
            model = next(iter(self._table.cheaper_than(model)), model)
            max_output_tokens = -(-max_output_tokens // 2)
            reason += (
                f"; degraded to REDUCED_QUALITY: {model}, "
                f"max output halved to {max_output_tokens}"
            )
        elif level is DegradationLevel.CACHED_ONLY:
            lane = Lane.CACHE_ONLY
            fallback_text = self._table.busy_message
            reason += "; degraded to CACHED_ONLY: cache only, busy message on a miss"
        elif level is DegradationLevel.STATIC_FALLBACK:
            lane = Lane.STATIC
            fallback_text = budget.static_fallback
            reason += "; degraded to STATIC_FALLBACK: static answer"
        elif level is DegradationLevel.MAINTENANCE:
            lane = Lane.QUEUE
            reason += "; degraded to MAINTENANCE: queued for later"
        tier_name, tier = self._tiers_by_model[model]

        deployment_name = pick_deployment(
            await self._split(), cohort_bucket(request.tenant_id, request.user_id)
        )
        deployment = self._table.deployments[deployment_name]
        cost = worst_case_cost_micros(tier, request.input_tokens, max_output_tokens)
        # Prompts are not classified yet; the tier comes from priority or request.
        complexity = Complexity.UNSPECIFIED
        await self._metrics.record_route(
            tier_name,
            complexity,
            cost,
            worst_case_cost_micros(
                self._premium_tier, request.input_tokens, max_output_tokens
            ),
        )
        return RouteDecision(
            model=model,
            tier=tier_name,
            deployment=deployment_name,
            deployment_version=deployment.version,
            deployment_instructions=deployment.instructions,
            temperature=deployment.temperature,
            lane=lane,
            complexity=complexity,
            reason=reason,
            max_output_tokens=max_output_tokens,
            input_token_cap=budget.max_input_tokens,
            degradation_level=level,
            fallback_models=tuple(self._table.cheaper_than(model)),
            fallback_text=fallback_text,
            worst_case_cost_micros=cost,
        )

    async def record_outcome(
        self, deployment: str, latency_ms: float, error: bool
    ) -> None:
        """Count one upstream call served by ``deployment``.

        Raises:
            InvalidArgumentError: ``deployment`` is not in the table.
        """
        if deployment not in self._table.deployments:
            raise InvalidArgumentError(
                [FieldViolation("deployment", f"unknown deployment {deployment!r}")]
            )
        await self._metrics.record_outcome(deployment, latency_ms, error)

    async def set_traffic_split(
        self, allocations: Sequence[TrafficAllocation]
    ) -> list[TrafficAllocation]:
        """Replace the split; deployments left out get 0%. Returns the whole split.

        Raises:
            InvalidArgumentError: an unknown or repeated deployment, a share above
                100, or shares that do not add up to 100.
        """
        violations: list[FieldViolation] = []
        seen: set[str] = set()
        for index, allocation in enumerate(allocations):
            if allocation.deployment not in self._table.deployments:
                violations.append(
                    FieldViolation(
                        f"allocations[{index}].deployment",
                        f"unknown deployment {allocation.deployment!r}",
                    )
                )
            elif allocation.deployment in seen:
                violations.append(
                    FieldViolation(
                        f"allocations[{index}].deployment", "listed more than once"
                    )
                )
            seen.add(allocation.deployment)
            if not 0 <= allocation.percent <= 100:
                violations.append(
                    FieldViolation(
                        f"allocations[{index}].percent", "must be between 0 and 100"
                    )
                )
        total = sum(allocation.percent for allocation in allocations)
        if total != 100:
            violations.append(
                FieldViolation("allocations", f"percentages add up to {total}, not 100")
            )
        if violations:
            raise InvalidArgumentError(violations)
        given = {a.deployment: a.percent for a in allocations}
        split = {name: given.get(name, 0) for name in sorted(self._table.deployments)}
        await self._control.set_traffic_split(split)
        _log.info("traffic_split_changed", split=split)
        return [TrafficAllocation(name, percent) for name, percent in split.items()]

    async def deployment_statuses(self) -> list[DeploymentStatus]:
        """Every deployment of the table, by name, with its share and metrics."""
        split = await self._split()
        statuses: list[DeploymentStatus] = []
        for name in sorted(self._table.deployments):
            metrics = await self._metrics.deployment_metrics(name)
            statuses.append(
                DeploymentStatus(
                    name=name,
                    version=self._table.deployments[name].version,
                    traffic_percent=split.get(name, 0),
                    requests=metrics.requests,
                    errors=metrics.errors,
                    error_rate=(
                        metrics.errors / metrics.requests if metrics.requests else 0.0
                    ),
                    p50_latency_ms=percentile(metrics.recent_latencies_ms, 0.50),
                    p95_latency_ms=percentile(metrics.recent_latencies_ms, 0.95),
                )
            )
        return statuses

    async def set_degradation_level(
        self, level: DegradationLevel, reason: str
    ) -> DegradationChange:
        """Put ``level`` in force for every replica sharing the control store."""
        previous = await self._control.swap_degradation_level(level)
        change = DegradationChange(
            level=level,
            previous_level=DegradationLevel.FULL_SERVICE
            if previous is None
            else previous,
        )
        _log.info(
            "degradation_level_changed",
            level=level.name,
            previous_level=change.previous_level.name,
            reason=reason,
        )
        return change

    async def routing_stats(self) -> RoutingStats:
        """Decisions by tier (table order) and complexity, with worst-case costs."""
        counts = await self._metrics.routing_counts()
        return RoutingStats(
            by_tier=tuple(
                (name, counts.by_tier.get(name, 0)) for name in self._table.tiers
            ),
            by_complexity=tuple(
                (complexity, counts.by_complexity.get(complexity, 0))
                for complexity in Complexity
            ),
            routed_cost_micros=counts.routed_cost_micros,
            premium_cost_micros=counts.premium_cost_micros,
            degradation_level=await self._degradation_level(),
        )

    async def routing_table_healthy(self) -> bool:
        """Whether the shared split, if any, is one this table can route with."""
        stored = await self._control.traffic_split()
        return stored is None or self._is_valid_split(stored)

    async def _degradation_level(self) -> DegradationLevel:
        level = await self._control.degradation_level()
        return DegradationLevel.FULL_SERVICE if level is None else level

    async def _split(self) -> dict[str, int]:
        # A split stored by a replica running another table falls back to this
        # table's own split; the health check reports the mismatch.
        stored = await self._control.traffic_split()
        if stored is not None and self._is_valid_split(stored):
            return stored
        return self._table.initial_split()

    def _is_valid_split(self, split: Mapping[str, int]) -> bool:
        return (
            set(split) <= set(self._table.deployments)
            and all(0 <= percent <= 100 for percent in split.values())
            and sum(split.values()) == 100
        )
