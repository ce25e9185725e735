"""Group commit: concurrent submissions share one flush, hence one durable commit.

A flush runs at a time. While it runs, new submissions wait in a list; when it
ends, the next flush takes all of them (up to ``max_batch``). Under load a commit
therefore carries every request that arrived during the previous one, and with no
load a lone request is flushed at once: no timer, no added latency. A submission
resolves only after the flush that carried it returned, that is after its commit.
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
    raises, every item of that batch gets the error.
    """

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]],
        max_batch: int,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Flush ``item`` with whatever else is waiting; its result once durable."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._drain())
        return await future

    async def wait_idle(self) -> None:
        """Return once every submitted item has been flushed."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _drain(self) -> None:
        try:
            while self._waiting:
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
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None
