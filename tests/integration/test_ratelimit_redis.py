"""What only the Redis store has: scripts, key layout, expiry, timeouts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio
from redis.crc import key_slot

from services.core.errors import BackendUnavailableError
from services.ratelimit.adapters.redis_store import RedisCounterStore, connect
from services.ratelimit.ports import (
    SCALE,
    BackoffChange,
    BucketDebit,
    BucketKey,
    Layer,
    Metric,
    NewReservation,
)
from tests.backends import RedisServer, free_port

pytestmark = pytest.mark.integration

MODEL = "gpt-4.1"
DEBITS = [
    BucketDebit(BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS), 20 * SCALE, 20, SCALE),
    BucketDebit(
        BucketKey(Layer.SERVICE, f"chat:{MODEL}", Metric.TOKENS),
        600 * SCALE,
        600,
        100 * SCALE,
        MODEL,
    ),
    BucketDebit(
        BucketKey(Layer.GLOBAL, MODEL, Metric.TOKENS),
        1_000 * SCALE,
        1_000,
        100 * SCALE,
        MODEL,
    ),
]


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"{{test-{uuid.uuid4().hex[:8]}}}:"


@pytest.fixture
async def store(
    redis_server: RedisServer, prefix: str
) -> AsyncIterator[RedisCounterStore]:
    redis_store = RedisCounterStore(
        connect(redis_server.url, socket_timeout_ms=50, connect_timeout_ms=50), prefix
    )
    yield redis_store
    await redis_store.close()


async def test_every_key_of_a_request_shares_one_cluster_slot(
    store: RedisCounterStore, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await store.acquire(
        DEBITS, models=(MODEL,), reservation=NewReservation("rsv_1", 100, 60_000)
    )
    await store.report_upstream(MODEL, BackoffChange(2, 1), 0)

    keys = [key async for key in raw.scan_iter(match=f"{prefix}*")]

    assert len(keys) == 5  # three buckets, the reservation, the backoff hash
    assert len({key_slot(key) for key in keys}) == 1


async def test_scripts_are_reloaded_after_script_flush(
    store: RedisCounterStore, raw: redis_asyncio.Redis
) -> None:
    await store.acquire(DEBITS, models=(), reservation=None)
    await raw.script_flush()

    outcome = await store.acquire(DEBITS, models=(), reservation=None)

    assert outcome.applied
    assert [level // SCALE for level in outcome.levels] == [18, 400, 800]


async def test_reservations_and_buckets_expire_in_redis(
    store: RedisCounterStore, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await store.acquire(
        DEBITS, models=(), reservation=NewReservation("rsv_1", 100, ttl_ms=30_000)
    )

    reservation_ttl = await raw.pttl(f"{prefix}rsv:rsv_1")
    user_ttl = await raw.pttl(f"{prefix}b:user:requests:t1:u1")
    model_ttl = await raw.pttl(f"{prefix}b:global:tokens:{MODEL}")

    assert 29_000 < reservation_ttl <= 30_000
    # One request at 20/min refills in 3 s.
    assert 2_900 < user_ttl <= 3_000
    # 100 tokens at 1,000/min, timed at the slowest rate (backoff x8): 48 s.
    assert 47_000 < model_ttl <= 48_000


async def test_a_stalled_redis_times_out_in_tens_of_milliseconds(
    store: RedisCounterStore, raw: redis_asyncio.Redis
) -> None:
    await store.acquire(DEBITS, models=(), reservation=None)
    # Every client's commands wait while Redis is paused for 2 s; a 50 ms socket
    # timeout gives up long before (the test itself would take 2 s otherwise).
    await raw.client_pause(2_000, all=True)
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            await store.acquire(DEBITS, models=(), reservation=None)
    finally:
        await raw.client_unpause()

    assert caught.value.metadata == {"backend": "redis"}
    assert "TimeoutError" in caught.value.message


async def test_unreachable_redis_is_backend_unavailable() -> None:
    store = RedisCounterStore(
        connect(
            f"redis://127.0.0.1:{free_port()}/0",
            socket_timeout_ms=50,
            connect_timeout_ms=50,
        ),
        "{x}:",
    )
    try:
        with pytest.raises(BackendUnavailableError):
            await store.settle("rsv_1", 0)
        assert not await store.ping()
    finally:
        await store.close()
