"""In-process stores: the embedded default and the fakes of the tests.

Each method runs without awaiting, so on the event loop it is atomic.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.router.enums import (
    Complexity,
    DegradationLevel,
    QualitySignal,
    ShadowVerdict,
)
from services.router.ports import (
    ControlState,
    DeploymentMetrics,
    LevelChange,
    Outcome,
    Rollback,
    RoutingCounts,
    TenantCounts,
    TenantRoute,
)

DEFAULT_OUTCOME_WINDOW = 1000
"""Error rates and latency percentiles cover this many of the latest outcomes."""

DEFAULT_REMEMBERED_ROUTES = 100_000
"""``auto`` decisions kept for quality signals; the oldest are forgotten first."""


class InMemoryControlStore:
    """Degradation level, traffic split and rollbacks of this process only."""

    def __init__(self) -> None:
        self._level: DegradationLevel | None = None
        self._split: dict[str, int] | None = None
        self._rollbacks: dict[str, Rollback] = {}
        self._held: tuple[DegradationLevel, float] | None = None
        self._timed: tuple[DegradationLevel, float] | None = None

    async def state(self) -> ControlState:
        """Everything at once."""
        held_level, held_until = self._held or (None, 0.0)
        timed_level, timed_until = self._timed or (None, 0.0)
        return ControlState(
            level=self._level,
            split=None if self._split is None else dict(self._split),
            rollbacks=dict(self._rollbacks),
            held_level=held_level,
            held_until=held_until,
            timed_level=timed_level,
            timed_until=timed_until,
        )

    async def set_timed_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Put ``level`` in force until ``until``, replacing any timed level."""
        self._timed = (level, until)

    async def hold_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Hold ``level`` until ``until``; a higher hold still in force is kept."""
        if self._held is None or self._held[1] <= now or level >= self._held[0]:
            self._held = (level, until)

    async def change_degradation_level(
        self, level: DegradationLevel, *, raise_only: bool
    ) -> LevelChange:
        """Set the level; with ``raise_only``, only when it is higher."""
        previous = self._level
        current = previous or DegradationLevel.FULL_SERVICE
        if raise_only and level <= current:
            return LevelChange(previous=previous, applied=False)
        self._level = level
        if not raise_only:
            self._timed = None
        return LevelChange(previous=previous, applied=True)

    async def set_traffic_split(
        self, split: Mapping[str, int], *, clear_rollbacks: frozenset[str]
    ) -> None:
        """Replace the split; forget the named rollbacks."""
        self._split = dict(split)
        for name in clear_rollbacks:
            self._rollbacks.pop(name, None)

    async def roll_back(
        self, rollback: Rollback, current_split: Mapping[str, int]
    ) -> bool:
        """Move the canary's share to its baseline unless already rolled back."""
        if rollback.deployment in self._rollbacks:
            return False
        split = dict(current_split if self._split is None else self._split)
        share = split.get(rollback.deployment, 0)
        split[rollback.deployment] = 0
        split[rollback.baseline] = split.get(rollback.baseline, 0) + share
        self._split = split
        self._rollbacks[rollback.deployment] = rollback
        return True


@dataclass
class _Outcomes:
    requests: int = 0
    errors: int = 0
    recent: deque[Outcome] = field(default_factory=deque)


@dataclass
class _Tenant:
    by_complexity: Counter[Complexity] = field(default_factory=Counter)
    downgraded: int = 0
    signals: Counter[QualitySignal] = field(default_factory=Counter)
    downgraded_signals: Counter[QualitySignal] = field(default_factory=Counter)
    shadow: Counter[ShadowVerdict] = field(default_factory=Counter)


class InMemoryMetricsStore:
    """Outcomes and routing counts of this process only, in bounded memory."""

    def __init__(
        self,
        outcome_window: int = DEFAULT_OUTCOME_WINDOW,
        remembered_routes: int = DEFAULT_REMEMBERED_ROUTES,
    ) -> None:
        self._outcome_window = outcome_window
        self._remembered_routes = remembered_routes
        self._routes: OrderedDict[str, tuple[TenantRoute, set[QualitySignal]]] = (
            OrderedDict()
        )
        self._tenants: dict[str, _Tenant] = {}
        self._outcomes: dict[str, _Outcomes] = {}
        self._by_tier: Counter[str] = Counter()
        self._by_complexity: Counter[Complexity] = Counter()
        self._routed_cost_micros = 0
        self._premium_cost_micros = 0

    async def record_outcome(self, deployment: str, outcome: Outcome) -> None:
        """Count one upstream call; keep it in the window."""
        outcomes = self._outcomes.setdefault(
            deployment,
            _Outcomes(recent=deque(maxlen=self._outcome_window)),
        )
        outcomes.requests += 1
        outcomes.errors += int(outcome.error)
        outcomes.recent.appendleft(outcome)

    async def deployment_metrics(self, deployment: str) -> DeploymentMetrics:
        """The outcomes of ``deployment``, newest first."""
        outcomes = self._outcomes.get(deployment)
        if outcomes is None:
            return DeploymentMetrics(requests=0, errors=0, recent=())
        return DeploymentMetrics(
            requests=outcomes.requests,
            errors=outcomes.errors,
            recent=tuple(outcomes.recent),
        )

    async def reset_deployment(self, deployment: str) -> None:
        """Forget the outcomes of ``deployment``."""
        self._outcomes.pop(deployment, None)

    async def record_route(
        self,
        tier: str,
        complexity: Complexity,
        routed_cost_micros: int,
        premium_cost_micros: int,
        *,
        decisions: int = 1,
    ) -> None:
        """Count ``decisions`` routing decisions."""
        self._by_tier[tier] += decisions
        self._by_complexity[complexity] += decisions
        self._routed_cost_micros += routed_cost_micros
        self._premium_cost_micros += premium_cost_micros

    async def routing_counts(self) -> RoutingCounts:
        """The decisions counted so far."""
        return RoutingCounts(
            by_tier=dict(self._by_tier),
            by_complexity=dict(self._by_complexity),
            routed_cost_micros=self._routed_cost_micros,
            premium_cost_micros=self._premium_cost_micros,
        )

    async def record_tenant_route(self, route: TenantRoute) -> None:
        """Count one ``auto`` decision; remember it, forgetting the oldest."""
        tenant = self._tenants.setdefault(route.tenant_id, _Tenant())
        tenant.by_complexity[route.complexity] += 1
        tenant.downgraded += route.downgraded
        if route.shadow is not None:
            tenant.shadow[route.shadow] += 1
        if route.request_id:
            self._routes[route.request_id] = (route, set())
            self._routes.move_to_end(route.request_id)
            while len(self._routes) > self._remembered_routes:
                self._routes.popitem(last=False)

    async def record_quality(
        self, request_id: str, signal: QualitySignal
    ) -> TenantRoute | None:
        """Count ``signal`` once against a remembered decision."""
        remembered = self._routes.get(request_id)
        if remembered is None or signal in remembered[1]:
            return None
        route, seen = remembered
        seen.add(signal)
        tenant = self._tenants.setdefault(route.tenant_id, _Tenant())
        tenant.signals[signal] += 1
        if route.downgraded:
            tenant.downgraded_signals[signal] += 1
        return route

    async def tenant_counts(self) -> Mapping[str, TenantCounts]:
        """Every tenant's counts."""
        return {
            name: TenantCounts(
                by_complexity=dict(t.by_complexity),
                downgraded=t.downgraded,
                signals=dict(t.signals),
                downgraded_signals=dict(t.downgraded_signals),
                shadow=dict(t.shadow),
            )
            for name, t in self._tenants.items()
        }
