"""Acquire on Redis is idempotent by reservation id, under a real client retry.

The client retries a call once after a connection error. When the error is a lost
reply, the script has already run; its replay must not debit the buckets again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from services.ratelimit.adapters.redis_store import RedisCounterStore, connect
from services.ratelimit.ports import (
    SCALE,
    BucketDebit,
    BucketKey,
    Layer,
    Metric,
    NewReservation,
)
from tests.backends import RedisServer

pytestmark = pytest.mark.integration

MODEL = "gpt-4.1"
TOKENS = 100
DEBITS = [
    BucketDebit(BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS), 20 * SCALE, 20, SCALE),
    BucketDebit(
        BucketKey(Layer.GLOBAL, MODEL, Metric.TOKENS),
        1_000 * SCALE,
        1_000,
        TOKENS * SCALE,
        MODEL,
    ),
]
FULL = tuple(debit.capacity for debit in DEBITS)


def _debited(levels: tuple[int, ...]) -> tuple[int, ...]:
    """How many debits each bucket shows, give or take the refill of a second."""
    return tuple(
        round((full - level) / debit.amount)
        for full, level, debit in zip(FULL, levels, DEBITS, strict=True)
    )


class ReplyDroppingProxy:
    """A TCP proxy in front of Redis that can lose the reply of one script call.

    Armed, it forwards the next EVALSHA to Redis, waits for Redis's reply (so the
    script has run), then closes the client's connection instead of passing the
    reply on: what a connection dropping at the wrong moment does.
    """

    def __init__(self, redis_port: int) -> None:
        self._redis_port = redis_port
        self._server: asyncio.Server | None = None
        self.armed = False
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        redis_reader, redis_writer = await asyncio.open_connection(
            "127.0.0.1", self._redis_port
        )
        try:
            while data := await client_reader.read(65536):
                drop = self.armed and b"EVALSHA" in data.upper()
                redis_writer.write(data)
                await redis_writer.drain()
                reply = await redis_reader.read(65536)
                if drop:
                    self.armed = False
                    self.dropped += 1
                    break
                client_writer.write(reply)
                await client_writer.drain()
        finally:
            client_writer.close()
            redis_writer.close()
            self._tasks.discard(task)
        for writer in (client_writer, redis_writer):
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
def prefix() -> str:
    return f"{{test-{uuid.uuid4().hex[:8]}}}:"


@pytest.fixture
async def store(
    redis_server: RedisServer, prefix: str
) -> AsyncIterator[RedisCounterStore]:
    redis_store = RedisCounterStore(
        connect(redis_server.url, socket_timeout_ms=500, connect_timeout_ms=500),
        prefix,
    )
    yield redis_store
    await redis_store.close()


async def _levels(store: RedisCounterStore) -> tuple[int, ...]:
    return (await store.read(DEBITS)).levels


async def test_acquiring_twice_with_one_reservation_id_debits_once(
    store: RedisCounterStore,
) -> None:
    reservation = NewReservation("rsv_twice", TOKENS, 60_000)

    first = await store.acquire(DEBITS, models=(MODEL,), reservation=reservation)
    replay = await store.acquire(DEBITS, models=(MODEL,), reservation=reservation)

    assert first.applied and replay.applied
    assert _debited(first.levels) == (1, 1)
    assert _debited(replay.levels) == (1, 1)
    assert _debited(await _levels(store)) == (1, 1)
    # Settling gives the estimate back once: the reservation was recorded once.
    settled = await store.settle("rsv_twice", 0)
    assert settled.found and settled.refunded_tokens == TOKENS
    assert not (await store.settle("rsv_twice", 0)).found


async def test_a_distinct_reservation_is_debited_again(
    store: RedisCounterStore,
) -> None:
    for n in range(2):
        outcome = await store.acquire(
            DEBITS,
            models=(MODEL,),
            reservation=NewReservation(f"rsv_{n}", TOKENS, 60_000),
        )
        assert outcome.applied

    assert _debited(await _levels(store)) == (2, 2)


async def test_a_retried_script_whose_reply_was_lost_debits_once(
    redis_server: RedisServer, prefix: str
) -> None:
    proxy = ReplyDroppingProxy(redis_server.port)
    await proxy.start()
    store = RedisCounterStore(
        connect(proxy.url, socket_timeout_ms=500, connect_timeout_ms=500), prefix
    )
    user_only = DEBITS[:1]
    try:
        # Loads the script, so the armed call is the script running, not NOSCRIPT.
        await store.read(user_only)
        warm = await store.acquire(
            user_only, models=(), reservation=NewReservation("rsv_warm", 0, 60_000)
        )
        assert warm.applied
        proxy.armed = True

        retried = await store.acquire(
            user_only, models=(), reservation=NewReservation("rsv_lost", 0, 60_000)
        )

        assert proxy.dropped == 1
        assert retried.applied
        [level] = (await store.read(user_only)).levels
        # Two acquires in all (the warm-up and the retried one), not three.
        assert round((FULL[0] - level) / SCALE) == 2
    finally:
        await store.close()
        await proxy.close()
