from __future__ import annotations

from services.core.clock import FakeClock
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.ports import SCALE, BucketDebit, BucketKey, Layer, Metric

REQUESTS = BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS)
TOKENS = BucketKey(Layer.GLOBAL, "gpt-4.1", Metric.TOKENS)


def _requests(units: int, rate: int = 20) -> BucketDebit:
    return BucketDebit(REQUESTS, rate * SCALE, rate, units * SCALE)


def _tokens(units: int, rate: int = 1_000) -> BucketDebit:
    return BucketDebit(TOKENS, rate * SCALE, rate, units * SCALE)


async def test_new_bucket_starts_full() -> None:
    store = MemoryCounterStore(FakeClock())

    outcome = await store.debit([_requests(0)], enforce=False)

    assert outcome.applied
    assert outcome.levels == (20 * SCALE,)


async def test_refill_is_exact_at_rate_per_millisecond() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await store.debit([_requests(20)], enforce=True)

    levels = []
    for _ in range(3):
        clock.advance(0.001)
        levels.append((await store.debit([_requests(0)], enforce=False)).levels[0])

    # 20 per minute is 20 scaled units per millisecond.
    assert levels == [20, 40, 60]


async def test_sub_millisecond_steps_lose_no_refill() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await store.debit([_requests(20)], enforce=True)

    # 3,072 steps of 1/1024 s (exact in binary) make exactly 3 s.
    for _ in range(3_072):
        clock.advance(1 / 1024)
        await store.debit([_requests(0)], enforce=False)

    assert (await store.debit([_requests(0)], enforce=False)).levels == (SCALE,)


async def test_enforced_debit_is_all_or_nothing() -> None:
    store = MemoryCounterStore(FakeClock())
    await store.debit([_tokens(900)], enforce=True)

    denied = await store.debit([_requests(1), _tokens(200)], enforce=True)
    admitted = await store.debit([_requests(1), _tokens(100)], enforce=True)

    assert not denied.applied
    assert denied.levels == (20 * SCALE, 100 * SCALE)
    assert admitted.applied
    assert admitted.levels == (19 * SCALE, 0)


async def test_settlement_may_go_negative_and_refunds_stop_at_capacity() -> None:
    store = MemoryCounterStore(FakeClock())

    charged = await store.debit([_tokens(1_500)], enforce=False)
    refunded = await store.debit([_tokens(-5_000)], enforce=False)

    assert charged.levels == (-500 * SCALE,)
    assert refunded.levels == (1_000 * SCALE,)


async def test_full_buckets_are_forgotten_by_the_sweep() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    await store.debit([_requests(1), _tokens(1)], enforce=True)
    clock.advance(59.999)
    await store.debit([_tokens(500)], enforce=True)
    assert store.tracked_buckets == 2

    # The first sweep comes a minute after start: the requests bucket is full
    # again, the tokens bucket is not.
    clock.advance(0.001)
    await store.debit([], enforce=True)

    assert store.tracked_buckets == 1
    assert (await store.debit([_requests(0)], enforce=False)).levels == (20 * SCALE,)


async def test_ping_is_healthy() -> None:
    store = MemoryCounterStore(FakeClock())

    assert store.backend == "memory"
    assert await store.ping()
