"""Fail-open to a conservative local limiter, fail-closed, and automatic recovery."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import structlog

from services.core.clock import FakeClock
from services.core.errors import BackendUnavailableError
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.domain import (
    Caller,
    LocalFallback,
    RateLimiter,
    UpstreamOutcome,
)
from services.ratelimit.limits import RateLimits, RateRule
from services.ratelimit.ports import (
    BackoffChange,
    BackoffState,
    BucketDebit,
    DebitOutcome,
    NewReservation,
    SettleOutcome,
)

MODEL = "gpt-4.1"
USER = Caller(tenant_id="t1", service="chat", user_id="u1", user_tier="paid")
LIMITS = RateLimits(models={MODEL: RateRule(rpm=300, tpm=90_000)})


class FlakyStore:
    """A memory store that can be switched off, as Redis going away."""

    backend = "redis"

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryCounterStore(clock)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("redis unavailable: ConnectionError")

    async def acquire(
        self,
        debits: Sequence[BucketDebit],
        *,
        models: Sequence[str],
        reservation: NewReservation | None,
    ) -> DebitOutcome:
        self._check()
        return await self.inner.acquire(debits, models=models, reservation=reservation)

    async def read(self, debits: Sequence[BucketDebit]) -> DebitOutcome:
        self._check()
        return await self.inner.read(debits)

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        self._check()
        return await self.inner.settle(reservation_id, actual_tokens)

    async def report_upstream(
        self, model: str, change: BackoffChange, pause_ms: int
    ) -> BackoffState:
        self._check()
        return await self.inner.report_upstream(model, change, pause_ms)

    async def backoffs(self) -> list[BackoffState]:
        self._check()
        return await self.inner.backoffs()

    async def ping(self) -> bool:
        return not self.down


def _limiter(
    *, fail_open: bool, replicas: int = 3
) -> tuple[RateLimiter, FlakyStore, FakeClock]:
    clock = FakeClock()
    store = FlakyStore(clock)
    fallback = (
        LocalFallback(MemoryCounterStore(clock), replicas, retry_interval_seconds=1.0)
        if fail_open
        else None
    )
    limiter = RateLimiter(
        store, LIMITS, clock, reservation_ttl_seconds=300, fallback=fallback
    )
    return limiter, store, clock


async def test_fail_open_divides_every_limit_by_the_replica_count() -> None:
    limiter, store, _ = _limiter(fail_open=True, replicas=3)
    store.down = True

    with structlog.testing.capture_logs() as logs:
        results = [await limiter.acquire(USER, MODEL, 0) for _ in range(34)]

    # paid users: 100 RPM / 3 replicas = 33 here.
    assert [r.allowed for r in results] == [True] * 33 + [False]
    assert all(r.degraded for r in results)
    assert results[0].buckets[0].limit_per_minute == 33
    assert results[0].buckets[0].capacity == 33
    assert results[0].buckets[1].limit_per_minute == 100  # 300 RPM / 3
    assert [e["event"] for e in logs].count("ratelimit_degraded") == 1


async def test_recovery_is_automatic_after_the_retry_interval() -> None:
    limiter, store, clock = _limiter(fail_open=True)
    store.down = True
    assert (await limiter.acquire(USER, MODEL, 0)).degraded
    store.down = False

    before_probe = await limiter.acquire(USER, MODEL, 0)
    clock.advance(1.0)
    with structlog.testing.capture_logs() as logs:
        after_probe = await limiter.acquire(USER, MODEL, 0)
    status = await limiter.status(USER, MODEL)

    assert before_probe.degraded
    assert not after_probe.degraded
    assert not status.degraded
    assert [e["event"] for e in logs] == ["ratelimit_recovered"]
    # Back on the shared store: its own full limits.
    assert after_probe.buckets[0].limit_per_minute == 100


async def test_health_check_follows_the_store_in_both_modes() -> None:
    open_limiter, open_store, _ = _limiter(fail_open=True)
    closed_limiter, closed_store, _ = _limiter(fail_open=False)
    open_store.down = closed_store.down = True

    assert await open_limiter.check_backend()
    assert open_limiter.degraded
    assert not await closed_limiter.check_backend()

    open_store.down = closed_store.down = False
    assert await open_limiter.check_backend()
    assert not open_limiter.degraded
    assert await closed_limiter.check_backend()


async def test_fail_closed_raises_backend_unavailable() -> None:
    limiter, store, _ = _limiter(fail_open=False)
    store.down = True

    with pytest.raises(BackendUnavailableError):
        await limiter.acquire(USER, MODEL, 0)
    with pytest.raises(BackendUnavailableError):
        await limiter.reconcile("rsv_1", 0)


async def test_reservations_made_while_degraded_settle_locally() -> None:
    limiter, store, _ = _limiter(fail_open=True)
    store.down = True
    local = await limiter.acquire(USER, MODEL, 3_000)
    store.down = False

    settled = await limiter.reconcile(local.reservation_id, 1_000)
    shared = await limiter.reconcile("rsv_unknown", 0)

    assert (settled.settled, settled.refunded_tokens, settled.degraded) == (
        True,
        2_000,
        True,
    )
    assert not shared.settled


async def test_backoff_reports_while_degraded_go_to_the_local_limiter() -> None:
    limiter, store, _ = _limiter(fail_open=True)
    store.down = True

    backoff = await limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, None)
    status = await limiter.status(None, MODEL)

    assert backoff.factor == 2.0
    assert status.degraded
    assert [b.model for b in status.backoffs] == [MODEL]
