"""Memory-only properties that need a fake clock; the shared suite is in
tests/integration/test_ratelimit_store_contract.py."""

from __future__ import annotations

from services.core.clock import FakeClock
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.ports import (
    SCALE,
    BucketDebit,
    BucketKey,
    Layer,
    Metric,
    NewReservation,
)

REQUESTS = BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS)
TOKENS = BucketKey(Layer.GLOBAL, "gpt-4.1", Metric.TOKENS)


def _requests(units: int, rate: int = 20) -> BucketDebit:
    return BucketDebit(REQUESTS, rate * SCALE, rate, units * SCALE)


def _tokens(units: int, rate: int = 1_000) -> BucketDebit:
    return BucketDebit(TOKENS, rate * SCALE, rate, units * SCALE, "gpt-4.1")


async def _take(store: MemoryCounterStore, *debits: BucketDebit) -> bool:
    outcome = await store.acquire(debits, models=(), reservation=None)
    return outcome.applied


async def test_refill_is_exact_at_rate_per_millisecond() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await _take(store, _requests(20))

    levels = []
    for _ in range(3):
        clock.advance(0.001)
        levels.append((await store.read([_requests(0)])).levels[0])

    # 20 per minute is 20 scaled units per millisecond.
    assert levels == [20, 40, 60]


async def test_sub_millisecond_steps_lose_no_refill() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await _take(store, _requests(20))

    # 3,072 steps of 1/1024 s (exact in binary) make exactly 3 s.
    for _ in range(3_072):
        clock.advance(1 / 1024)
        await _take(store, _requests(0))

    assert (await store.read([_requests(0)])).levels == (SCALE,)


async def test_full_buckets_are_forgotten_by_the_sweep() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await _take(store, _requests(1))
    clock.advance(59.999)
    await _take(store, _tokens(500))
    assert store.tracked_buckets == 2

    # The first sweep comes a minute after start: the requests bucket is full
    # again, the tokens bucket is not.
    clock.advance(0.001)
    await _take(store)

    assert store.tracked_buckets == 1
    assert (await store.read([_requests(0)])).levels == (20 * SCALE,)


async def test_expired_reservations_are_purged() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    for index in range(3):
        await store.acquire(
            [_tokens(10)],
            models=(),
            reservation=NewReservation(f"rsv_{index}", 10, ttl_ms=1_000),
        )
    assert store.open_reservations == 3

    clock.advance(1.0)

    assert not store.has_reservation("rsv_0")
    assert store.open_reservations == 0
