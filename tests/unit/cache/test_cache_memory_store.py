from __future__ import annotations

import pytest

from services.cache.adapters.memory import MemoryExactStore
from services.cache.domain import ENTRY_OVERHEAD_BYTES, Answer, CacheEntry, Usage


def _entry(
    key: str,
    text: str = "x" * 100,
    *,
    tenant_id: str = "acme",
    model: str = "gpt-4.1-mini",
    answer_model: str = "gpt-4.1-mini-2025-04-14",
) -> CacheEntry:
    return CacheEntry(
        key=key,
        tenant_id=tenant_id,
        request_model=model,
        answer=Answer(output_text=text, model=answer_model, usage=Usage()),
        created_at=0.0,
        expires_at=3600.0,
    )


def test_entry_size_counts_utf8_strings_and_overhead() -> None:
    entry = _entry("k", "é€", tenant_id="t", model="m", answer_model="mm")
    assert entry.size_bytes == ENTRY_OVERHEAD_BYTES + 1 + 1 + 1 + 2 + (2 + 3)


async def test_usage_tracks_entries_and_bytes() -> None:
    store = MemoryExactStore(max_bytes=10_000)
    a, b = _entry("a"), _entry("b", "y" * 10)
    await store.put(a)
    await store.put(b)
    usage = await store.usage()
    assert (usage.entries, usage.bytes_used, usage.capacity_bytes) == (
        2,
        a.size_bytes + b.size_bytes,
        10_000,
    )


async def test_replacing_a_key_does_not_double_count() -> None:
    store = MemoryExactStore(max_bytes=10_000)
    await store.put(_entry("a", "short"))
    replacement = _entry("a", "a much longer answer")
    await store.put(replacement)
    usage = await store.usage()
    assert (usage.entries, usage.bytes_used) == (1, replacement.size_bytes)
    assert await store.get("a") == replacement


async def test_evicts_least_recently_used_until_within_the_bound() -> None:
    size = _entry("a").size_bytes
    store = MemoryExactStore(max_bytes=3 * size)
    for key in ("a", "b", "c"):
        assert (await store.put(_entry(key))).evicted == 0
    assert await store.get("a") is not None  # "b" is now least recently used
    result = await store.put(_entry("d"))
    assert (result.stored, result.evicted) == (True, 1)
    assert await store.get("b") is None
    assert [k for k in "acd" if await store.get(k) is not None] == ["a", "c", "d"]
    assert (await store.usage()).bytes_used == 3 * size


async def test_a_large_entry_evicts_as_many_as_needed() -> None:
    small = _entry("a")
    store = MemoryExactStore(max_bytes=3 * small.size_bytes)
    for key in ("a", "b", "c"):
        await store.put(_entry(key))
    big = _entry("big", "z" * (100 + small.size_bytes // 2))  # 1.5 entries
    result = await store.put(big)
    assert result.evicted == 2
    usage = await store.usage()
    assert usage.entries == 2
    assert usage.bytes_used <= usage.capacity_bytes
    assert await store.get("a") is None
    assert await store.get("b") is None
    assert await store.get("c") is not None


async def test_an_entry_larger_than_the_bound_is_refused_without_evicting() -> None:
    store = MemoryExactStore(max_bytes=1_000)
    await store.put(_entry("a"))
    result = await store.put(_entry("huge", "h" * 1_000))
    assert (result.stored, result.evicted) == (False, 0)
    assert await store.get("huge") is None
    assert await store.get("a") is not None


async def test_entry_exactly_at_the_bound_fits() -> None:
    entry = _entry("a")
    store = MemoryExactStore(max_bytes=entry.size_bytes)
    assert (await store.put(entry)).stored


async def test_delete_by_tenant_and_model() -> None:
    store = MemoryExactStore(max_bytes=100_000)
    await store.put(_entry("1", tenant_id="acme", model="gpt-4.1-mini"))
    await store.put(_entry("2", tenant_id="acme", model="gpt-4.1"))
    await store.put(
        _entry("3", tenant_id="globex", model="gpt-4.1", answer_model="gpt-4.1-x")
    )
    await store.put(_entry("4", tenant_id="globex", model="o", answer_model="gpt-4.1"))
    assert await store.delete_tenant("acme") == 2
    assert await store.delete_model("gpt-4.1") == 2  # requested, or reported
    usage = await store.usage()
    assert (usage.entries, usage.bytes_used) == (0, 0)


async def test_delete_and_clear() -> None:
    store = MemoryExactStore(max_bytes=100_000)
    await store.put(_entry("a"))
    await store.put(_entry("b"))
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.clear() == 1
    assert (await store.usage()).bytes_used == 0


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryExactStore(max_bytes=0)
