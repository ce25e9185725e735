from __future__ import annotations

import asyncio

import pytest

from services.costs.batching import GroupCommit


class _Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self._fail_on = fail_on

    async def flush(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self._fail_on in items:
            raise OSError("disk gone")
        return [item * 10 for item in items]


async def test_submissions_during_a_flush_share_the_next_one() -> None:
    recorder = _Recorder()
    group = GroupCommit(recorder.flush, max_batch=100)

    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0)  # the first flush starts with item 0 alone
    rest = [asyncio.create_task(group.submit(i)) for i in range(1, 8)]
    await asyncio.sleep(0)
    recorder.release.set()

    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50, 60, 70]
    assert recorder.batches == [[0], [1, 2, 3, 4, 5, 6, 7]]


async def test_a_batch_never_exceeds_its_maximum() -> None:
    recorder = _Recorder()
    recorder.release.set()
    group = GroupCommit(recorder.flush, max_batch=3)

    results = await asyncio.gather(*(group.submit(i) for i in range(8)))

    assert results == [i * 10 for i in range(8)]
    assert [len(batch) for batch in recorder.batches] == [3, 3, 2]


async def test_a_failed_flush_fails_its_batch_only() -> None:
    recorder = _Recorder(fail_on=1)
    recorder.release.set()
    group = GroupCommit(recorder.flush, max_batch=2)

    results = await asyncio.gather(
        *(group.submit(i) for i in range(4)), return_exceptions=True
    )
    await group.wait_idle()

    assert [type(r).__name__ for r in results[:2]] == ["OSError", "OSError"]
    assert results[2:] == [20, 30]


def test_a_batch_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(_Recorder().flush, max_batch=0)
