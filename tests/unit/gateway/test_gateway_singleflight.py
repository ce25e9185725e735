"""SingleFlight: identical in-flight work runs once."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.singleflight import SingleFlight


class Work:
    """Counts its runs and finishes when ``gate`` opens."""

    def __init__(self, result: str = "answer") -> None:
        self.result = result
        self.runs = 0
        self.gate = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> str:
        self.runs += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.result


async def _spin() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_concurrent_callers_of_one_key_share_one_run() -> None:
    flights: SingleFlight[str] = SingleFlight()
    work = Work()
    first = asyncio.create_task(flights.do("k", work))
    second = asyncio.create_task(flights.do("k", work))
    await _spin()

    work.gate.set()

    assert await first == ("answer", False)
    assert await second == ("answer", True)
    assert work.runs == 1
    assert len(flights) == 0


async def test_different_keys_run_apart() -> None:
    flights: SingleFlight[str] = SingleFlight()
    a, b = Work("a"), Work("b")
    tasks = [
        asyncio.create_task(flights.do("a", a)),
        asyncio.create_task(flights.do("b", b)),
    ]
    await _spin()
    assert len(flights) == 2

    a.gate.set()
    b.gate.set()

    assert await asyncio.gather(*tasks) == [("a", False), ("b", False)]


async def test_a_finished_key_runs_again() -> None:
    flights: SingleFlight[str] = SingleFlight()
    work = Work()
    work.gate.set()

    assert await flights.do("k", work) == ("answer", False)
    assert await flights.do("k", work) == ("answer", False)
    assert work.runs == 2


async def test_a_failure_reaches_every_caller() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()

    async def failing() -> str:
        await gate.wait()
        raise RuntimeError("upstream down")

    tasks = [asyncio.create_task(flights.do("k", failing)) for _ in range(2)]
    await _spin()
    gate.set()

    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert len(flights) == 0


async def test_one_impatient_caller_does_not_cancel_the_others() -> None:
    flights: SingleFlight[str] = SingleFlight()
    work = Work()
    impatient = asyncio.create_task(flights.do("k", work))
    patient = asyncio.create_task(flights.do("k", work))
    await _spin()

    impatient.cancel()
    await _spin()
    work.gate.set()

    assert await patient == ("answer", True)
    assert impatient.cancelled()
    assert not work.cancelled


async def test_the_last_caller_leaving_cancels_the_work() -> None:
    flights: SingleFlight[str] = SingleFlight()
    work = Work()
    only = asyncio.create_task(flights.do("k", work))
    await _spin()

    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    await _spin()

    assert work.cancelled
    assert len(flights) == 0
