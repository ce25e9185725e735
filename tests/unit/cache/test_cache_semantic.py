from __future__ import annotations

import dataclasses

import pytest

from services.cache.domain import (
    LookupStatus,
    ResponseCache,
    SemanticPolicy,
    exact_key,
    semantic_ineligibility,
    semantic_scope,
)
from services.cache.verification import Verdict, fingerprint, verify
from services.core.clock import FakeClock
from tests.unit.cache.builders import ANSWER, CACHED, semantic_cache, store_answer
from tests.unit.cache.fakes import BagOfWordsEmbedder

PARAPHRASE = dataclasses.replace(
    CACHED, input="how can I reset my password for the portal"
)
POLICY = SemanticPolicy(similarity_threshold=0.6, top_k=3, max_temperature=0.7)


def _cache(
    clock: FakeClock, embedder: BagOfWordsEmbedder | None = None
) -> ResponseCache:
    return semantic_cache(embedder or BagOfWordsEmbedder(), POLICY, clock=clock)


async def test_a_verified_paraphrase_is_a_semantic_hit_with_similarity_and_age() -> (
    None
):
    clock = FakeClock()
    cache = _cache(clock)
    await store_answer(cache)
    clock.advance(42)
    found = await cache.lookup(PARAPHRASE)
    assert found.status is LookupStatus.SEMANTIC
    assert found.entry is not None and found.entry.answer == ANSWER
    assert 0.6 <= found.similarity < 1.0
    assert found.age_seconds == 42
    stats = await cache.stats()
    assert (stats.semantic_hits, stats.exact_hits, stats.misses) == (1, 0, 0)
    assert (stats.semantic_entries, stats.semantic_stores) == (1, 1)


async def test_exact_tier_answers_first() -> None:
    cache = _cache(FakeClock())
    await store_answer(cache)
    found = await cache.lookup(CACHED)
    assert (found.status, found.similarity) == (LookupStatus.EXACT, 1.0)


async def test_a_near_miss_above_the_threshold_is_rejected_and_counted() -> None:
    cache = _cache(FakeClock())
    await store_answer(
        cache, dataclasses.replace(CACHED, input="status of order 48213 please")
    )
    found = await cache.lookup(
        dataclasses.replace(CACHED, input="status of order 48231 please")
    )
    assert not found.hit
    assert found.rejected_candidates == 1
    stats = await cache.stats()
    assert stats.verification_rejections == 1
    assert stats.rejections_by_check == {"numbers": 1}
    assert stats.misses == 1


async def test_a_candidate_is_verified_with_the_fingerprint_stored_with_it() -> None:
    fingerprints = []

    def recording(query: str, cached: str, cached_fingerprint: str) -> Verdict:
        fingerprints.append(cached_fingerprint)
        return verify(query, cached, cached_fingerprint)

    cache = semantic_cache(BagOfWordsEmbedder(), POLICY, verifier=recording)
    await store_answer(cache)
    found = await cache.lookup(PARAPHRASE)
    assert found.status is LookupStatus.SEMANTIC
    assert fingerprints == [fingerprint(CACHED.input)]


class _FixedEmbedder(BagOfWordsEmbedder):
    """Vectors chosen by the test, so the order of candidates is known."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        super().__init__()
        self._vectors = vectors

    def _vector(self, text: str) -> list[float]:
        return self._vectors[text]


async def test_the_best_verified_candidate_of_the_top_k_wins() -> None:
    query = "price of plan 20 for teams"
    near_miss = "price of plan 10 for teams"
    agreeing = "what is the price of plan 20 for teams"
    embedder = _FixedEmbedder(
        {query: [1.0, 0.0], near_miss: [0.99, 0.141], agreeing: [0.95, 0.312]}
    )
    cache = _cache(FakeClock(), embedder)
    for text in (near_miss, agreeing):
        await store_answer(cache, dataclasses.replace(CACHED, input=text))
    found = await cache.lookup(dataclasses.replace(CACHED, input=query))
    assert found.status is LookupStatus.SEMANTIC
    assert found.rejected_candidates == 1
    assert found.similarity == pytest.approx(0.95)
    assert found.entry is not None
    assert found.entry.key == exact_key(dataclasses.replace(CACHED, input=agreeing))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exact_only_reason": "images"}, "images"),
        ({"exact_only_reason": "tool_result"}, "tool_result"),
        ({"temperature": 0.9}, "temperature"),
        ({"temperature": None}, "temperature"),  # unset is OpenAI's 1.0
        ({"input": "x" * 1001}, "long_input"),
        ({"input": "   "}, "empty_input"),
    ],
)
async def test_ineligible_requests_use_the_exact_tier_only(
    change: dict[str, object], reason: str
) -> None:
    request = dataclasses.replace(CACHED, **change)  # type: ignore[arg-type]
    assert semantic_ineligibility(request, POLICY) == reason
    embedder = BagOfWordsEmbedder()
    cache = _cache(FakeClock(), embedder)
    await store_answer(cache, request)
    assert (await cache.stats()).semantic_entries == 0
    assert (await cache.lookup(request)).status is LookupStatus.EXACT
    assert embedder.calls == 0


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "globex"},
        {"model": "gpt-4.1"},
        {"instructions": "Be verbose."},
        {"temperature": 0.5},
        {"max_output_tokens": 99},
        {"response_format_json": '{"type":"json_object"}'},
        {"tools_json": '[[["f","",{},false]],null,null]'},
        {"context_digest": "ab" * 32},
    ],
)
async def test_hard_filters_keep_scopes_apart(change: dict[str, object]) -> None:
    cache = _cache(FakeClock())
    await store_answer(cache)
    other = dataclasses.replace(PARAPHRASE, **change)  # type: ignore[arg-type]
    assert semantic_scope(other, "v") != semantic_scope(PARAPHRASE, "v")
    assert not (await cache.lookup(other)).hit


async def test_allow_semantic_false_skips_the_semantic_tier() -> None:
    cache = _cache(FakeClock())
    await store_answer(cache)
    assert not (await cache.lookup(PARAPHRASE, allow_semantic=False)).hit


async def test_semantic_ttl_is_absolute_and_the_sweep_removes_expired_points() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    await store_answer(cache)
    clock.advance(599)
    assert (await cache.lookup(PARAPHRASE)).hit  # a hit does not renew
    clock.advance(1)
    assert not (await cache.lookup(PARAPHRASE)).hit
    assert await cache.sweep() == 2  # the exact entry and the point
    stats = await cache.stats()
    assert (stats.exact_entries, stats.semantic_entries, stats.expired_removed) == (
        0,
        0,
        2,
    )


async def test_invalidation_reaches_both_tiers() -> None:
    cache = _cache(FakeClock())
    await store_answer(cache)
    await store_answer(cache, dataclasses.replace(CACHED, tenant_id="globex"))
    removed = await cache.invalidate_tenant("globex")
    assert (removed.exact, removed.semantic) == (1, 1)
    assert not (
        await cache.lookup(dataclasses.replace(PARAPHRASE, tenant_id="globex"))
    ).hit
    removed = await cache.invalidate_model(ANSWER.model)
    assert (removed.exact, removed.semantic) == (1, 1)
    assert not (await cache.lookup(PARAPHRASE)).hit


async def test_refused_and_tool_call_answers_are_not_indexed() -> None:
    cache = _cache(FakeClock())
    refused = await cache.store(CACHED, ANSWER, complete=False, has_tool_calls=False)
    assert not refused.stored
    tool_call = await cache.store(CACHED, ANSWER, complete=True, has_tool_calls=True)
    assert (tool_call.stored, tool_call.semantic_indexed) == (True, False)
    assert (await cache.stats()).semantic_entries == 0
    assert not (await cache.lookup(PARAPHRASE)).hit


async def test_a_conversation_is_compared_only_with_the_same_earlier_turns() -> None:
    cache = _cache(FakeClock())
    earlier = dataclasses.replace(CACHED, multi_turn=True, context_digest="a" * 64)
    result = await cache.store(earlier, ANSWER, complete=True, has_tool_calls=False)
    assert result.semantic_indexed
    same_turns = dataclasses.replace(
        PARAPHRASE, multi_turn=True, context_digest="a" * 64
    )
    other_turns = dataclasses.replace(same_turns, context_digest="b" * 64)
    assert (await cache.lookup(same_turns)).status is LookupStatus.SEMANTIC
    assert not (await cache.lookup(other_turns)).hit


async def test_a_failing_semantic_tier_degrades_to_a_miss() -> None:
    embedder = BagOfWordsEmbedder()
    cache = _cache(FakeClock(), embedder)
    await store_answer(cache)
    embedder.fail = True
    found = await cache.lookup(PARAPHRASE)
    assert not found.hit
    assert (await cache.lookup(CACHED)).status is LookupStatus.EXACT
    assert (await cache.stats()).semantic_errors == 1


async def test_a_lookup_miss_then_store_embeds_the_input_once() -> None:
    embedder = BagOfWordsEmbedder()
    cache = _cache(FakeClock(), embedder)
    await cache.lookup(CACHED)
    await store_answer(cache)
    assert embedder.calls == 1
