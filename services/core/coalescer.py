"""Answered calls that share one trip: group commit on the caller's side.

A usage record must be booked before its request is answered (nothing accepted is
lost), so it cannot wait in a timed batch like a reconcile; nor can a cache write
that its Store call reports done. A :class:`Coalescer` sends an item at once when
nothing is in flight, and otherwise gathers the items that arrive while the last
batch is in flight and sends them together when it returns. Each caller awaits its
own item's result. At low load every item goes alone and waits for nothing; under
load one trip carries many items, and its fixed cost (a gRPC call: the gateway's
RecordBatch; a hop to a worker thread and an index update: the cache's embedded
semantic index) is paid once per batch instead of once per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
"""Sends a batch; returns one result or exception per item, in order, or raises."""


class Coalescer(Generic[T, R]):
    """Send items through ``send`` one batch at a time; each caller gets its result."""

    def __init__(self, send: Send[T, R], *, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items >= 1 required")
        self._send = send
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, item: T) -> R:
        """Send ``item`` in the next batch; its result, or its exception raised.

        A caller that is cancelled does not take its item back: it is sent anyway
        (a record that was accepted is booked). Items given in the same turn of
        the event loop go in the same batch.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        # One sender at a time: what arrives while a batch is in flight waits for
        # it and goes in the next one.
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_items]
                del self._pending[: self._max_items]
                await self._deliver(batch)
        except asyncio.CancelledError:
            # The loop is closing: no caller may wait for a batch that never goes.
            for _, future in (*batch, *self._pending):
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._sender = None

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as error:  # the batch failed: every item fails alike
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        if len(results) != len(batch):
            mismatch = RuntimeError(
                f"batch of {len(batch)} answered with {len(results)} results"
            )
            results = [mismatch] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
