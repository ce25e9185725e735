from __future__ import annotations

import dataclasses

import pytest

from services.cache.adapters.memory import MemoryExactStore
from services.cache.domain import (
    Answer,
    CacheableRequest,
    ResponseCache,
    StoreOutcome,
    Usage,
    exact_key,
)
from services.core.clock import FakeClock
from services.core.conversation import FinishReason, ToolCall

REQUEST = CacheableRequest(
    tenant_id="acme", model="gpt-4.1-mini", input="What is 2 + 2?", temperature=0.0
)
ANSWER = Answer(
    output_text="4",
    model="gpt-4.1-mini-2025-04-14",
    usage=Usage(input_tokens=12, cached_input_tokens=0, output_tokens=1),
)


def _cache(
    clock: FakeClock,
    *,
    max_bytes: int = 1_000_000,
    default_ttl: float = 3600.0,
    max_ttl: float = 86400.0,
) -> ResponseCache:
    return ResponseCache(
        MemoryExactStore(max_bytes),
        clock,
        default_ttl_seconds=default_ttl,
        max_ttl_seconds=max_ttl,
    )


async def _store(
    cache: ResponseCache,
    request: CacheableRequest = REQUEST,
    answer: Answer = ANSWER,
    ttl: float | None = None,
) -> StoreOutcome:
    result = await cache.store(
        request, answer, complete=True, has_tool_calls=False, ttl_seconds=ttl
    )
    return result.outcome


async def test_store_then_lookup_returns_the_answer_and_times() -> None:
    clock = FakeClock()
    cache = _cache(clock)
    stored = await cache.store(REQUEST, ANSWER, complete=True, has_tool_calls=False)
    assert stored.stored
    assert stored.key == exact_key(REQUEST)
    clock.advance(5)
    result = await cache.lookup(REQUEST)
    assert result.hit
    assert result.key == stored.key
    assert result.entry is not None
    assert result.entry.answer == ANSWER
    assert result.entry.created_at == clock.now() - 5
    assert result.entry.expires_at == clock.now() - 5 + 3600


async def test_miss_returns_the_key() -> None:
    result = await _cache(FakeClock()).lookup(REQUEST)
    assert not result.hit
    assert result.key == exact_key(REQUEST)


async def test_tenants_are_isolated() -> None:
    cache = _cache(FakeClock())
    await _store(cache)
    other = dataclasses.replace(REQUEST, tenant_id="globex")
    assert not (await cache.lookup(other)).hit


async def test_an_answer_without_a_model_reports_the_requested_one() -> None:
    cache = _cache(FakeClock())
    await _store(cache, answer=dataclasses.replace(ANSWER, model=""))
    entry = (await cache.lookup(REQUEST)).entry
    assert entry is not None
    assert entry.answer.model == REQUEST.model


async def test_ttl_is_absolute_and_hits_do_not_extend_it() -> None:
    clock = FakeClock()
    cache = _cache(clock, default_ttl=100)
    await _store(cache)
    clock.advance(99.999)
    assert (await cache.lookup(REQUEST)).hit  # a hit just before expiry
    clock.advance(0.001)
    assert not (await cache.lookup(REQUEST)).hit
    stats = await cache.stats()
    assert (stats.exact_hits, stats.misses, stats.exact_entries) == (1, 1, 0)
    assert stats.exact_bytes == 0


async def test_requested_ttl_is_used_and_capped() -> None:
    clock = FakeClock()
    cache = _cache(clock, default_ttl=100, max_ttl=1000)
    short = dataclasses.replace(REQUEST, input="short")
    await _store(cache, short, ttl=10)
    await _store(cache, ttl=5000)
    clock.advance(10)
    assert not (await cache.lookup(short)).hit
    entry = (await cache.lookup(REQUEST)).entry
    assert entry is not None
    assert entry.expires_at - entry.created_at == 1000
    clock.advance(990)
    assert not (await cache.lookup(REQUEST)).hit


@pytest.mark.parametrize(
    ("complete", "has_tool_calls", "text", "outcome"),
    [
        (False, False, "4", StoreOutcome.REFUSED_INCOMPLETE),
        (False, True, "", StoreOutcome.REFUSED_INCOMPLETE),
        (True, False, "", StoreOutcome.REFUSED_INCOMPLETE),
    ],
)
async def test_refusals_store_nothing(
    complete: bool, has_tool_calls: bool, text: str, outcome: StoreOutcome
) -> None:
    cache = _cache(FakeClock())
    result = await cache.store(
        REQUEST,
        dataclasses.replace(ANSWER, output_text=text),
        complete=complete,
        has_tool_calls=has_tool_calls,
    )
    assert (result.outcome, result.stored) == (outcome, False)
    assert result.key == exact_key(REQUEST)
    assert not (await cache.lookup(REQUEST)).hit
    assert (await cache.stats()).stores == 0


async def test_a_tool_call_answer_is_cached_for_the_exact_tier_only() -> None:
    cache = _cache(FakeClock())
    call = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
    answer = dataclasses.replace(
        ANSWER,
        output_text="",
        tool_calls=(call,),
        finish_reason=FinishReason.TOOL_CALLS,
    )
    result = await cache.store(REQUEST, answer, complete=True, has_tool_calls=True)
    assert (result.outcome, result.semantic_indexed) == (StoreOutcome.STORED, False)
    hit = await cache.lookup(REQUEST)
    assert hit.entry is not None
    assert hit.entry.answer.tool_calls == (call,)
    assert hit.entry.answer.finish_reason is FinishReason.TOOL_CALLS


async def test_an_entry_larger_than_the_bound_is_refused() -> None:
    cache = _cache(FakeClock(), max_bytes=1024)
    big = dataclasses.replace(ANSWER, output_text="x" * 1024)
    assert await _store(cache, answer=big) is StoreOutcome.REFUSED_TOO_LARGE
    stats = await cache.stats()
    assert (stats.stores, stats.exact_entries) == (0, 0)


async def test_evictions_are_counted() -> None:
    cache = _cache(FakeClock(), max_bytes=1024)
    text = "x" * 300  # about 600 bytes with the overhead: one entry fits
    first = dataclasses.replace(REQUEST, input="first")
    await _store(cache, first, answer=dataclasses.replace(ANSWER, output_text=text))
    await _store(cache, answer=dataclasses.replace(ANSWER, output_text=text))
    stats = await cache.stats()
    assert (stats.stores, stats.evictions, stats.exact_entries) == (2, 1, 1)
    assert not (await cache.lookup(first)).hit
    assert (await cache.lookup(REQUEST)).hit


async def test_invalidate_by_key_tenant_model_and_all() -> None:
    cache = _cache(FakeClock())
    requests = [
        REQUEST,
        dataclasses.replace(REQUEST, tenant_id="globex"),
        dataclasses.replace(REQUEST, tenant_id="globex", model="gpt-4.1"),
        dataclasses.replace(REQUEST, tenant_id="initech", input="other"),
    ]
    for request in requests:
        await _store(cache, request)
    assert (await cache.invalidate_key(exact_key(requests[3]))).total == 1
    assert (await cache.invalidate_key(exact_key(requests[3]))).total == 0
    assert (await cache.invalidate_tenant("globex")).total == 2
    assert not (await cache.lookup(requests[1])).hit
    assert (await cache.lookup(REQUEST)).hit
    await _store(cache, requests[2])
    assert (await cache.invalidate_model("gpt-4.1")).total == 1
    assert (await cache.lookup(REQUEST)).hit
    assert (await cache.invalidate_all()).total == 1
    assert (await cache.stats()).exact_entries == 0


async def test_invalidate_by_model_matches_the_reported_model() -> None:
    cache = _cache(FakeClock())
    await _store(cache)
    assert (await cache.invalidate_model(ANSWER.model)).exact == 1


async def test_stats_after_a_known_sequence() -> None:
    cache = _cache(FakeClock(), max_bytes=4096)
    await cache.lookup(REQUEST)
    await _store(cache)
    await cache.lookup(REQUEST)
    await cache.lookup(REQUEST)
    await cache.store(REQUEST, ANSWER, complete=False, has_tool_calls=False)
    stats = await cache.stats()
    assert (stats.exact_hits, stats.misses, stats.stores, stats.evictions) == (
        2,
        1,
        1,
        0,
    )
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert stats.exact_entries == 1
    assert stats.exact_capacity_bytes == 4096
    assert stats.exact_bytes > 0
    assert (stats.exact_backend, stats.semantic_backend) == ("memory", "disabled")
    assert (stats.semantic_hits, stats.verification_rejections) == (0, 0)


async def test_hit_rate_is_zero_before_any_lookup() -> None:
    assert (await _cache(FakeClock()).stats()).hit_rate == 0.0
