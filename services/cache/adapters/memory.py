"""The in-process exact store: an LRU bounded in bytes.

Each entry is accounted at :attr:`CacheEntry.size_bytes`; a put evicts least
recently used entries until the total fits the bound again. All methods run to
completion without awaiting, so they are atomic on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from services.cache.domain import CacheEntry
from services.cache.ports import PutResult, StoreUsage


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
