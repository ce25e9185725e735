"""In-process stores: the embedded default and the fakes of the tests.

Each method runs without awaiting, so on the event loop it is atomic.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.router.enums import Complexity, DegradationLevel
from services.router.ports import DeploymentMetrics, RoutingCounts

# Latency percentiles are computed over this many of the latest outcomes.
DEFAULT_LATENCY_WINDOW = 1000


class InMemoryControlStore:
    """Degradation level and traffic split of this process only."""

    def __init__(self) -> None:
        self._level: DegradationLevel | None = None
        self._split: dict[str, int] | None = None

    async def degradation_level(self) -> DegradationLevel | None:
        """The level in force, or None when nobody set one."""
        return self._level

    async def swap_degradation_level(
        self, level: DegradationLevel
    ) -> DegradationLevel | None:
        """Set the level; return the one before."""
        previous, self._level = self._level, level
        return previous

    async def traffic_split(self) -> dict[str, int] | None:
        """The split, or None when nobody set one."""
        return None if self._split is None else dict(self._split)

    async def set_traffic_split(self, split: Mapping[str, int]) -> None:
        """Replace the split."""
        self._split = dict(split)


@dataclass
class _Outcomes:
    requests: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=deque)


class InMemoryMetricsStore:
    """Outcomes and routing counts of this process only."""

    def __init__(self, latency_window: int = DEFAULT_LATENCY_WINDOW) -> None:
        self._latency_window = latency_window
        self._outcomes: dict[str, _Outcomes] = {}
        self._by_tier: Counter[str] = Counter()
        self._by_complexity: Counter[Complexity] = Counter()
        self._routed_cost_micros = 0
        self._premium_cost_micros = 0

    async def record_outcome(
        self, deployment: str, latency_ms: float, error: bool
    ) -> None:
        """Count one upstream call; keep its latency in the window."""
        outcomes = self._outcomes.setdefault(
            deployment, _Outcomes(latencies_ms=deque(maxlen=self._latency_window))
        )
        outcomes.requests += 1
        outcomes.errors += int(error)
        outcomes.latencies_ms.append(latency_ms)

    async def deployment_metrics(self, deployment: str) -> DeploymentMetrics:
        """The outcomes of ``deployment``."""
        outcomes = self._outcomes.get(deployment, _Outcomes())
        return DeploymentMetrics(
            requests=outcomes.requests,
            errors=outcomes.errors,
            recent_latencies_ms=tuple(outcomes.latencies_ms),
        )

    async def record_route(
        self,
        tier: str,
        complexity: Complexity,
        routed_cost_micros: int,
        premium_cost_micros: int,
    ) -> None:
        """Count one routing decision."""
        self._by_tier[tier] += 1
        self._by_complexity[complexity] += 1
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
