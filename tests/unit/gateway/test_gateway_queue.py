"""The admission queue in front of the upstream: bounded, prioritised, aging."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.core.clock import FakeClock
from services.core.errors import DeadlineExceededError, ResourceExhaustedError
from services.gateway.domain import Priority
from services.gateway.queue import AdmissionQueue

MODEL = "gpt-4.1-mini"
AGING_SECONDS = 5.0


def _queue(clock: FakeClock, *, concurrency: int = 1, depth: int = 8) -> AdmissionQueue:
    return AdmissionQueue(
        max_concurrency=concurrency,
        max_depth=depth,
        aging_seconds=AGING_SECONDS,
        clock=clock,
    )


async def _spin() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Holder:
    """Holds one queue slot until released; records the order slots were granted."""

    def __init__(self, queue: AdmissionQueue, served: list[str]) -> None:
        self._queue = queue
        self._served = served
        self._release: dict[str, asyncio.Event] = {}

    def enter(
        self,
        name: str,
        priority: Priority,
        deadline: float | None = None,
        model: str = MODEL,
    ) -> asyncio.Task[None]:
        release = self._release[name] = asyncio.Event()

        async def hold() -> None:
            async with self._queue.slot(model, priority, deadline):
                self._served.append(name)
                await release.wait()

        return asyncio.create_task(hold())

    def release(self, name: str) -> None:
        self._release[name].set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served() -> list[str]:
    return []


async def test_admits_up_to_the_concurrency_at_once(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock, concurrency=2)
    holder = Holder(queue, served)
    tasks = [holder.enter(name, Priority.STANDARD) for name in ("a", "b", "c")]
    await _spin()

    assert served == ["a", "b"]
    assert queue.in_flight == 2
    assert queue.depth(Priority.STANDARD) == 1

    holder.release("a")
    await _spin()
    assert served == ["a", "b", "c"]
    for name in ("b", "c"):
        holder.release(name)
    await asyncio.gather(*tasks)
    assert queue.in_flight == 0
    assert queue.stats[Priority.STANDARD].admitted == 3


async def test_each_model_has_its_own_slots(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock)
    holder = Holder(queue, served)
    tasks = [
        holder.enter("mini", Priority.STANDARD),
        holder.enter("nano", Priority.STANDARD, model="gpt-4.1-nano"),
    ]
    await _spin()

    assert served == ["mini", "nano"]
    holder.release("mini")
    holder.release("nano")
    await asyncio.gather(*tasks)


async def test_waiters_are_served_by_priority_then_arrival(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock)
    holder = Holder(queue, served)
    tasks = [holder.enter("busy", Priority.STANDARD)]
    await _spin()
    for name, priority in [
        ("low", Priority.LOW),
        ("standard-1", Priority.STANDARD),
        ("critical", Priority.CRITICAL),
        ("standard-2", Priority.STANDARD),
    ]:
        tasks.append(holder.enter(name, priority))
    await _spin()

    for name in ("busy", "critical", "standard-1", "standard-2", "low"):
        holder.release(name)
        await _spin()
    await asyncio.gather(*tasks)

    assert served == ["busy", "critical", "standard-1", "standard-2", "low"]


async def test_waiting_lifts_a_request_so_low_priorities_do_not_starve(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock)
    holder = Holder(queue, served)
    tasks = [holder.enter("busy", Priority.STANDARD), holder.enter("low", Priority.LOW)]
    await _spin()
    # Three aging periods lift LOW (4) to REALTIME's rank (1); it came first.
    clock.advance(3 * AGING_SECONDS)
    tasks.append(holder.enter("realtime", Priority.REALTIME))
    await _spin()

    for name in ("busy", "low", "realtime"):
        holder.release(name)
        await _spin()
    await asyncio.gather(*tasks)

    assert served == ["busy", "low", "realtime"]


async def test_a_full_queue_refuses_at_once_with_a_wait_estimate(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock, depth=1)
    holder = Holder(queue, served)
    tasks = [
        holder.enter("busy", Priority.STANDARD),
        holder.enter("wait", Priority.LOW),
    ]
    await _spin()

    with pytest.raises(ResourceExhaustedError) as raised:
        async with queue.slot(MODEL, Priority.CRITICAL, None):
            pytest.fail("admitted past a full queue")

    assert raised.value.reason == "QUEUE_FULL"
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 0
    assert queue.stats[Priority.CRITICAL].rejected == 1
    for name in ("busy", "wait"):
        holder.release(name)
        await _spin()
    await asyncio.gather(*tasks)


async def test_a_request_past_its_deadline_is_not_admitted(clock: FakeClock) -> None:
    queue = _queue(clock)

    with pytest.raises(DeadlineExceededError):
        async with queue.slot(MODEL, Priority.STANDARD, clock.monotonic()):
            pytest.fail("admitted past its deadline")

    assert queue.stats[Priority.STANDARD].expired == 1
    assert queue.in_flight == 0


async def test_a_cancelled_waiter_leaves_no_trace(
    clock: FakeClock, served: list[str]
) -> None:
    queue = _queue(clock)
    holder = Holder(queue, served)
    busy = holder.enter("busy", Priority.STANDARD)
    waiter = holder.enter("gone", Priority.STANDARD)
    await _spin()
    assert queue.depth(Priority.STANDARD) == 1

    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    holder.release("busy")
    await busy

    assert queue.depth(Priority.STANDARD) == 0
    assert queue.in_flight == 0
    assert served == ["busy"]
    async with queue.slot(MODEL, Priority.STANDARD, None):
        assert queue.in_flight == 1
