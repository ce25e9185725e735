"""In-process adapters: the exact LRU bounded in bytes, and a test vector index.

Each exact entry is accounted at :attr:`CacheEntry.size_bytes`; a put evicts least
recently used entries until the total fits the bound again. All methods run to
completion without awaiting, so they are atomic on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from services.cache.domain import CacheEntry, SemanticCandidate, SemanticScope
from services.cache.ports import PutResult, StoreUsage, Vector


class MemoryExactStore:
    """An :class:`~services.cache.ports.ExactStore` in a ``collections.OrderedDict``.

    Args:
        max_bytes: the bound on the sum of the entries' sizes.
    """

    backend = "memory"

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._max_bytes = max_bytes
        # Least recently used first: a hit or a put moves the entry to the end.
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> CacheEntry | None:
        """The entry with ``key``, now the most recently used, or ``None``."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def put(self, entry: CacheEntry) -> PutResult:
        """Insert or replace ``entry``, then evict from the LRU end to fit."""
        if entry.size_bytes > self._max_bytes:
            return PutResult(stored=False)
        self._remove(entry.key)
        self._entries[entry.key] = entry
        self._bytes += entry.size_bytes
        evicted = 0
        while self._bytes > self._max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size_bytes
            evicted += 1
        return PutResult(stored=True, evicted=evicted)

    async def delete(self, key: str) -> bool:
        """Remove the entry with ``key``; whether there was one."""
        return self._remove(key)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every entry of ``tenant_id``."""
        return self._remove_where(lambda entry: entry.tenant_id == tenant_id)

    async def delete_model(self, model: str) -> int:
        """Remove every entry requested from or produced by ``model``."""
        return self._remove_where(lambda entry: entry.produced_by(model))

    async def delete_expired(self, now: float) -> int:
        """Remove every entry expired at ``now``."""
        return self._remove_where(lambda entry: entry.expires_at <= now)

    async def clear(self) -> int:
        """Remove every entry."""
        removed = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return removed

    async def usage(self) -> StoreUsage:
        """Entries, bytes used and the bound."""
        return StoreUsage(
            entries=len(self._entries),
            bytes_used=self._bytes,
            capacity_bytes=self._max_bytes,
        )

    async def ping(self) -> bool:
        """Always true: the store is this process's memory."""
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def _remove(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size_bytes
        return True

    def _remove_where(self, matches: Callable[[CacheEntry], bool]) -> int:
        keys = [key for key, entry in self._entries.items() if matches(entry)]
        for key in keys:
            self._remove(key)
        return len(keys)


class _Point(NamedTuple):
    scope: SemanticScope
    query: str
    fingerprint: str
    entry: CacheEntry
    vector: list[float]


class MemoryVectorIndex:
    """A :class:`~services.cache.ports.VectorIndex` scanning a dict, for tests.

    Exact cosine over every point of the scope: the fake of the domain and
    servicer tests; fine for thousands of points, not for production sizes.
    """

    backend = "memory"

    def __init__(self) -> None:
        self._points: dict[str, _Point] = {}

    async def upsert(
        self,
        scope: SemanticScope,
        query: str,
        entry: CacheEntry,
        vector: Vector,
        *,
        fingerprint: str,
    ) -> None:
        """Insert or replace the point of ``entry.key``."""
        self._points[entry.key] = _Point(scope, query, fingerprint, entry, list(vector))

    async def search(
        self,
        vector: Vector,
        scope: SemanticScope,
        *,
        now: float,
        limit: int,
        min_similarity: float,
    ) -> list[SemanticCandidate]:
        """The most similar live points of ``scope``."""
        found = [
            SemanticCandidate(point.query, point.entry, score, point.fingerprint)
            for point in self._points.values()
            if point.scope == scope and point.entry.expires_at > now
            for score in (_dot(vector, point.vector),)
            if score >= min_similarity
        ]
        found.sort(key=lambda candidate: -candidate.similarity)
        return found[:limit]

    async def delete(self, key: str) -> bool:
        """Remove the point of ``key``."""
        return self._points.pop(key, None) is not None

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every point of ``tenant_id``."""
        return self._delete_where(lambda entry: entry.tenant_id == tenant_id)

    async def delete_model(self, model: str) -> int:
        """Remove every point requested from or produced by ``model``."""
        return self._delete_where(lambda entry: entry.produced_by(model))

    async def delete_expired(self, now: float) -> int:
        """Remove every point expired at ``now``."""
        return self._delete_where(lambda entry: entry.expires_at <= now)

    async def clear(self) -> int:
        """Remove every point."""
        removed = len(self._points)
        self._points.clear()
        return removed

    async def count(self) -> int:
        """Points held."""
        return len(self._points)

    async def ping(self) -> bool:
        """Always true."""
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def _delete_where(self, matches: Callable[[CacheEntry], bool]) -> int:
        keys = [key for key, point in self._points.items() if matches(point.entry)]
        for key in keys:
            del self._points[key]
        return len(keys)


def _dot(a: Vector, b: Vector) -> float:
    # Both sides are unit vectors, so the dot product is the cosine.
    return sum(x * y for x, y in zip(a, b, strict=True))
