"""The cache's storage ports.

The exact tier stores whole entries by key (in process, or Redis later). The
semantic tier will add a ``VectorIndex`` port beside it; nothing here assumes there
is only one tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.cache.domain import CacheEntry


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a put did: whether the entry was kept and how many entries it evicted."""

    stored: bool
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """The exact store's current size against its bound."""

    entries: int
    bytes_used: int
    capacity_bytes: int


class ExactStore(Protocol):
    """Entries by exact key, bounded in bytes, least recently used evicted first.

    Expiry is the caller's business: the store keeps ``expires_at`` but does not
    read a clock.
    """

    @property
    def backend(self) -> str:
        """The backend's name for statistics ("memory", "redis")."""
        ...

    async def get(self, key: str) -> CacheEntry | None:
        """The entry with ``key``, marked as most recently used, or ``None``."""
        ...

    async def put(self, entry: CacheEntry) -> PutResult:
        """Insert or replace ``entry``, evicting as needed to stay within bounds.

        An entry larger than the whole bound is not stored (``stored=False``).
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove the entry with ``key``; whether there was one."""
        ...

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every entry of ``tenant_id``; how many went."""
        ...

    async def delete_model(self, model: str) -> int:
        """Remove every entry requested from or produced by ``model``; how many."""
        ...

    async def clear(self) -> int:
        """Remove every entry; how many went."""
        ...

    async def usage(self) -> StoreUsage:
        """Entries, bytes used and the byte bound."""
        ...

    async def ping(self) -> bool:
        """Whether the backend answers, for health checks."""
        ...
