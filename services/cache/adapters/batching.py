"""Batching of embedding calls: concurrent requests share one model run.

No timer: a batch is whatever queued while the previous one ran, so a lone request
waits for nothing and a burst is embedded in a few runs instead of one per text. A
caller that gave up while queued (its deadline passed, its RPC was cancelled) is
dropped from the queue, so an overloaded cache does not keep embedding for nobody.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

Vector = Sequence[float]
EmbedBatch = Callable[[list[str]], Awaitable[list[Vector]]]


class MicroBatcher:
    """Collects texts from concurrent callers and embeds them in batches.

    Args:
        run: embeds one batch of texts, in order.
        max_batch: the most texts in one run.
    """

    def __init__(self, run: EmbedBatch, max_batch: int = 32) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: deque[tuple[str, asyncio.Future[Vector]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """The vectors of ``texts``, embedded with whatever else is queued."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._pending.extend(zip(texts, futures, strict=True))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        while self._pending:
            batch: list[tuple[str, asyncio.Future[Vector]]] = []
            while self._pending and len(batch) < self._max_batch:
                text, future = self._pending.popleft()
                if not future.done():  # done while queued: its caller gave up
                    batch.append((text, future))
            if not batch:
                continue
            try:
                vectors = await self._run([text for text, _ in batch])
            except Exception as error:  # handed to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)

    async def close(self) -> None:
        """Wait for the batch in flight."""
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
