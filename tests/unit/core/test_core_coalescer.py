"""The coalescer: one batch in flight, what arrives meanwhile goes in the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.core.coalescer import Coalescer


class GatedTarget:
    """Records each batch and answers it only when the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.failure: Exception | None = None
        self.sent = asyncio.Condition()

    async def send(self, items: Sequence[int]) -> list[int | Exception]:
        async with self.sent:
            self.batches.append(list(items))
            self.sent.notify_all()
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return [item * 10 if item >= 0 else ValueError(f"bad {item}") for item in items]


async def _until_sent(target: GatedTarget, count: int) -> None:
    async with asyncio.timeout(2), target.sent:
        await target.sent.wait_for(lambda: len(target.batches) >= count)


async def test_an_item_alone_goes_at_once_and_gets_its_result() -> None:
    target = GatedTarget()
    target.gate.set()
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=8)

    assert await coalescer.call(4) == 40
    assert target.batches == [[4]]


async def test_items_arriving_while_a_batch_is_in_flight_go_together_next() -> None:
    target = GatedTarget()
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=8)

    first = asyncio.create_task(coalescer.call(1))
    await _until_sent(target, 1)
    waiting = [asyncio.create_task(coalescer.call(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert target.batches == [[1]]  # nothing more is sent while [1] is in flight
    target.gate.set()

    assert await asyncio.gather(first, *waiting) == [10, 20, 30, 40]
    assert target.batches == [[1], [2, 3, 4]]


async def test_a_batch_is_at_most_max_items() -> None:
    target = GatedTarget()
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=2)

    calls = [asyncio.create_task(coalescer.call(n)) for n in range(5)]
    target.gate.set()

    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40]
    assert target.batches == [[0, 1], [2, 3], [4]]


async def test_an_item_refused_fails_only_its_caller() -> None:
    target = GatedTarget()
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=8)

    calls = [asyncio.create_task(coalescer.call(n)) for n in (1, -2, 3)]
    target.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -2"
    assert target.batches == [[1, -2, 3]]


async def test_a_failed_batch_fails_all_its_callers_and_the_next_batch_goes() -> None:
    target = GatedTarget()
    target.failure = ConnectionError("down")
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=8)

    calls = [asyncio.create_task(coalescer.call(n)) for n in (1, 2)]
    target.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    target.failure = None

    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert await coalescer.call(5) == 50
    assert target.batches == [[1, 2], [5]]


async def test_a_cancelled_caller_s_item_is_still_sent() -> None:
    target = GatedTarget()
    coalescer: Coalescer[int, int] = Coalescer(target.send, max_items=8)

    first = asyncio.create_task(coalescer.call(1))
    await _until_sent(target, 1)
    abandoned = asyncio.create_task(coalescer.call(2))
    await asyncio.sleep(0)
    abandoned.cancel()
    target.gate.set()

    assert await first == 10
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await _until_sent(target, 2)
    assert target.batches == [[1], [2]]


def test_max_items_must_be_positive() -> None:
    async def send(items: Sequence[int]) -> list[int | Exception]:
        return list(items)

    with pytest.raises(ValueError, match="max_items"):
        Coalescer(send, max_items=0)
