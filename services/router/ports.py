"""What the router needs from the outside world.

Both stores hold state that every router replica must share: in memory for one
process, Redis when there are several. Methods are async so that a networked
adapter fits without changing the domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from services.router.enums import Complexity, DegradationLevel


@dataclass(frozen=True, slots=True)
class DeploymentMetrics:
    """Outcomes recorded for one deployment."""

    requests: int
    errors: int
    recent_latencies_ms: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class RoutingCounts:
    """Routing decisions counted so far."""

    by_tier: Mapping[str, int]
    by_complexity: Mapping[Complexity, int]
    routed_cost_micros: int
    premium_cost_micros: int


class ControlStore(Protocol):
    """Operator-set state: the degradation level and the traffic split."""

    async def degradation_level(self) -> DegradationLevel | None:
        """The level in force, or None when nobody set one."""
        ...

    async def swap_degradation_level(
        self, level: DegradationLevel
    ) -> DegradationLevel | None:
        """Set the level in one step; return the one before (None: never set)."""
        ...

    async def traffic_split(self) -> dict[str, int] | None:
        """Deployment name to traffic percent, or None when nobody set one."""
        ...

    async def set_traffic_split(self, split: Mapping[str, int]) -> None:
        """Replace the split."""
        ...


class MetricsStore(Protocol):
    """Per-deployment outcomes and routing counts."""

    async def record_outcome(
        self, deployment: str, latency_ms: float, error: bool
    ) -> None:
        """Count one upstream call served by ``deployment``."""
        ...

    async def deployment_metrics(self, deployment: str) -> DeploymentMetrics:
        """The outcomes of ``deployment`` (zeros when none were recorded)."""
        ...

    async def record_route(
        self,
        tier: str,
        complexity: Complexity,
        routed_cost_micros: int,
        premium_cost_micros: int,
    ) -> None:
        """Count one routing decision and its worst-case costs."""
        ...

    async def routing_counts(self) -> RoutingCounts:
        """The decisions counted so far."""
        ...
