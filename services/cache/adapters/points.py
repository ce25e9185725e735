"""The payload of a semantic point, shared by the Qdrant Edge and server adapters.

A point carries everything a hit needs (the answer, its usage and times) and the
hard-filter fields, so the semantic tier answers without the exact tier: an entry
evicted from the exact LRU can still be served by meaning until it expires.

A search filters on one field, ``scope``: a digest of the five hard filters
(tenant, model, instructions, parameters, embedding version), not on the five
fields themselves, which the payload keeps for invalidation and for reading an
entry back. Qdrant checks a filter at every point it visits, and five keyword
conditions cost it far more than one (``bench/cache_latency.py``, 100k entries of
one scope: search p50 1.97 ms on the five fields, 0.97 on the digest). Points
written before the field existed match no search and age out with their TTL: a
miss, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from services.cache.domain import (
    Answer,
    CacheEntry,
    SemanticCandidate,
    SemanticScope,
    Usage,
)

SCOPE_FIELD = "scope"
# Fields with a payload index: the scope, plus what invalidation matches.
KEYWORD_FIELDS = (
    SCOPE_FIELD,
    "tenant_id",
    "model",
    "answer_model",
    "instructions_hash",
    "parameters_hash",
    "embedding_version",
)
TENANT_FIELD = "tenant_id"
EXPIRES_FIELD = "expires_at"
# The guard's fingerprint of the stored query (services.cache.verification).
FINGERPRINT_FIELD = "guard_fingerprint"


def point_id(key: str) -> str:
    """The point id of an exact key: its first 128 bits as a UUID."""
    return str(uuid.UUID(hex=key[:32]))


def scope_conditions(scope: SemanticScope) -> dict[str, str]:
    """The hard-filter fields of a point of ``scope`` (searched as one digest)."""
    return {
        "tenant_id": scope.tenant_id,
        "model": scope.model,
        "instructions_hash": scope.instructions_hash,
        "parameters_hash": scope.parameters_hash,
        "embedding_version": scope.embedding_version,
    }


def scope_key(scope: SemanticScope) -> str:
    """The one keyword a candidate's ``scope`` field must equal."""
    joined = "\x1f".join(scope_conditions(scope).values())
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def to_payload(
    scope: SemanticScope, query: str, fingerprint: str, entry: CacheEntry
) -> dict[str, Any]:
    """The payload of the point of ``entry``."""
    usage = entry.answer.usage
    return {
        SCOPE_FIELD: scope_key(scope),
        **scope_conditions(scope),
        "answer_model": entry.answer.model,
        "key": entry.key,
        "query": query,
        FINGERPRINT_FIELD: fingerprint,
        "output_text": entry.answer.output_text,
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "created_at": entry.created_at,
        EXPIRES_FIELD: entry.expires_at,
    }


def candidate(payload: dict[str, Any], similarity: float) -> SemanticCandidate:
    """The candidate a point's payload and score make."""
    return SemanticCandidate(
        query=str(payload["query"]),
        entry=_entry(payload),
        similarity=similarity,
        # Points written before fingerprints were stored have none.
        fingerprint=str(payload.get(FINGERPRINT_FIELD, "")),
    )


def _entry(payload: dict[str, Any]) -> CacheEntry:
    return CacheEntry(
        key=str(payload["key"]),
        tenant_id=str(payload["tenant_id"]),
        request_model=str(payload["model"]),
        answer=Answer(
            output_text=str(payload["output_text"]),
            model=str(payload["answer_model"]),
            usage=Usage(
                input_tokens=int(payload["input_tokens"]),
                cached_input_tokens=int(payload["cached_input_tokens"]),
                output_tokens=int(payload["output_tokens"]),
                reasoning_tokens=int(payload.get("reasoning_tokens", 0)),
            ),
        ),
        created_at=float(payload["created_at"]),
        expires_at=float(payload[EXPIRES_FIELD]),
    )
