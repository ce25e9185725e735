"""What the router needs from the outside world.

Both stores hold state that every router replica must share: in memory for one
process, Redis when there are several. Methods are async so that a networked
adapter fits without changing the domain; adapters raise
:class:`~services.core.errors.BackendUnavailableError` when their backend is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from services.router.enums import (
    Complexity,
    DegradationLevel,
    QualitySignal,
    ShadowVerdict,
)

if TYPE_CHECKING:
    from services.router.complexity import FloatArray


@dataclass(frozen=True, slots=True)
class Rollback:
    """A canary rolled back to 0% by its guard."""

    deployment: str
    baseline: str
    """The deployment that took over the canary's share."""
    reason: str
    at: float
    """Wall time of the rollback, seconds since the Unix epoch."""


@dataclass(frozen=True, slots=True)
class ControlState:
    """Operator-set and guard-set state, read in one step."""

    level: DegradationLevel | None
    """The level in force, or None when nobody set one."""
    split: Mapping[str, int] | None
    """Deployment name to traffic percent, or None when nobody set one."""
    rollbacks: Mapping[str, Rollback] = field(default_factory=dict)
    """Rolled-back canaries by name."""
    held_level: DegradationLevel | None = None
    """A level held on top of ``level`` (the gateway's automatic raise), if any."""
    held_until: float = 0.0
    """Wall time, seconds since the Unix epoch, when ``held_level`` lapses."""
    timed_level: DegradationLevel | None = None
    """An operator's level for a while, in force instead of ``level``, if any."""
    timed_until: float = 0.0
    """Wall time, seconds since the Unix epoch, when ``timed_level`` lapses."""


@dataclass(frozen=True, slots=True)
class LevelChange:
    """The outcome of a degradation level change."""

    previous: DegradationLevel | None
    """The level before (None: never set)."""
    applied: bool
    """False when a raise-only change met a level at least as high."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One upstream call: its latency and whether it failed."""

    latency_ms: float
    error: bool


@dataclass(frozen=True, slots=True)
class DeploymentMetrics:
    """Outcomes recorded for one deployment."""

    requests: int
    """Outcomes since the start (or the last reset)."""
    errors: int
    recent: tuple[Outcome, ...]
    """The latest outcomes, newest first, at most the store's window."""


@dataclass(frozen=True, slots=True)
class RoutingCounts:
    """Routing decisions counted so far."""

    by_tier: Mapping[str, int]
    by_complexity: Mapping[Complexity, int]
    routed_cost_micros: int
    premium_cost_micros: int


@dataclass(frozen=True, slots=True)
class TenantRoute:
    """One ``auto`` decision, kept so that a later quality signal can find it."""

    request_id: str
    tenant_id: str
    complexity: Complexity
    tier: str
    downgraded: bool
    """Served by a tier cheaper than the most capable one."""
    shadow: ShadowVerdict | None = None
    """The shadow classifier's verdict, when shadow mode is on."""


@dataclass(frozen=True, slots=True)
class TenantCounts:
    """One tenant's ``auto`` decisions and the quality signals they drew."""

    by_complexity: Mapping[Complexity, int]
    downgraded: int
    """Decisions served by a tier cheaper than the most capable one."""
    signals: Mapping[QualitySignal, int]
    """Quality signals on any of the tenant's decisions."""
    downgraded_signals: Mapping[QualitySignal, int]
    """Quality signals on its downgraded decisions."""
    shadow: Mapping[ShadowVerdict, int]
    """Shadow verdicts, when shadow mode was on."""

    @property
    def requests(self) -> int:
        """Decisions counted."""
        return sum(self.by_complexity.values())


class ControlStore(Protocol):
    """The degradation level, the traffic split and the canary rollbacks."""

    async def state(self) -> ControlState:
        """Everything at once (one round trip for a networked store)."""
        ...

    async def change_degradation_level(
        self, level: DegradationLevel, *, raise_only: bool
    ) -> LevelChange:
        """Set the level in one step; with ``raise_only``, only if it is higher.

        A change that is not ``raise_only`` also drops the timed level, if any.
        """
        ...

    async def set_timed_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Put ``level`` in force instead of the standing level until ``until``.

        It replaces any timed level; the standing level is kept for afterwards.
        """
        ...

    async def hold_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Hold ``level`` until ``until``; a higher hold still in force is kept."""
        ...

    async def set_traffic_split(
        self, split: Mapping[str, int], *, clear_rollbacks: frozenset[str]
    ) -> None:
        """Replace the split and forget the rollbacks of ``clear_rollbacks``."""
        ...

    async def roll_back(
        self, rollback: Rollback, current_split: Mapping[str, int]
    ) -> bool:
        """Move the canary's share to its baseline and keep ``rollback``, atomically.

        ``current_split`` is the split to start from when none is stored. Returns
        False, changing nothing, when the canary is already rolled back (another
        replica got there first).
        """
        ...


class MetricsStore(Protocol):
    """Per-deployment outcomes and routing counts."""

    async def record_outcome(self, deployment: str, outcome: Outcome) -> None:
        """Count one upstream call served by ``deployment``."""
        ...

    async def deployment_metrics(self, deployment: str) -> DeploymentMetrics:
        """The outcomes of ``deployment`` (zeros when none were recorded)."""
        ...

    async def reset_deployment(self, deployment: str) -> None:
        """Forget the outcomes of ``deployment`` (a canary given a new chance)."""
        ...

    async def record_route(
        self,
        tier: str,
        complexity: Complexity,
        routed_cost_micros: int,
        premium_cost_micros: int,
        *,
        decisions: int = 1,
    ) -> None:
        """Count ``decisions`` routing decisions and their summed worst-case costs."""
        ...

    async def routing_counts(self) -> RoutingCounts:
        """The decisions counted so far."""
        ...

    async def record_tenant_route(self, route: TenantRoute) -> None:
        """Count one ``auto`` decision for its tenant; keep it for its signals.

        Decisions are kept for a bounded time (or number): a signal about one
        forgotten since is not counted.
        """
        ...

    async def record_quality(
        self, request_id: str, signal: QualitySignal
    ) -> TenantRoute | None:
        """Count ``signal`` against the decision of ``request_id``.

        Returns the decision, or None when it is unknown (never routed with
        ``auto``, or forgotten) or already carries this signal (counted once).
        """
        ...

    async def tenant_counts(self) -> Mapping[str, TenantCounts]:
        """Every tenant's counts, by tenant id."""
        ...


class ComplexityEncoder(Protocol):
    """The fine-tuned complexity encoder (services/router/adapters/encoder.py)."""

    async def logits(
        self, text: str, previous: str, measurements: FloatArray
    ) -> FloatArray:
        """One logit per boundary between levels for one request.

        Raises:
            BackendUnavailableError: the model cannot be loaded or run.
        """
        ...

    async def close(self) -> None:
        """Release the model's worker thread."""
        ...
