"""Shared set-ups of the cache's unit tests: a cache with a semantic tier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from services.cache.adapters.memory import MemoryExactStore, MemoryVectorIndex
from services.cache.adapters.qdrant_edge import QdrantEdgeIndex
from services.cache.domain import (
    Answer,
    CacheableRequest,
    ResponseCache,
    SemanticControl,
    SemanticPolicy,
    SemanticTier,
    Usage,
)
from services.cache.ports import Embedder, PairJudge, VectorIndex
from services.cache.verification import Verdict, verify
from services.core.clock import Clock, FakeClock

CACHED = CacheableRequest(
    tenant_id="acme",
    model="gpt-4.1-mini",
    instructions="Be brief.",
    input="how do I reset my password for the portal",
    temperature=0.0,
)
ANSWER = Answer(
    output_text="Settings > Security.", model="gpt-4.1-mini", usage=Usage(9, 0, 4)
)


def semantic_cache(
    embedder: Embedder,
    policy: SemanticPolicy,
    *,
    index: VectorIndex | None = None,
    clock: Clock | None = None,
    judge: PairJudge | None = None,
    control: SemanticControl | None = None,
    verifier: Callable[[str, str, str], Verdict] = verify,
) -> ResponseCache:
    """A cache in memory with a semantic tier (an in-memory index unless given)."""
    return ResponseCache(
        MemoryExactStore(1_000_000),
        clock or FakeClock(),
        default_ttl_seconds=600,
        max_ttl_seconds=3600,
        semantic=SemanticTier(embedder, index or MemoryVectorIndex(), policy, judge),
        control=control,
        verifier=verifier,
    )


@asynccontextmanager
async def edge_cache(
    embedder: Embedder, policy: SemanticPolicy, state_dir: Path
) -> AsyncIterator[ResponseCache]:
    """:func:`semantic_cache` over an embedded Qdrant Edge index, closed after."""
    dimension = embedder.dimension
    index = await QdrantEdgeIndex.open(dimension=dimension, state_dir=state_dir)
    try:
        yield semantic_cache(embedder, policy, index=index)
    finally:
        await index.close()


async def store_answer(
    cache: ResponseCache, request: CacheableRequest = CACHED, answer: Answer = ANSWER
) -> None:
    """Store ``answer`` for ``request`` as a complete answer without tool calls."""
    result = await cache.store(request, answer, complete=True, has_tool_calls=False)
    assert result.stored
