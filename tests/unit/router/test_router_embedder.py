"""The router's lazy embedder keeps a load that a caller gave up on."""

import asyncio

import pytest

from services.router.adapters.embedder import LazyOnnxEmbedder


async def test_a_caller_timing_out_mid_load_does_not_throw_the_model_away() -> None:
    embedder = LazyOnnxEmbedder()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(embedder.embed(["warm"]), timeout=0.001)
        assert embedder._loading is not None
        await asyncio.wait_for(embedder._loading, timeout=60)  # still running
        assert embedder._embedder is not None  # loaded once, for the next caller
        (vector,) = await embedder.embed(["warm"])
        assert len(vector) == 384
    finally:
        await embedder.close()
