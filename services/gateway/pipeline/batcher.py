"""Gather after-the-answer reports and send them a batch at a time.

Reconciles and routed-call outcomes are sent after the answer, one per request;
each gRPC call costs both sides more CPU than the item it carries. A
:class:`Batcher` collects items and sends them together when the oldest has
waited ``interval_seconds`` (timed by the event loop) or ``max_items`` are
waiting, whichever comes first, and on :meth:`drain`. One task per batch, none
per item. A batch the target cannot take is handled by ``send`` (the gateway logs
and drops it, as it did per item): nothing is retried here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collect items; send them in batches through ``send``."""

    def __init__(
        self,
        send: Callable[[Sequence[T]], Coroutine[Any, Any, None]],
        *,
        interval_seconds: float,
        max_items: int,
    ) -> None:
        if interval_seconds < 0 or max_items < 1:
            raise ValueError("interval_seconds >= 0 and max_items >= 1 required")
        self._send = send
        self._interval = interval_seconds
        self._max_items = max_items
        self._pending: list[T] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, item: T) -> None:
        """Queue ``item``; it is sent within ``interval_seconds``."""
        self._pending.append(item)
        if len(self._pending) >= self._max_items or self._interval == 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._interval, self._flush
            )

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self) -> None:
        """Send what is waiting now and wait until every batch is sent."""
        self._flush()
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
