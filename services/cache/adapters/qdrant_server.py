"""The semantic index on a Qdrant server (or cluster), through ``qdrant-client``.

For more than one cache replica: the server owns the index, builds it in its own
background optimizers and is shared by every replica. The collection (cosine
vectors, payload indexes on the hard-filter fields, the tenant field marked as the
tenant partition) is created on first use if it does not exist.

``AsyncQdrantClient(":memory:")`` (local mode) stands in for a server in tests; it
ignores payload indexes and scans, so it is never a production backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ApiException

from services.cache.adapters.points import (
    EXPIRES_FIELD,
    KEYWORD_FIELDS,
    SCOPE_FIELD,
    TENANT_FIELD,
    candidate,
    point_id,
    scope_key,
    to_payload,
)
from services.cache.domain import CacheEntry, SemanticCandidate, SemanticScope
from services.cache.ports import Vector
from services.core.errors import BackendUnavailableError

T = TypeVar("T")


def _equal(**fields: str) -> list[models.Condition]:
    return [
        models.FieldCondition(key=name, match=models.MatchValue(value=value))
        for name, value in fields.items()
    ]


class QdrantServerIndex:
    """A :class:`~services.cache.ports.VectorIndex` in a Qdrant collection.

    Use :meth:`open`.
    """

    backend = "qdrant"

    def __init__(self, client: AsyncQdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    @classmethod
    async def open(
        cls, client: AsyncQdrantClient, collection: str, dimension: int
    ) -> QdrantServerIndex:
        """Use ``collection``, creating it with its payload indexes if missing."""
        index = cls(client, collection)
        await index._call(lambda: index._ensure_collection(dimension))
        return index

    async def _ensure_collection(self, dimension: int) -> None:
        if await self._client.collection_exists(self._collection):
            info = await self._client.get_collection(self._collection)
            if SCOPE_FIELD not in info.payload_schema:
                # A collection written before searches filtered on the scope digest.
                await self._client.create_payload_index(
                    self._collection, SCOPE_FIELD, models.PayloadSchemaType.KEYWORD
                )
            return
        await self._client.create_collection(
            self._collection,
            vectors_config=models.VectorParams(
                size=dimension, distance=models.Distance.COSINE
            ),
        )
        await self._client.create_payload_index(
            self._collection,
            TENANT_FIELD,
            models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            ),
        )
        for name in KEYWORD_FIELDS:
            if name != TENANT_FIELD:
                await self._client.create_payload_index(
                    self._collection, name, models.PayloadSchemaType.KEYWORD
                )
        await self._client.create_payload_index(
            self._collection, EXPIRES_FIELD, models.PayloadSchemaType.FLOAT
        )

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except (ApiException, OSError, ValueError) as error:
            raise BackendUnavailableError(
                f"qdrant failed: {type(error).__name__}",
                reason="SEMANTIC_INDEX_UNAVAILABLE",
            ) from error

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
        point = models.PointStruct(
            id=point_id(entry.key),
            vector=list(vector),
            payload=to_payload(scope, query, fingerprint, entry),
        )
        await self._call(
            lambda: self._client.upsert(self._collection, [point], wait=True)
        )

    async def search(
        self,
        vector: Vector,
        scope: SemanticScope,
        *,
        now: float,
        limit: int,
        min_similarity: float,
    ) -> list[SemanticCandidate]:
        """The most similar live points of ``scope``, under hard filters."""
        condition = models.Filter(
            must=[
                *_equal(**{SCOPE_FIELD: scope_key(scope)}),
                models.FieldCondition(key=EXPIRES_FIELD, range=models.Range(gt=now)),
            ]
        )
        response = await self._call(
            lambda: self._client.query_points(
                self._collection,
                query=list(vector),
                query_filter=condition,
                limit=limit,
                with_payload=True,
                score_threshold=min_similarity,
            )
        )
        return [
            candidate(dict(point.payload or {}), point.score)
            for point in response.points
        ]

    async def _delete_where(self, condition: models.Filter) -> int:
        async def work() -> int:
            found = await self._client.count(
                self._collection, count_filter=condition, exact=True
            )
            if found.count:
                await self._client.delete(
                    self._collection,
                    points_selector=models.FilterSelector(filter=condition),
                    wait=True,
                )
            return found.count

        return await self._call(work)

    async def delete(self, key: str) -> bool:
        """Remove the point of ``key``."""
        condition = models.Filter(must=[models.HasIdCondition(has_id=[point_id(key)])])
        return bool(await self._delete_where(condition))

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every point of ``tenant_id``."""
        return await self._delete_where(models.Filter(must=_equal(tenant_id=tenant_id)))

    async def delete_model(self, model: str) -> int:
        """Remove every point requested from or produced by ``model``."""
        condition = models.Filter(
            should=[*_equal(model=model), *_equal(answer_model=model)]
        )
        return await self._delete_where(condition)

    async def delete_expired(self, now: float) -> int:
        """Remove every point whose ``expires_at`` is at or before ``now``."""
        condition = models.Filter(
            must=[models.FieldCondition(key=EXPIRES_FIELD, range=models.Range(lte=now))]
        )
        return await self._delete_where(condition)

    async def clear(self) -> int:
        """Remove every point."""
        return await self._delete_where(models.Filter())

    async def count(self) -> int:
        """Points in the collection."""
        result = await self._call(
            lambda: self._client.count(self._collection, exact=True)
        )
        return result.count

    async def ping(self) -> bool:
        """Whether the collection answers a count."""
        try:
            await self.count()
        except BackendUnavailableError:
            return False
        return True

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()
