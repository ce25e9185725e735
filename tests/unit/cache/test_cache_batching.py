"""The embedding micro-batcher: shared runs, and no work for callers that gave up."""

from __future__ import annotations

import asyncio

import pytest

from services.cache.adapters.batching import MicroBatcher, Vector


class _GatedEmbedder:
    """Embeds each text as [its length]; every run waits for the gate to open.

    A run that holds a text of ``crashing`` fails.
    """

    def __init__(self, crashing: frozenset[str] = frozenset()) -> None:
        self.runs: list[list[str]] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self._crashing = crashing

    async def run(self, texts: list[str]) -> list[Vector]:
        self.runs.append(list(texts))
        self.started.set()
        await self.gate.wait()
        if self._crashing.intersection(texts):
            raise RuntimeError("model crashed")
        return [[float(len(text))] for text in texts]


async def test_texts_queued_during_a_run_share_the_next_run() -> None:
    embedder = _GatedEmbedder()
    batcher = MicroBatcher(embedder.run)
    first = asyncio.create_task(batcher.embed(["a"]))
    await embedder.started.wait()
    queued = [asyncio.create_task(batcher.embed([t])) for t in ("bb", "ccc", "dddd")]
    await asyncio.sleep(0)

    embedder.gate.set()

    assert await first == [[1.0]]
    assert [await task for task in queued] == [[[2.0]], [[3.0]], [[4.0]]]
    assert embedder.runs == [["a"], ["bb", "ccc", "dddd"]]


async def test_a_caller_that_gave_up_while_queued_is_not_embedded() -> None:
    embedder = _GatedEmbedder()
    batcher = MicroBatcher(embedder.run)
    first = asyncio.create_task(batcher.embed(["a"]))
    await embedder.started.wait()
    abandoned = asyncio.create_task(batcher.embed(["gone"]))
    kept = asyncio.create_task(batcher.embed(["kept"]))
    await asyncio.sleep(0)
    abandoned.cancel()  # as when the Lookup's deadline passes

    embedder.gate.set()

    assert await first == [[1.0]]
    assert await kept == [[4.0]]
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert embedder.runs == [["a"], ["kept"]]


async def test_a_failed_run_fails_its_callers_and_the_next_run_still_happens() -> None:
    embedder = _GatedEmbedder(crashing=frozenset({"a"}))
    batcher = MicroBatcher(embedder.run)
    failing = asyncio.create_task(batcher.embed(["a"]))
    await embedder.started.wait()
    later = asyncio.create_task(batcher.embed(["bb"]))
    await asyncio.sleep(0)

    embedder.gate.set()
    with pytest.raises(RuntimeError):
        await failing

    assert await later == [[2.0]]
    assert embedder.runs == [["a"], ["bb"]]
    await batcher.close()
