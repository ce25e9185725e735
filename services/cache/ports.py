"""The cache's ports: exact storage, embeddings and the vector index.

The exact tier stores whole entries by key (in process or in Redis). The semantic
tier embeds the user's text (locally or through OpenAI) and keeps one point per
entry in a vector index (Qdrant Edge in process, or a Qdrant server) whose hard
filters keep tenants, models, instructions and parameters apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.cache.domain import CacheEntry, SemanticCandidate, SemanticScope

Vector = Sequence[float]


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a put did: whether the entry was kept and how many entries it evicted."""

    stored: bool
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """The exact store's current size against its bound.

    ``backend_evictions`` counts evictions the backend made on its own (Redis under
    maxmemory), which no put reports.
    """

    entries: int
    bytes_used: int
    capacity_bytes: int
    backend_evictions: int = 0


class ExactStore(Protocol):
    """Entries by exact key, bounded in bytes, least recently used evicted first.

    Expiry is the caller's business: the store keeps ``expires_at`` and removes
    expired entries when asked, but does not read a clock.
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

    async def delete_expired(self, now: float) -> int:
        """Remove every entry whose ``expires_at`` is at or before ``now``."""
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

    async def close(self) -> None:
        """Release connections."""
        ...


class Embedder(Protocol):
    """Turns texts into unit vectors; the same text always gives the same vector."""

    @property
    def version(self) -> str:
        """The model and its exact weights.

        A hard filter of the index, so vectors of two models are never compared.
        """
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One L2-normalised vector per text, in order."""
        ...

    async def ping(self) -> bool:
        """Whether embeddings can be made, for health checks."""
        ...

    async def close(self) -> None:
        """Release the model or the connection."""
        ...


class PairJudge(Protocol):
    """Judges whether a cached question's answer serves a new question.

    Asked only about a candidate the verification guard's vetoes let through and
    its word alignment could not explain (``services/cache/verification.py``).
    """

    @property
    def version(self) -> str:
        """The model and its exact weights."""
        ...

    async def score(self, query: str, cached: str) -> float:
        """P(the answer cached for ``cached`` serves ``query``), in [0, 1]."""
        ...

    async def close(self) -> None:
        """Release the model."""
        ...


class VectorIndex(Protocol):
    """One point per semantic entry, searched by cosine under hard filters.

    A search returns only points whose scope equals the query's (tenant, model,
    instructions hash, parameters hash, embedding version) and whose
    ``expires_at`` is after ``now``.
    """

    @property
    def backend(self) -> str:
        """The backend's name for statistics ("qdrant-edge", "qdrant", "memory")."""
        ...

    async def upsert(
        self,
        scope: SemanticScope,
        query: str,
        entry: CacheEntry,
        vector: Vector,
        *,
        fingerprint: str,
    ) -> None:
        """Insert or replace the point of ``entry.key``.

        ``fingerprint`` (the guard's, of ``query``) comes back with the point's
        :class:`~services.cache.domain.SemanticCandidate`.
        """
        ...

    async def search(
        self,
        vector: Vector,
        scope: SemanticScope,
        *,
        now: float,
        limit: int,
        min_similarity: float,
    ) -> list[SemanticCandidate]:
        """Up to ``limit`` live points of ``scope`` at or above the similarity.

        Most similar first.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove the point of ``key``; whether there was one."""
        ...

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every point of ``tenant_id``; how many went."""
        ...

    async def delete_model(self, model: str) -> int:
        """Remove every point requested from or produced by ``model``."""
        ...

    async def delete_expired(self, now: float) -> int:
        """Remove every point whose ``expires_at`` is at or before ``now``."""
        ...

    async def clear(self) -> int:
        """Remove every point; how many went."""
        ...

    async def count(self) -> int:
        """Points in the index, expired ones not yet swept included."""
        ...

    async def ping(self) -> bool:
        """Whether the index answers, for health checks."""
        ...

    async def close(self) -> None:
        """Flush and release the index."""
        ...
