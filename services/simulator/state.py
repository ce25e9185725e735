"""The simulator's mutable state: counters, the fault plan and shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultPlan


@dataclass
class Stats:
    """Counters served by ``GET /_sim/stats``.

    ``requests`` counts every authenticated ``/v1`` request, including those
    answered with an injected fault or a 400.
    """

    requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    streams: int = 0
    unauthorized: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def snapshot(self) -> dict[str, object]:
        """Return the counters as a JSON-ready mapping."""
        return {
            "requests": self.requests,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "faults": dict(sorted(self.faults.items())),
            "streams": self.streams,
            "unauthorized": self.unauthorized,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


class SimulatorState:
    """Everything the handlers share, stored on the aiohttp application."""

    def __init__(self, settings: SimulatorSettings) -> None:
        """Create fresh counters and a fault plan from ``settings``."""
        self.settings = settings
        self.stats = Stats()
        self.faults = FaultPlan(
            rate=settings.fault_rate,
            kind=settings.fault_kind,
            retry_after_seconds=settings.retry_after_seconds,
            seed=settings.seed,
        )
        self._closing = asyncio.Event()

    def reset(self) -> None:
        """Zero the counters, drop scheduled faults and re-seed the fault draw."""
        self.stats = Stats()
        self.faults.reset()

    def close(self) -> None:
        """Wake every hanging request so that shutdown does not wait for them."""
        self._closing.set()

    async def sleep_ms(self, milliseconds: float) -> None:
        """Sleep ``milliseconds``, returning early once the simulator is closing."""
        if milliseconds <= 0 or self._closing.is_set():
            return
        try:
            await asyncio.wait_for(self._closing.wait(), milliseconds / 1000)
        except TimeoutError:
            return
