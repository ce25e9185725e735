"""One behavioural suite for every CounterStore: in-memory and Redis.

Redis runs on its own clock (TIME), so assertions read whole units: a test takes
milliseconds, during which the slow buckets here refill far less than one unit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from services.core.clock import FakeClock
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.adapters.redis_store import RedisCounterStore, connect
from services.ratelimit.ports import (
    SCALE,
    BackoffChange,
    BackoffState,
    BucketDebit,
    BucketKey,
    CounterStore,
    Layer,
    Metric,
    NewReservation,
)
from tests.backends import RedisServer

MODEL = "gpt-4.1"
USER_REQUESTS = BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS)
USER_TOKENS = BucketKey(Layer.USER, "t1:u1", Metric.TOKENS)
MODEL_TOKENS = BucketKey(Layer.GLOBAL, MODEL, Metric.TOKENS)
THROTTLE = BackoffChange(2, 1)
SUCCESS = BackoffChange(9, 10)


def _debit(bucket: BucketKey, units: int, rate: int, model: str = "") -> BucketDebit:
    return BucketDebit(bucket, rate * SCALE, rate, units * SCALE, model)


def _user_requests(units: int) -> BucketDebit:
    return _debit(USER_REQUESTS, units, 20)


def _user_tokens(units: int) -> BucketDebit:
    return _debit(USER_TOKENS, units, 5_000)


def _model_tokens(units: int) -> BucketDebit:
    return _debit(MODEL_TOKENS, units, 1_000, MODEL)


def _units(levels: tuple[int, ...]) -> list[int]:
    return [level // SCALE for level in levels]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounterStore(FakeClock())
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisCounterStore(
        connect(redis_server.url, socket_timeout_ms=500, connect_timeout_ms=500),
        f"{{test-{uuid.uuid4().hex[:8]}}}:",
    )
    yield redis_store
    await redis_store.close()


async def _acquire(
    store: CounterStore,
    *debits: BucketDebit,
    reservation: NewReservation | None = None,
    models: tuple[str, ...] = (),
) -> tuple[bool, list[int], int]:
    outcome = await store.acquire(debits, models=models, reservation=reservation)
    return outcome.applied, _units(outcome.levels), outcome.paused_ms


def _reservation(rid: str, tokens: int) -> NewReservation:
    return NewReservation(rid, tokens, ttl_ms=60_000)


async def test_new_buckets_start_full_and_read_changes_nothing(
    store: CounterStore,
) -> None:
    first = await store.read([_user_requests(0), _model_tokens(0)])
    second = await store.read([_user_requests(0), _model_tokens(0)])

    assert not first.applied
    assert _units(first.levels) == _units(second.levels) == [20, 1_000]
    assert first.rates == (20, 1_000)


async def test_acquire_is_all_or_nothing(store: CounterStore) -> None:
    assert await _acquire(store, _model_tokens(900)) == (True, [100], 0)

    denied = await _acquire(store, _user_requests(1), _model_tokens(200))
    admitted = await _acquire(store, _user_requests(1), _model_tokens(100))

    assert denied == (False, [20, 100], 0)
    assert admitted == (True, [19, 0], 0)


async def test_settle_refunds_tokens_buckets_once(store: CounterStore) -> None:
    applied, levels, _ = await _acquire(
        store,
        _user_requests(1),
        _user_tokens(3_000),
        _model_tokens(800),
        reservation=_reservation("rsv_a", 800),
    )
    assert (applied, levels) == (True, [19, 2_000, 200])

    settled = await store.settle("rsv_a", 300)
    again = await store.settle("rsv_a", 300)
    after = await store.read([_user_requests(0), _user_tokens(0), _model_tokens(0)])

    assert (settled.found, settled.refunded_tokens) == (True, 500)
    assert (again.found, again.refunded_tokens) == (False, 0)
    # Requests are not refunded; both tokens buckets get the 500 back.
    assert _units(after.levels) == [19, 2_500, 700]


async def test_settle_charges_below_zero_and_refunds_stop_at_capacity(
    store: CounterStore,
) -> None:
    await _acquire(
        store, _model_tokens(1_000), reservation=_reservation("rsv_a", 1_000)
    )
    await _acquire(store, _user_tokens(10), reservation=_reservation("rsv_b", 10))

    charged = await store.settle("rsv_a", 1_500)
    refunded = await store.settle("rsv_b", 0)
    levels = await store.read([_model_tokens(0), _user_tokens(0)])

    assert charged.refunded_tokens == -500
    assert refunded.refunded_tokens == 10
    assert levels.levels[0] <= -499 * SCALE
    assert _units(levels.levels)[1] == 5_000


async def test_denied_acquire_records_no_reservation(store: CounterStore) -> None:
    await _acquire(store, _model_tokens(1_000))

    denied = await _acquire(
        store, _model_tokens(1), reservation=_reservation("rsv_x", 1)
    )

    assert not denied[0]
    assert not (await store.settle("rsv_x", 0)).found


async def test_reservation_without_tokens_buckets_refunds_nothing(
    store: CounterStore,
) -> None:
    await _acquire(store, _user_requests(1), reservation=_reservation("rsv_r", 50))

    settled = await store.settle("rsv_r", 10)

    assert (settled.found, settled.refunded_tokens) == (True, 0)


async def test_backoff_doubles_to_eight_and_decays_by_nine_tenths(
    store: CounterStore,
) -> None:
    factors = [
        (await store.report_upstream(MODEL, THROTTLE, 0)).factor for _ in range(4)
    ]
    decayed = [
        (await store.report_upstream(MODEL, SUCCESS, 0)).factor for _ in range(3)
    ]

    assert factors == [2_000, 4_000, 8_000, 8_000]
    assert decayed == [7_200, 6_480, 5_832]
    assert await store.backoffs() == [BackoffState(MODEL, 5_832, 0)]


async def test_backoff_divides_the_rate_of_its_model_buckets_only(
    store: CounterStore,
) -> None:
    await store.report_upstream(MODEL, THROTTLE, 0)
    await store.report_upstream(MODEL, THROTTLE, 0)

    outcome = await store.read([_user_requests(0), _model_tokens(0)])

    assert outcome.rates == (20, 250)


async def test_success_decays_back_to_one_and_forgets_the_model(
    store: CounterStore,
) -> None:
    await store.report_upstream(MODEL, THROTTLE, 0)
    states = [await store.report_upstream(MODEL, SUCCESS, 0) for _ in range(7)]

    assert [s.factor for s in states] == [
        1_800,
        1_620,
        1_458,
        1_312,
        1_180,
        1_062,
        1_000,
    ]
    assert await store.backoffs() == []


async def test_pause_blocks_its_model_and_never_shortens(
    store: CounterStore,
) -> None:
    first = await store.report_upstream(MODEL, THROTTLE, 20_000)
    shorter = await store.report_upstream(MODEL, THROTTLE, 5_000)

    paused = await _acquire(store, _user_requests(1), models=(MODEL,))
    other = await _acquire(store, _user_requests(1), models=("gpt-4.1-mini",))

    assert 19_900 <= first.paused_ms <= 20_000
    assert shorter.paused_ms > 19_000
    assert paused[0] is False
    assert paused[1] == [20]
    assert 19_000 < paused[2] <= 20_000
    assert other[:2] == (True, [19])
    [state] = await store.backoffs()
    assert (state.model, state.factor) == (MODEL, 4_000)
    assert state.paused_ms > 19_000


async def test_ping(store: CounterStore) -> None:
    assert await store.ping()
