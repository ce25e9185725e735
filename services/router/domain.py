"""Routing decisions for the router service.

Priority (or, for model ``auto``, the prompt's complexity) picks the model, a sticky
cohort hash picks the deployment, the request type sets the token budget, and the
degradation level bends all of them. Outcomes feed per-deployment windows that a
canary's guard compares with its baseline's, rolling a regressed canary back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import structlog

from services.core.clock import Clock
from services.core.errors import (
    BackendUnavailableError,
    FieldViolation,
    InvalidArgumentError,
)
from services.core.pricing import list_price_micros
from services.router.complexity import (
    CLASSES,
    ComplexityModel,
    ConversationFeatures,
    FloatArray,
    choose_complexity,
    conversation_floor,
    measure,
)
from services.router.enums import (
    Complexity,
    DegradationLevel,
    Lane,
    Priority,
    QualitySignal,
    RequestType,
    ShadowVerdict,
)
from services.router.ports import (
    ComplexityEncoder,
    ControlState,
    ControlStore,
    MetricsStore,
    Outcome,
    Rollback,
    TenantCounts,
    TenantRoute,
)
from services.router.table import CanaryGuard, RoutingTable, Tier

COHORT_BUCKETS = 10_000
"""Users are hashed into this many buckets; one percent of traffic is 100 buckets."""

AUTO_MODEL = "auto"
"""The requested model that asks for complexity routing."""

# Lanes that never call the upstream model, so a request costs nothing there.
_FREE_LANES = frozenset({Lane.CACHE_ONLY, Lane.STATIC})

_log = structlog.get_logger("tollgate.router")


@dataclass(frozen=True, slots=True)
class ConversationShape:
    """What the router weighs of a conversation beside its last user text."""

    messages: int = 1
    earlier_user_turns: int = 0
    tools: int = 0
    json_schema: bool = False
    images: int = 0
    tool_exchanges: int = 0
    reasoning: bool = False


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request to route."""

    tenant_id: str
    user_id: str
    priority: Priority
    request_type: RequestType
    requested_model: str
    input: str
    """The user's text, classified when ``requested_model`` is ``auto``."""
    input_tokens: int
    """Exact tokens of the input, before the request type's cap."""
    max_output_tokens: int
    """The caller's limit; 0 uses the request type's budget."""
    conversation: ConversationShape = ConversationShape()
    request_id: str = ""
    """The gateway's request id, under which quality signals arrive later."""
    previous_input: str = ""
    """The user message before ``input`` ('' when none): the classifier's context."""
    input_text_tokens: int | None = None
    """Exact tokens of ``input`` alone when the caller counted them; None: the
    classifier counts (and the router loads the o200k_base vocabulary)."""


@dataclass(frozen=True, slots=True)
class RouteLease:
    """What a caller needs to reuse a decision for requests that route alike.

    A decision no field of the request changes but the priority, request type and
    requested model (a named model or none, at full service, one deployment taking
    all the traffic) is the same for every such request but for its output limit,
    truncation and worst case, which the caller recomputes from these.
    """

    duration_seconds: float
    max_output_tokens_cap: int
    """The request type's and deployment's output limit, before the request's."""
    tier: Tier
    premium_tier: Tier


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
    truncated_input_tokens: int
    """Input tokens over the cap, which the gateway cuts."""
    degradation_level: DegradationLevel
    fallback_models: tuple[str, ...]
    fallback_text: str
    worst_case_cost_micros: int
    lease: RouteLease | None = None
    """Set when the caller may reuse this decision (see :class:`RouteLease`)."""
    classified_by: Literal["", "student", "encoder"] = ""
    """For ``auto``: which classifier answered (see :class:`Classification`)."""


@dataclass(frozen=True, slots=True)
class TrafficAllocation:
    """One deployment's share of traffic, in percent."""

    deployment: str
    percent: int


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A deployment's recent outcomes, summarised."""

    requests: int
    errors: int
    error_rate: float
    p50_latency_ms: float
    p95_latency_ms: float


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One deployment's configuration, share, metrics and rollback."""

    name: str
    model: str
    """The model it pins, or empty when it keeps the routed model."""
    version: str
    traffic_percent: int
    requests: int
    errors: int
    window: WindowStats
    baseline: str
    """The deployment its guard compares it with; empty when it has no guard."""
    rollback: Rollback | None


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What recording an outcome changed."""

    rollback: Rollback | None
    """The rollback this outcome caused, if any."""


@dataclass(frozen=True, slots=True)
class DegradationChange:
    """The level now in force and the one before."""

    level: DegradationLevel
    previous_level: DegradationLevel
    applied: bool
    expires_at: float | None = None
    """For a timed or held level: wall time when it lapses."""


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """Distribution of routing decisions and their worst-case costs."""

    by_tier: tuple[tuple[str, int], ...]
    by_complexity: tuple[tuple[Complexity, int], ...]
    routed_cost_micros: int
    premium_cost_micros: int
    degradation_level: DegradationLevel
    tenants: tuple[tuple[str, TenantCounts], ...] = ()
    """Per tenant (by id): its ``auto`` decisions by level, downgrades, signals."""
    degradation_level_until: float | None = None
    """Wall time when the level in force lapses (a timed or held level ends and
    the level changes); None when it stands until changed."""


@dataclass(frozen=True, slots=True)
class Classification:
    """The classifier's answer for one request."""

    complexity: Complexity
    probabilities: tuple[float, ...]
    """P(trivial), P(simple), P(moderate), P(complex)."""
    classifier: Literal["student", "encoder"]
    """Which answered: the student alone (sure of itself, or the encoder could
    not run), or the encoder."""
    logits: FloatArray | None = None
    """The encoder's logits when it ran (a shadow of the same encoder reuses them)."""


class Classifier:
    """A complexity model, the encoder it names, and the cost/quality setting."""

    def __init__(
        self,
        model: ComplexityModel,
        encoder: ComplexityEncoder | None,
        quality_bias: float | None = None,
        student_confidence: float | None = None,
    ) -> None:
        """``student_confidence``: in place of the model's; 1.0 always runs it."""
        self.model = (
            model
            if student_confidence is None
            else replace(
                model, student=replace(model.student, confidence=student_confidence)
            )
        )
        self.encoder = encoder
        self.quality_bias = (
            model.default_quality_bias if quality_bias is None else quality_bias
        )

    async def classify(
        self,
        request: RouteRequest,
        tier_of: Mapping[Complexity, str],
        encoder_logits: FloatArray | None = None,
    ) -> Classification:
        """The level to route ``request`` as (before the conversation floor).

        The student answers first; the encoder runs only when the student is not
        sure (:meth:`StudentHead.settles`) and an encoder is configured. An
        encoder that fails leaves the student's answer, so ``auto`` keeps working
        without the model. ``encoder_logits``: this request's logits from the
        same encoder file, when another classifier already ran it.
        """
        measurements = measure(
            request.input,
            ConversationFeatures.of(request.conversation),
            request.input_text_tokens,
        )
        student = self.model.student.probabilities(request.input, measurements)
        level = choose_complexity(list(student), self.quality_bias, tier_of)
        if self.encoder is not None and not self.model.student.settles(
            list(student), level, tier_of, self.quality_bias
        ):
            logits = encoder_logits
            if logits is None:
                try:
                    logits = await self.encoder.logits(
                        request.input, request.previous_input, measurements
                    )
                except BackendUnavailableError as error:
                    _log.warning("complexity_encoder_failed", error=str(error))
            if logits is not None:
                encoded = self.model.encoder.probabilities(logits)
                return Classification(
                    complexity=choose_complexity(
                        list(encoded), self.quality_bias, tier_of
                    ),
                    probabilities=_rounded(encoded),
                    classifier="encoder",
                    logits=logits,
                )
        return Classification(
            complexity=level,
            probabilities=_rounded(student),
            classifier="student",
        )


def _rounded(probabilities: FloatArray) -> tuple[float, ...]:
    return tuple(round(float(p), 4) for p in probabilities)


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
    return list_price_micros(
        input_tokens,
        output_tokens,
        tier.input_micros_per_million,
        tier.output_micros_per_million,
    )


def _sole_deployment(split: Mapping[str, int]) -> str | None:
    """The deployment that takes all the traffic, if one does."""
    for name, percent in split.items():
        if percent == 100:
            return name
    return None


def cheapest_capable_tier(table: RoutingTable, complexity: Complexity) -> str:
    """The name of the cheapest tier whose ``max_complexity`` covers ``complexity``.

    The fallback order runs from the most capable model to the cheapest, so the
    last capable model in it is the cheapest capable one.
    """
    ranks = list(Complexity)
    needed = ranks.index(complexity)
    capable = [
        model
        for model in table.fallback_order
        if ranks.index(table.tiers[table.tier_of(model)].max_complexity) >= needed
    ]
    return table.tier_of(capable[-1])


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (0.0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(outcomes: Sequence[Outcome]) -> WindowStats:
    """Error rate and latency percentiles of ``outcomes``."""
    errors = sum(outcome.error for outcome in outcomes)
    latencies = [outcome.latency_ms for outcome in outcomes]
    return WindowStats(
        requests=len(outcomes),
        errors=errors,
        error_rate=errors / len(outcomes) if outcomes else 0.0,
        p50_latency_ms=percentile(latencies, 0.50),
        p95_latency_ms=percentile(latencies, 0.95),
    )


def guard_breach(
    guard: CanaryGuard, canary: WindowStats, baseline: WindowStats
) -> str | None:
    """Why the canary breaks its guard, or None while it holds (or cannot judge).

    Below ``min_requests`` outcomes on either side the difference is noise, so the
    guard does not judge at all.
    """
    if min(canary.requests, baseline.requests) < guard.min_requests:
        return None
    allowed_error_rate = baseline.error_rate + guard.max_error_rate_increase
    if canary.error_rate > allowed_error_rate:
        return (
            f"error rate {canary.error_rate:.1%} over {canary.requests} calls "
            f"exceeds baseline {baseline.error_rate:.1%} + "
            f"{guard.max_error_rate_increase:.1%}"
        )
    allowed_p95 = baseline.p95_latency_ms * guard.max_p95_latency_ratio
    if canary.p95_latency_ms > allowed_p95:
        return (
            f"p95 latency {canary.p95_latency_ms:.0f} ms over {canary.requests} calls "
            f"exceeds {guard.max_p95_latency_ratio:g} x baseline "
            f"{baseline.p95_latency_ms:.0f} ms"
        )
    return None


def _is_valid_split(table: RoutingTable, split: Mapping[str, int]) -> bool:
    return (
        set(split) <= set(table.deployments)
        and all(0 <= percent <= 100 for percent in split.values())
        and sum(split.values()) == 100
    )


def effective_split(table: RoutingTable, state: ControlState) -> dict[str, int]:
    """The split in force: the stored one when this table can route with it.

    A split stored by a replica running another table falls back to this table's
    own split; the health check reports the mismatch.
    """
    if state.split is not None and _is_valid_split(table, state.split):
        return {name: state.split.get(name, 0) for name in table.deployments}
    return table.initial_split()


class Router:
    """Routes requests with a (replaceable) routing table and shared state."""

    def __init__(
        self,
        table: RoutingTable,
        control: ControlStore,
        metrics: MetricsStore,
        classifier: ComplexityModel | Classifier,
        clock: Clock,
        *,
        shadow: Classifier | None = None,
        route_lease_seconds: float = 0.0,
    ) -> None:
        """Route with ``table``; ``shadow`` runs beside ``classifier``, logged only.

        A bare :class:`ComplexityModel` classifies with its student alone and
        its default ``quality_bias`` (no encoder). A decision that only the
        request's model, priority and request type decide carries a lease of
        ``route_lease_seconds`` (0: none).
        """
        self._route_lease_seconds = route_lease_seconds
        self._table = table
        self._control = control
        self._metrics = metrics
        self._classifier = (
            classifier
            if isinstance(classifier, Classifier)
            else Classifier(classifier, encoder=None)
        )
        self._shadow = shadow
        self._clock = clock
        # The last state read, served while the control store is unreachable.
        self._last_state = ControlState(level=None, split=None)

    @property
    def table(self) -> RoutingTable:
        """The routing table in force."""
        return self._table

    def replace_table(self, table: RoutingTable) -> None:
        """Route with ``table`` from now on (a validated reload)."""
        self._table = table

    async def route(self, request: RouteRequest) -> RouteDecision:
        """Decide the model, deployment, lane and budget of ``request``.

        Raises:
            InvalidArgumentError: ``requested_model`` names no model of the table.
        """
        table = self._table
        budget = table.request_types[request.request_type]
        priority_route = table.priorities[request.priority]
        lane = priority_route.lane
        complexity = Complexity.UNSPECIFIED
        models = {tier.model for tier in table.tiers.values()}
        auto_route: TenantRoute | None = None
        classified_by: Literal["", "student", "encoder"] = ""
        if request.requested_model == AUTO_MODEL:
            complexity, auto_route, classified_by = await self._classify(table, request)
            tier_name = auto_route.tier
            reason = (
                f"auto: {complexity.value} prompt → cheapest capable tier "
                f"{tier_name} {table.tiers[tier_name].model} ({classified_by})"
            )
        elif not request.requested_model:
            tier_name = priority_route.tier or budget.tier
            source = (
                f"priority {request.priority.name}"
                if priority_route.tier
                else f"request type {request.request_type.name}"
            )
            reason = f"{source} → {tier_name} tier {table.tiers[tier_name].model}"
        elif request.requested_model in models:
            tier_name = table.tier_of(request.requested_model)
            reason = f"requested model {request.requested_model}"
        else:
            raise InvalidArgumentError(
                [FieldViolation("requested_model", "unknown model; use auto")]
            )
        model = table.tiers[tier_name].model
        if lane is Lane.BATCH:
            reason += " via the batch lane"

        state = await self._state()
        split = effective_split(table, state)
        deployment_name = pick_deployment(
            split, cohort_bucket(request.tenant_id, request.user_id)
        )
        deployment = table.deployments[deployment_name]
        if deployment.model and request.requested_model in ("", AUTO_MODEL):
            model = deployment.model
            reason += f"; deployment {deployment_name} pins {model}"
        max_output_tokens_cap = min(
            budget.max_output_tokens,
            deployment.max_output_tokens or budget.max_output_tokens,
        )
        max_output_tokens = min(
            max_output_tokens_cap, request.max_output_tokens or max_output_tokens_cap
        )

        level = self._level_in_force(state)
        fallback_text = ""
        if level is DegradationLevel.REDUCED_QUALITY:
            model = next(iter(table.cheaper_than(model)), model)
            max_output_tokens = -(-max_output_tokens // 2)
            reason += (
                f"; degraded to REDUCED_QUALITY: {model}, "
                f"max output halved to {max_output_tokens}"
            )
        elif level is DegradationLevel.CACHED_ONLY:
            lane = Lane.CACHE_ONLY
            fallback_text = table.busy_message
            reason += "; degraded to CACHED_ONLY: cache only, busy message on a miss"
        elif level is DegradationLevel.STATIC_FALLBACK:
            lane = Lane.STATIC
            fallback_text = budget.static_fallback
            reason += "; degraded to STATIC_FALLBACK: static answer"
        elif level is DegradationLevel.MAINTENANCE:
            lane = Lane.QUEUE
            reason += "; degraded to MAINTENANCE: queued for later"
        tier_name = table.tier_of(model)

        billed_input = min(request.input_tokens, budget.max_input_tokens)
        cost = premium_cost = 0
        if lane not in _FREE_LANES:
            cost = worst_case_cost_micros(
                table.tiers[tier_name], billed_input, max_output_tokens
            )
            premium_cost = worst_case_cost_micros(
                table.tiers[table.premium_tier_name()], billed_input, max_output_tokens
            )
        await self._record_route(tier_name, complexity, cost, premium_cost)
        if auto_route is not None:
            await self._record_tenant_route(auto_route)
        lease = None
        if (
            self._route_lease_seconds > 0
            and auto_route is None
            and level is DegradationLevel.FULL_SERVICE
            and lane not in _FREE_LANES
            and deployment_name == _sole_deployment(split)
        ):
            lease = RouteLease(
                duration_seconds=self._route_lease_seconds,
                max_output_tokens_cap=max_output_tokens_cap,
                tier=table.tiers[tier_name],
                premium_tier=table.tiers[table.premium_tier_name()],
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
            truncated_input_tokens=request.input_tokens - billed_input,
            degradation_level=level,
            fallback_models=tuple(table.cheaper_than(model)),
            fallback_text=fallback_text,
            worst_case_cost_micros=cost,
            lease=lease,
            classified_by=classified_by,
        )

    async def _classify(
        self, table: RoutingTable, request: RouteRequest
    ) -> tuple[Complexity, TenantRoute, Literal["student", "encoder"]]:
        tier_of = {level: cheapest_capable_tier(table, level) for level in CLASSES}
        floor = conversation_floor(request.conversation)
        served = await self._classifier.classify(request, tier_of)
        complexity = max(served.complexity, floor, key=CLASSES.index)
        tier = tier_of[complexity]
        verdict: ShadowVerdict | None = None
        if self._shadow is not None:
            # The same encoder file gives the same logits: run it once.
            same_encoder = (
                self._shadow.model.encoder.sha256
                == self._classifier.model.encoder.sha256
            )
            shadow = await self._shadow.classify(
                request, tier_of, served.logits if same_encoder else None
            )
            shadow_complexity = max(shadow.complexity, floor, key=CLASSES.index)
            shadow_tier = tier_of[shadow_complexity]
            verdict = _verdict(table, served=tier, shadow=shadow_tier)
            _log.info(
                "route_shadow",
                tenant=request.tenant_id,
                request_id=request.request_id,
                served_model=self._classifier.model.version,
                served_complexity=complexity.value,
                served_tier=tier,
                served_probabilities=served.probabilities,
                served_classifier=served.classifier,
                shadow_model=self._shadow.model.version,
                shadow_complexity=shadow_complexity.value,
                shadow_tier=shadow_tier,
                shadow_probabilities=shadow.probabilities,
                shadow_classifier=shadow.classifier,
                verdict=verdict.value,
            )
        route = TenantRoute(
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            complexity=complexity,
            tier=tier,
            downgraded=tier != table.premium_tier_name(),
            shadow=verdict,
        )
        return complexity, route, served.classifier

    async def record_quality(
        self, request_id: str, signal: QualitySignal
    ) -> TenantRoute | None:
        """Count a quality signal against the ``auto`` decision of ``request_id``.

        Returns the decision, or None when the router does not know it (not routed
        with ``auto``, forgotten, or this signal already counted).

        Raises:
            BackendUnavailableError: the metrics store is unreachable.
        """
        route = await self._metrics.record_quality(request_id, signal)
        if route is not None:
            _log.info(
                "quality_signal_recorded",
                tenant=route.tenant_id,
                request_id=request_id,
                signal=signal.value,
                complexity=route.complexity.value,
                tier=route.tier,
                downgraded=route.downgraded,
            )
        return route

    async def record_outcome(self, deployment: str, outcome: Outcome) -> OutcomeResult:
        """Count one upstream call served by ``deployment``; guard its canary.

        When ``deployment`` is a canary still serving traffic and its recent
        outcomes break its guard against the baseline's, it is rolled back to 0%
        (its share goes to the baseline) for every replica.

        Raises:
            InvalidArgumentError: ``deployment`` is not in the table.
        """
        table = self._table
        config = table.deployments.get(deployment)
        if config is None:
            raise InvalidArgumentError(
                [FieldViolation("deployment", f"unknown deployment {deployment!r}")]
            )
        await self._metrics.record_outcome(deployment, outcome)
        guard = config.guard
        if guard is None:
            return OutcomeResult(rollback=None)
        state = await self._control.state()
        split = effective_split(table, state)
        if deployment in state.rollbacks or split.get(deployment, 0) == 0:
            return OutcomeResult(rollback=None)
        canary = await self._metrics.deployment_metrics(deployment)
        baseline = await self._metrics.deployment_metrics(guard.baseline)
        breach = guard_breach(
            guard, summarise(canary.recent), summarise(baseline.recent)
        )
        if breach is None:
            return OutcomeResult(rollback=None)
        rollback = Rollback(
            deployment=deployment,
            baseline=guard.baseline,
            reason=breach,
            at=self._clock.now(),
        )
        if not await self._control.roll_back(rollback, split):
            return OutcomeResult(rollback=None)
        _log.warning(
            "canary_rolled_back",
            deployment=deployment,
            baseline=guard.baseline,
            reason=breach,
            traffic_percent=split[deployment],
        )
        return OutcomeResult(rollback=rollback)

    async def set_traffic_split(
        self, allocations: Sequence[TrafficAllocation]
    ) -> list[TrafficAllocation]:
        """Replace the split; deployments left out get 0%. Returns the whole split.

        A rolled-back canary given a share again starts over: its rollback is
        cleared and its outcome window emptied, so old failures do not count.

        Raises:
            InvalidArgumentError: an unknown or repeated deployment, a share above
                100, or shares that do not add up to 100.
        """
        table = self._table
        violations: list[FieldViolation] = []
        seen: set[str] = set()
        for index, allocation in enumerate(allocations):
            if allocation.deployment not in table.deployments:
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
        split = {name: given.get(name, 0) for name in sorted(table.deployments)}
        state = await self._control.state()
        revived = frozenset(name for name in state.rollbacks if split.get(name, 0))
        for name in revived:
            await self._metrics.reset_deployment(name)
        await self._control.set_traffic_split(split, clear_rollbacks=revived)
        _log.info("traffic_split_changed", split=split, revived=sorted(revived))
        return [TrafficAllocation(name, percent) for name, percent in split.items()]

    async def deployment_statuses(self) -> list[DeploymentStatus]:
        """Every deployment of the table, by name, with its share and metrics."""
        table = self._table
        state = await self._control.state()
        split = effective_split(table, state)
        statuses: list[DeploymentStatus] = []
        for name in sorted(table.deployments):
            config = table.deployments[name]
            metrics = await self._metrics.deployment_metrics(name)
            statuses.append(
                DeploymentStatus(
                    name=name,
                    model=config.model or "",
                    version=config.version,
                    traffic_percent=split.get(name, 0),
                    requests=metrics.requests,
                    errors=metrics.errors,
                    window=summarise(metrics.recent),
                    baseline=config.guard.baseline if config.guard else "",
                    rollback=state.rollbacks.get(name),
                )
            )
        return statuses

    async def hold_degradation_level(
        self, level: DegradationLevel, reason: str, hold_seconds: float
    ) -> DegradationChange:
        """Hold ``level`` on top of the operator's for ``hold_seconds``.

        The gateway's automatic raise: it lapses by itself once the gateway stops
        holding it (the upstream recovered), and never lowers an operator's level.
        """
        previous = self._level_in_force(await self._state())
        now = self._clock.now()
        await self._control.hold_degradation_level(
            level, now=now, until=now + hold_seconds
        )
        state = await self._state()
        current = self._level_in_force(state)
        if current > previous:
            _log.info(
                "degradation_level_held",
                level=current.name,
                previous_level=previous.name,
                reason=reason,
                hold_seconds=hold_seconds,
            )
        # Applied: this hold is the one in force now (not kept out by a higher one,
        # and not below the operator's level).
        return DegradationChange(
            level=current,
            previous_level=previous,
            applied=state.held_level is level and current is level,
            expires_at=now + hold_seconds,
        )

    async def set_degradation_level(
        self,
        level: DegradationLevel,
        reason: str,
        *,
        raise_only: bool = False,
        duration_seconds: float | None = None,
    ) -> DegradationChange:
        """Put ``level`` in force for every replica sharing the control store.

        With ``raise_only`` (the gateway's automatic escalation) a level at least
        as high already in force is kept, so an automatic raise never lowers what
        an operator set. With ``duration_seconds`` the level is in force that long
        instead of the standing level, which then applies again by itself.
        """
        if duration_seconds is not None:
            return await self._set_timed_level(level, reason, duration_seconds)
        before = await self._state()
        change = await self._control.change_degradation_level(
            level, raise_only=raise_only
        )
        previous = change.previous or DegradationLevel.FULL_SERVICE
        if not raise_only and self._timed_in_force(before):
            # What was in force is the timed level, which a standing change drops.
            previous = self._operator_level(before)
        result = DegradationChange(
            level=level if change.applied else previous,
            previous_level=previous,
            applied=change.applied,
        )
        if change.applied:
            _log.info(
                "degradation_level_changed",
                level=level.name,
                previous_level=previous.name,
                reason=reason,
                raise_only=raise_only,
            )
        return result

    async def routing_stats(self) -> RoutingStats:
        """Decisions by tier (table order) and complexity, with worst-case costs."""
        counts = await self._metrics.routing_counts()
        tenants = await self._metrics.tenant_counts()
        state = await self._state()
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
            degradation_level=self._level_in_force(state),
            tenants=tuple(sorted(tenants.items())),
            degradation_level_until=self._level_until(state),
        )

    async def record_reused_routes(
        self,
        tier: str,
        decisions: int,
        routed_cost_micros: int,
        premium_cost_micros: int,
    ) -> None:
        """Count ``decisions`` a caller reused under leases, as :meth:`route` would."""
        await self._record_route(
            tier,
            Complexity.UNSPECIFIED,
            routed_cost_micros,
            premium_cost_micros,
            decisions=decisions,
        )

    async def routing_table_healthy(self) -> bool:
        """Whether the shared split, if any, is one this table can route with."""
        stored = (await self._control.state()).split
        return stored is None or _is_valid_split(self._table, stored)

    async def _set_timed_level(
        self, level: DegradationLevel, reason: str, duration_seconds: float
    ) -> DegradationChange:
        previous = self._operator_level(await self._state())
        now = self._clock.now()
        until = now + duration_seconds
        await self._control.set_timed_degradation_level(level, now=now, until=until)
        _log.info(
            "degradation_level_changed",
            level=level.name,
            previous_level=previous.name,
            reason=reason,
            duration_seconds=duration_seconds,
        )
        return DegradationChange(
            level=level, previous_level=previous, applied=True, expires_at=until
        )

    def _timed_in_force(self, state: ControlState, at: float | None = None) -> bool:
        moment = self._clock.now() if at is None else at
        return state.timed_level is not None and state.timed_until > moment

    def _operator_level(
        self, state: ControlState, at: float | None = None
    ) -> DegradationLevel:
        """The timed level while it lasts, else the standing level."""
        if state.timed_level is not None and self._timed_in_force(state, at):
            return state.timed_level
        return state.level or DegradationLevel.FULL_SERVICE

    def _level_in_force(
        self, state: ControlState, at: float | None = None
    ) -> DegradationLevel:
        """The operator's level, or a higher level held and not yet lapsed."""
        moment = self._clock.now() if at is None else at
        level = self._operator_level(state, moment)
        if state.held_level is not None and state.held_until > moment:
            return max(level, state.held_level)
        return level

    def _level_until(self, state: ControlState) -> float | None:
        """When the level in force changes by itself (a lapse), if it does."""
        now = self._clock.now()
        current = self._level_in_force(state, now)
        lapses = sorted(
            until for until in (state.timed_until, state.held_until) if until > now
        )
        for until in lapses:
            if self._level_in_force(state, until) is not current:
                return until
        return None

    async def _state(self) -> ControlState:
        # Routing goes on with the last known state while the shared store is
        # down: a stale level beats refusing every request.
        try:
            self._last_state = await self._control.state()
        except BackendUnavailableError as error:
            _log.warning("control_store_unavailable_using_last_state", error=str(error))
        return self._last_state

    async def _record_tenant_route(self, route: TenantRoute) -> None:
        try:
            await self._metrics.record_tenant_route(route)
        except BackendUnavailableError as error:
            _log.warning("tenant_route_not_recorded", error=str(error))

    async def _record_route(
        self,
        tier: str,
        complexity: Complexity,
        cost: int,
        premium_cost: int,
        *,
        decisions: int = 1,
    ) -> None:
        # Statistics are not worth failing a request for.
        try:
            await self._metrics.record_route(
                tier, complexity, cost, premium_cost, decisions=decisions
            )
        except BackendUnavailableError as error:
            _log.warning("routing_stats_not_recorded", error=str(error))


def _verdict(table: RoutingTable, *, served: str, shadow: str) -> ShadowVerdict:
    """Whether the shadow's tier is the served one, more capable, or cheaper."""
    order = table.fallback_order  # most capable first
    served_rank = order.index(table.tiers[served].model)
    shadow_rank = order.index(table.tiers[shadow].model)
    if shadow_rank == served_rank:
        return ShadowVerdict.SAME
    return ShadowVerdict.HIGHER if shadow_rank < served_rank else ShadowVerdict.LOWER
