"""Group commit: concurrent submissions share one flush, hence one durable commit.

A flush runs at a time. While it runs, new submissions wait in a list; when it
ends, the next flush takes all of them (up to ``max_batch``). Under load a commit
therefore carries every request that arrived during the previous one, and with no
load a lone request is flushed at once: no added latency. Under load (the previous
flush ended less than ``linger`` ago) the next flush first waits up to ``linger``
for more submissions, or until ``max_batch`` are waiting: fewer, larger commits
for at most ``linger`` of added latency. A submission resolves only after the
flush that carried it returned, that is after its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupCommit(Generic[ItemT, ResultT]):
    """Batches concurrent :meth:`submit` calls into calls of ``flush``.

    ``flush`` takes a batch and returns one result per item, in order; if it
    raises, every item of that batch gets the error. ``linger`` (seconds, 0 by
    default) is the most a flush under load waits for more items.
    """

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]],
        max_batch: int,
        linger: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if linger < 0:
            raise ValueError("linger must be >= 0")
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # When the last flush ended (loop time); the wake-up of a lingering flush.
        self._flushed_at = float("-inf")
        self._full: asyncio.Future[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Flush ``item`` with whatever else is waiting; its result once durable."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._drain())
        elif (
            self._full is not None
            and len(self._waiting) >= self._max_batch
            and not self._full.done()
        ):
            self._full.set_result(None)
        return await future

    async def wait_idle(self) -> None:
        """Return once every submitted item has been flushed."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if (
                    len(self._waiting) < self._max_batch
                    and asyncio.get_running_loop().time() - self._flushed_at
                    < self._linger
                ):
                    await self._gather_more()
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        # A caller that gave up (cancelled) needs no answer.
                        if not future.done():
                            future.set_exception(error)
                    continue
                finally:
                    self._flushed_at = asyncio.get_running_loop().time()
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None

    async def _gather_more(self) -> None:
        """Wait ``linger``, or less if ``max_batch`` submissions are waiting."""
        loop = asyncio.get_running_loop()
        full: asyncio.Future[None] = loop.create_future()
        self._full = full
        timer = loop.call_later(self._linger, _resolve, full)
        try:
            await full
        finally:
            timer.cancel()
            self._full = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
