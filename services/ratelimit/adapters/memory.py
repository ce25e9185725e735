"""The in-process counter store: the embedded default, one replica only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.clock import Clock
from services.ratelimit.ports import BucketDebit, BucketKey, DebitOutcome

# How often buckets that have refilled to capacity are forgotten. A full bucket is
# the same as an unknown one, so this only bounds memory to the recently active keys.
_SWEEP_INTERVAL_MS = 60_000


@dataclass(slots=True)
class _Level:
    level: int
    updated_ms: int
    full_at_ms: int


class MemoryCounterStore:
    """Token buckets in a dict, on the injected clock's monotonic time.

    Each operation runs without awaiting, so on one event loop it is atomic.
    """

    backend = "memory"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._levels: dict[BucketKey, _Level] = {}
        self._last_sweep_ms = self._now_ms()

    @property
    def tracked_buckets(self) -> int:
        """How many buckets are below capacity (or not yet swept); for monitoring."""
        return len(self._levels)

    async def debit(
        self, debits: Sequence[BucketDebit], *, enforce: bool
    ) -> DebitOutcome:
        """Refill, then debit every bucket all-or-nothing (see ``CounterStore``)."""
        now_ms = self._now_ms()
        self._sweep(now_ms)
        levels = [self._refilled(debit, now_ms) for debit in debits]
        applied = not enforce or all(
            level >= debit.amount for level, debit in zip(levels, debits, strict=True)
        )
        if applied:
            levels = [
                min(debit.capacity, level - debit.amount)
                for level, debit in zip(levels, debits, strict=True)
            ]
        for level, debit in zip(levels, debits, strict=True):
            self._levels[debit.bucket] = _Level(
                level=level,
                updated_ms=now_ms,
                full_at_ms=now_ms
                + math.ceil((debit.capacity - level) / debit.rate_per_minute),
            )
        return DebitOutcome(applied=applied, levels=tuple(levels))

    async def ping(self) -> bool:
        """Always healthy: the state lives in this process."""
        return True

    def _now_ms(self) -> int:
        # Flooring is drift-free: elapsed times are differences of floors, which
        # telescope to the true elapsed time.
        return math.floor(self._clock.monotonic() * 1000)

    def _refilled(self, debit: BucketDebit, now_ms: int) -> int:
        state = self._levels.get(debit.bucket)
        if state is None:
            return debit.capacity
        elapsed_ms = max(0, now_ms - state.updated_ms)
        return min(debit.capacity, state.level + elapsed_ms * debit.rate_per_minute)

    def _sweep(self, now_ms: int) -> None:
        if now_ms - self._last_sweep_ms < _SWEEP_INTERVAL_MS:
            return
        self._last_sweep_ms = now_ms
        full = [
            key for key, state in self._levels.items() if state.full_at_ms <= now_ms
        ]
        for key in full:
            del self._levels[key]
