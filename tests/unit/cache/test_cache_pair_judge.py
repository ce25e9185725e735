"""The pair judge decides only what every veto let through and the words left open."""

from __future__ import annotations

import dataclasses

from services.cache.domain import (
    LookupStatus,
    ResponseCache,
    SemanticControl,
    SemanticMode,
    SemanticPolicy,
)
from tests.unit.cache.builders import ANSWER, CACHED, semantic_cache, store_answer
from tests.unit.cache.fakes import BagOfWordsEmbedder, ScriptedPairJudge

# The rules cannot pair "change my login secret" with "reset my password".
REWORDED = dataclasses.replace(
    CACHED, input="how do I change my login secret for the portal"
)


def _cache(
    judge: ScriptedPairJudge, mode: SemanticMode = SemanticMode.SERVE
) -> ResponseCache:
    return semantic_cache(
        BagOfWordsEmbedder(),
        SemanticPolicy(similarity_threshold=0.5, top_k=3, judge_threshold=0.9),
        judge=judge,
        control=SemanticControl(mode, 0.5),
    )


async def test_a_candidate_the_judge_accepts_is_served_as_a_judge_hit() -> None:
    judge = ScriptedPairJudge({CACHED.input: 0.97})
    cache = _cache(judge)
    await store_answer(cache)
    found = await cache.lookup(REWORDED)
    assert found.status is LookupStatus.SEMANTIC
    assert found.accepted_check == "judge"
    assert found.entry is not None and found.entry.answer == ANSWER
    assert found.rejected_candidates == 0
    assert judge.asked == [(REWORDED.input, CACHED.input)]
    stats = await cache.stats()
    assert stats.semantic_hits_by_check == {"judge": 1}
    assert stats.rejections_by_check == {}


async def test_a_score_below_the_threshold_is_a_miss_counted_as_the_judges() -> None:
    judge = ScriptedPairJudge({CACHED.input: 0.89})
    cache = _cache(judge)
    await store_answer(cache)
    found = await cache.lookup(REWORDED)
    assert not found.hit
    assert found.rejected_candidates == 1
    stats = await cache.stats()
    assert stats.rejections_by_check == {"judge": 1}


async def test_a_vetoed_candidate_never_reaches_the_judge() -> None:
    judge = ScriptedPairJudge({"status of order 48213 please": 1.0})
    cache = _cache(judge)
    await store_answer(
        cache, dataclasses.replace(CACHED, input="status of order 48213 please")
    )
    found = await cache.lookup(
        dataclasses.replace(CACHED, input="status of order 48231 please")
    )
    assert not found.hit
    assert judge.asked == []


async def test_one_judge_run_per_lookup_for_the_most_similar_candidate() -> None:
    website = dataclasses.replace(
        CACHED, input="how do I reset my password for the website"
    )
    judge = ScriptedPairJudge({})
    cache = _cache(judge)
    await store_answer(cache)
    await store_answer(cache, website)
    found = await cache.lookup(REWORDED)
    assert not found.hit
    assert found.rejected_candidates == 2
    assert judge.asked == [(REWORDED.input, CACHED.input)]


async def test_a_failing_judge_degrades_the_lookup_to_a_miss() -> None:
    judge = ScriptedPairJudge({CACHED.input: 1.0})
    judge.fail = True
    cache = _cache(judge)
    await store_answer(cache)
    found = await cache.lookup(REWORDED)
    assert not found.hit
    assert (await cache.stats()).semantic_errors == 1


async def test_in_shadow_mode_a_judge_hit_is_a_shadow_hit() -> None:
    cache = _cache(ScriptedPairJudge({CACHED.input: 0.99}), SemanticMode.SHADOW)
    await store_answer(cache)
    found = await cache.lookup(REWORDED)
    assert not found.hit
    assert (found.shadow_hit, found.accepted_check) == (True, "judge")
