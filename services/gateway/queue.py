"""The priority queue in front of the upstream.

Per upstream model: at most ``max_concurrency`` calls in flight and at most
``max_depth`` waiting. Waiters are served by priority (CRITICAL > REALTIME >
STANDARD > BATCH > LOW), first come first served within a priority. Waiting ages a
request: every ``aging_seconds`` waited lifts it one priority level, so LOW traffic
cannot starve behind a steady stream of REALTIME. One FIFO per priority keeps the
choice O(number of priorities): the head of each FIFO is its oldest, hence its most
aged, waiter.

A full queue refuses at once with an estimate of the wait; a waiter whose deadline
passes is dropped before it is sent; a cancelled waiter leaves no trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from services.core import metrics
from services.core.clock import Clock
from services.core.errors import DeadlineExceededError, ResourceExhaustedError
from services.gateway.domain import Priority

# Smoothing of the per-model service time used to estimate waits.
_EWMA_WEIGHT = 0.2
_RECENT_WAITS = 512


@dataclass
class _Waiter:
    priority: Priority
    enqueued_at: float
    deadline: float | None
    future: asyncio.Future[None]


@dataclass
class _ModelLane:
    fifos: dict[Priority, deque[_Waiter]] = field(
        default_factory=lambda: {p: deque() for p in Priority}
    )
    active: int = 0
    waiting: int = 0
    service_seconds: float = 1.0


@dataclass
class PriorityStats:
    """What GetStatus shows per priority."""

    depth: int = 0
    admitted: int = 0
    rejected: int = 0
    expired: int = 0
    recent_waits: deque[float] = field(
        default_factory=lambda: deque(maxlen=_RECENT_WAITS)
    )

    @property
    def p50_wait_seconds(self) -> float:
        """Median wait of recently admitted requests."""
        return statistics.median(self.recent_waits) if self.recent_waits else 0.0


class AdmissionQueue:
    """Bounded, prioritised, aging admission to the upstream, per model."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_depth: int,
        aging_seconds: float,
        clock: Clock,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._max_depth = max_depth
        self._aging_seconds = aging_seconds
        self._clock = clock
        self._lanes: dict[str, _ModelLane] = {}
        self.stats: dict[Priority, PriorityStats] = {
            p: PriorityStats() for p in Priority
        }

    @property
    def in_flight(self) -> int:
        """Calls holding a slot, across models."""
        return sum(lane.active for lane in self._lanes.values())

    @contextlib.asynccontextmanager
    async def slot(
        self, model: str, priority: Priority, deadline: float | None
    ) -> AsyncIterator[None]:
        """Hold one of ``model``'s upstream slots for the duration of the block."""
        lane = self._lanes.setdefault(model, _ModelLane())
        await self._admit(lane, priority, deadline)
        started = self._clock.monotonic()
        try:
            yield
        finally:
            elapsed = self._clock.monotonic() - started
            lane.service_seconds += _EWMA_WEIGHT * (elapsed - lane.service_seconds)
            lane.active -= 1
            self._wake(lane)

    async def _admit(
        self, lane: _ModelLane, priority: Priority, deadline: float | None
    ) -> None:
        stats = self.stats[priority]
        now = self._clock.monotonic()
        if deadline is not None and deadline <= now:
            self._refused(priority, "expired")
            raise DeadlineExceededError(
                "the deadline passed before the request was sent"
            )
        if lane.active < self._max_concurrency and lane.waiting == 0:
            lane.active += 1
            self._admitted(priority, 0.0)
            return
        if lane.waiting >= self._max_depth:
            self._refused(priority, "full")
            raise ResourceExhaustedError(
                "the upstream queue is full; retry later",
                reason="QUEUE_FULL",
                retry_after=self.estimated_wait(lane),
            )
        waiter = _Waiter(
            priority, now, deadline, asyncio.get_running_loop().create_future()
        )
        lane.fifos[priority].append(waiter)
        lane.waiting += 1
        stats.depth += 1
        timeout = None if deadline is None else max(0.0, deadline - now)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except BaseException as error:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted just as we gave up: hand the slot to the next waiter.
                lane.active -= 1
                self._wake(lane)
            else:
                waiter.future.cancel()
                self._forget(lane, waiter)
            if isinstance(error, TimeoutError):
                self._refused(priority, "expired")
                raise DeadlineExceededError(
                    "the deadline passed while the request was queued; it was not sent"
                ) from error
            raise
        self._admitted(priority, self._clock.monotonic() - waiter.enqueued_at)

    def _admitted(self, priority: Priority, waited: float) -> None:
        stats = self.stats[priority]
        stats.admitted += 1
        stats.recent_waits.append(waited)
        metrics.QUEUE_WAIT.labels(priority.name.lower()).observe(waited)

    def _refused(self, priority: Priority, reason: Literal["full", "expired"]) -> None:
        stats = self.stats[priority]
        if reason == "full":
            stats.rejected += 1
        else:
            stats.expired += 1
        metrics.QUEUE_REFUSALS.labels(priority.name.lower(), reason).inc()

    def _forget(self, lane: _ModelLane, waiter: _Waiter) -> None:
        fifo = lane.fifos[waiter.priority]
        with contextlib.suppress(ValueError):
            fifo.remove(waiter)
            lane.waiting -= 1
            self.stats[waiter.priority].depth -= 1

    def _wake(self, lane: _ModelLane) -> None:
        while lane.active < self._max_concurrency and lane.waiting:
            waiter = self._next(lane)
            lane.fifos[waiter.priority].popleft()
            lane.waiting -= 1
            self.stats[waiter.priority].depth -= 1
            if waiter.future.done():
                continue  # cancelled while queued
            lane.active += 1
            waiter.future.set_result(None)

    def _next(self, lane: _ModelLane) -> _Waiter:
        now = self._clock.monotonic()
        best: _Waiter | None = None
        best_rank: tuple[float, float] | None = None
        for fifo in lane.fifos.values():
            if not fifo:
                continue
            head = fifo[0]
            aged_levels = int((now - head.enqueued_at) / self._aging_seconds)
            rank = (head.priority.value - aged_levels, head.enqueued_at)
            if best_rank is None or rank < best_rank:
                best, best_rank = head, rank
        assert best is not None
        return best

    def estimated_wait(self, lane: _ModelLane) -> float:
        """Seconds until a new arrival would be served, from depth and service time."""
        rounds = (lane.waiting + 1) / self._max_concurrency
        return max(0.001, rounds * lane.service_seconds)

    def depth(self, priority: Priority) -> int:
        """Requests of ``priority`` waiting, across models."""
        return self.stats[priority].depth
