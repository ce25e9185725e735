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


def test_linger_is_never_negative() -> None:
    with pytest.raises(ValueError, match="linger"):
        GroupCommit(_Recorder().flush, max_batch=1, linger=-0.001)


async def test_under_load_a_flush_waits_for_more_until_the_batch_is_full() -> None:
    recorder = _Recorder()
    recorder.release.set()
    group = GroupCommit(recorder.flush, max_batch=3, linger=5.0)
    loop = asyncio.get_running_loop()

    assert await group.submit(0) == 0  # idle: flushed at once
    started = loop.time()
    staggered = []
    for item in (1, 2, 3):
        staggered.append(asyncio.create_task(group.submit(item)))
        await asyncio.sleep(0.01)  # arrivals spread out, as requests are

    assert await asyncio.gather(*staggered) == [10, 20, 30]
    # Without lingering each arrival would be its own commit; a full batch does
    # not wait out the 5 s.
    assert recorder.batches == [[0], [1, 2, 3]]
    assert loop.time() - started < 2.5


async def test_under_load_a_flush_waits_at_most_its_linger() -> None:
    recorder = _Recorder()
    recorder.release.set()
    group = GroupCommit(recorder.flush, max_batch=100, linger=0.05)
    loop = asyncio.get_running_loop()

    await group.submit(0)
    started = loop.time()
    assert await group.submit(1) == 10
    waited = loop.time() - started

    assert recorder.batches == [[0], [1]]
    assert 0.04 <= waited < 2.0


async def test_after_a_quiet_spell_a_lone_submission_is_flushed_at_once() -> None:
    recorder = _Recorder()
    recorder.release.set()
    group = GroupCommit(recorder.flush, max_batch=100, linger=0.1)
    loop = asyncio.get_running_loop()

    await group.submit(0)
    await asyncio.sleep(0.15)  # longer than the linger since the last commit
    started = loop.time()
    assert await group.submit(1) == 10

    assert loop.time() - started < 0.1
    assert recorder.batches == [[0], [1]]
