"""The in-process counter store: the embedded default, and the fail-open fallback.

The semantics are those of the Redis adapter's Lua scripts, step for step; one shared
behavioural test suite runs against both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.clock import Clock
from services.ratelimit.ports import (
    FACTOR_SCALE,
    MAX_FACTOR,
    SCALE,
    BackoffChange,
    BackoffState,
    BucketDebit,
    BucketKey,
    DebitOutcome,
    Metric,
    NewReservation,
    SettleOutcome,
    slowest_rate,
)

# How often buckets that have refilled to capacity are forgotten. A full bucket is
# the same as an unknown one, so this only bounds memory to the recently active keys.
_SWEEP_INTERVAL_MS = 60_000


@dataclass(slots=True)
class _Level:
    level: int
    updated_ms: int
    full_at_ms: int


@dataclass(frozen=True, slots=True)
class _Reservation:
    estimated_tokens: int
    token_debits: tuple[BucketDebit, ...]
    expires_ms: int


@dataclass(slots=True)
class _Backoff:
    factor: int
    paused_until_ms: int


class MemoryCounterStore:
    """Token buckets, reservations and backoffs in dicts, on the clock's monotonic time.

    Each operation runs without awaiting, so on one event loop it is atomic.
    """

    backend = "memory"

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._levels: dict[BucketKey, _Level] = {}
        # Insertion order is expiry order (one TTL per limiter, a monotonic clock),
        # so expired reservations are always at the front and purging them is cheap.
        self._reservations: dict[str, _Reservation] = {}
        self._backoffs: dict[str, _Backoff] = {}
        self._last_sweep_ms = self._now_ms()

    @property
    def tracked_buckets(self) -> int:
        """How many buckets are below capacity (or not yet swept); for monitoring."""
        return len(self._levels)

    @property
    def open_reservations(self) -> int:
        """How many reservations await Reconcile (expired ones purged lazily)."""
        return len(self._reservations)

    def has_reservation(self, reservation_id: str) -> bool:
        """Whether ``reservation_id`` is open here (the fail-open fallback made it)."""
        self._purge_expired(self._now_ms())
        return reservation_id in self._reservations

    async def acquire(
        self,
        debits: Sequence[BucketDebit],
        *,
        models: Sequence[str],
        reservation: NewReservation | None,
    ) -> DebitOutcome:
        """Take every amount all-or-nothing (see ``CounterStore.acquire``)."""
        now_ms = self._now_ms()
        self._sweep(now_ms)
        self._purge_expired(now_ms)
        paused_ms = max((self._paused_ms(model, now_ms) for model in models), default=0)
        rates = [self._rate(debit) for debit in debits]
        levels = [
            self._refilled(debit, rate, now_ms)
            for debit, rate in zip(debits, rates, strict=True)
        ]
        applied = paused_ms == 0 and all(
            level >= debit.amount for level, debit in zip(levels, debits, strict=True)
        )
        if applied:
            levels = [
                min(debit.capacity, level - debit.amount)
                for level, debit in zip(levels, debits, strict=True)
            ]
            if reservation is not None:
                self._reservations[reservation.reservation_id] = _Reservation(
                    estimated_tokens=reservation.estimated_tokens,
                    token_debits=tuple(
                        d for d in debits if d.bucket.metric is Metric.TOKENS
                    ),
                    expires_ms=now_ms + reservation.ttl_ms,
                )
        self._store(debits, levels, now_ms)
        return DebitOutcome(
            applied=applied,
            levels=tuple(levels),
            rates=tuple(rates),
            paused_ms=paused_ms,
        )

    async def read(self, debits: Sequence[BucketDebit]) -> DebitOutcome:
        """The refilled levels and rates in force (see ``CounterStore.read``)."""
        now_ms = self._now_ms()
        rates = [self._rate(debit) for debit in debits]
        levels = [
            self._refilled(debit, rate, now_ms)
            for debit, rate in zip(debits, rates, strict=True)
        ]
        return DebitOutcome(applied=False, levels=tuple(levels), rates=tuple(rates))

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        """Settle a reservation on its tokens buckets (see ``CounterStore.settle``)."""
        now_ms = self._now_ms()
        self._purge_expired(now_ms)
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is None:
            return SettleOutcome(found=False)
        debits = reservation.token_debits
        # Without tokens buckets there is nothing to give back or charge.
        refund = reservation.estimated_tokens - actual_tokens if debits else 0
        rates = [self._rate(debit) for debit in debits]
        levels = [
            min(debit.capacity, self._refilled(debit, rate, now_ms) + refund * SCALE)
            for debit, rate in zip(debits, rates, strict=True)
        ]
        self._store(debits, levels, now_ms)
        return SettleOutcome(found=True, refunded_tokens=refund)

    async def report_upstream(
        self, model: str, change: BackoffChange, pause_ms: int
    ) -> BackoffState:
        """Change a model's backoff (see ``CounterStore.report_upstream``)."""
        now_ms = self._now_ms()
        state = self._backoffs.get(model) or _Backoff(FACTOR_SCALE, 0)
        state.factor = min(
            MAX_FACTOR,
            max(FACTOR_SCALE, state.factor * change.numerator // change.denominator),
        )
        if pause_ms > 0:
            state.paused_until_ms = max(state.paused_until_ms, now_ms + pause_ms)
        if state.factor == FACTOR_SCALE and state.paused_until_ms <= now_ms:
            self._backoffs.pop(model, None)
        else:
            self._backoffs[model] = state
        return BackoffState(
            model=model,
            factor=state.factor,
            paused_ms=max(0, state.paused_until_ms - now_ms),
        )

    async def backoffs(self) -> list[BackoffState]:
        """Models with a factor above 1 or an active pause, sorted by model."""
        now_ms = self._now_ms()
        return [
            BackoffState(model, state.factor, max(0, state.paused_until_ms - now_ms))
            for model, state in sorted(self._backoffs.items())
            if state.factor > FACTOR_SCALE or state.paused_until_ms > now_ms
        ]

    async def ping(self) -> bool:
        """Always healthy: the state lives in this process."""
        return True

    def _now_ms(self) -> int:
        # Flooring is drift-free: elapsed times are differences of floors, which
        # telescope to the true elapsed time.
        return math.floor(self._clock.monotonic() * 1000)

    def _rate(self, debit: BucketDebit) -> int:
        state = self._backoffs.get(debit.backoff_model) if debit.backoff_model else None
        if state is None:
            return debit.rate_per_minute
        return max(1, debit.rate_per_minute * FACTOR_SCALE // state.factor)

    def _paused_ms(self, model: str, now_ms: int) -> int:
        state = self._backoffs.get(model)
        return 0 if state is None else max(0, state.paused_until_ms - now_ms)

    def _refilled(self, debit: BucketDebit, rate: int, now_ms: int) -> int:
        state = self._levels.get(debit.bucket)
        if state is None:
            return debit.capacity
        elapsed_ms = max(0, now_ms - state.updated_ms)
        return min(debit.capacity, state.level + elapsed_ms * rate)

    def _store(
        self,
        debits: Sequence[BucketDebit],
        levels: Sequence[int],
        now_ms: int,
    ) -> None:
        for debit, level in zip(debits, levels, strict=True):
            self._levels[debit.bucket] = _Level(
                level=level,
                updated_ms=now_ms,
                full_at_ms=now_ms
                + math.ceil((debit.capacity - level) / slowest_rate(debit)),
            )

    def _purge_expired(self, now_ms: int) -> None:
        while self._reservations:
            reservation_id, reservation = next(iter(self._reservations.items()))
            if reservation.expires_ms > now_ms:
                return
            del self._reservations[reservation_id]

    def _sweep(self, now_ms: int) -> None:
        if now_ms - self._last_sweep_ms < _SWEEP_INTERVAL_MS:
            return
        self._last_sweep_ms = now_ms
        full = [
            key for key, state in self._levels.items() if state.full_at_ms <= now_ms
        ]
        for key in full:
            del self._levels[key]
