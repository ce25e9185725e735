"""The response cache: canonical keys, store decisions, absolute TTL and statistics.

Only the exact tier exists so far: a request's key is the SHA-256 of its canonical
form, and an answer is served only to a byte-for-byte identical request of the same
tenant. The semantic tier (a ``VectorIndex`` port with verification) will sit beside
the exact store and be consulted after an exact miss.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from services.cache.ports import ExactStore
    from services.core.clock import Clock

_log = structlog.get_logger("tollgate.cache")

# Bump when the canonical form changes, so old entries can never match new keys.
KEY_SCHEMA_VERSION = 1
# OpenAI's defaults for unset sampling parameters.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
# Accounted per entry on top of its strings: the dict slot, the dataclasses and the
# link in the LRU order. An estimate; what matters is that the bound is deterministic.
ENTRY_OVERHEAD_BYTES = 256
SEMANTIC_BACKEND_DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class CacheableRequest:
    """The parts of a request that decide its answer.

    ``temperature`` and ``top_p`` are ``None`` when the caller left them unset.
    """

    tenant_id: str
    model: str
    instructions: str = ""
    input: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int = 0
    tools_json: str = ""
    response_format_json: str = ""
    multi_turn: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of the call that produced an answer."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream answer as offered for caching."""

    output_text: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached answer with what invalidation and expiry need.

    Attributes:
        key: the exact-tier key.
        tenant_id: the tenant of the request, for invalidation by tenant.
        request_model: the model the request named, for invalidation by model.
        answer: the cached answer.
        created_at: wall time of the store, in seconds since the epoch.
        expires_at: wall time after which the entry is never served.
        size_bytes: what the entry counts against a store's byte bound: its
            strings in UTF-8 plus a fixed overhead.
    """

    key: str
    tenant_id: str
    request_model: str
    answer: Answer
    created_at: float
    expires_at: float
    size_bytes: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: the store reads it on every put, eviction and removal.
        size = ENTRY_OVERHEAD_BYTES + sum(
            len(text.encode())
            for text in (
                self.key,
                self.tenant_id,
                self.request_model,
                self.answer.model,
                self.answer.output_text,
            )
        )
        object.__setattr__(self, "size_bytes", size)

    def produced_by(self, model: str) -> bool:
        """Whether the request named ``model`` or the answer reports it."""
        return model in (self.request_model, self.answer.model)


class StoreOutcome(enum.Enum):
    """Why an answer was or was not stored."""

    STORED = "stored"
    REFUSED_INCOMPLETE = "refused_incomplete"
    REFUSED_TOOL_CALLS = "refused_tool_calls"
    REFUSED_TOO_LARGE = "refused_too_large"


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of offering an answer, with the request's key."""

    outcome: StoreOutcome
    key: str

    @property
    def stored(self) -> bool:
        """Whether the answer is now cached."""
        return self.outcome is StoreOutcome.STORED


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A hit (``entry`` set) or a miss, with the request's key."""

    key: str
    entry: CacheEntry | None

    @property
    def hit(self) -> bool:
        """Whether a cached answer was found."""
        return self.entry is not None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since start and the tiers' current sizes."""

    exact_entries: int
    exact_bytes: int
    exact_capacity_bytes: int
    exact_hits: int
    misses: int
    stores: int
    evictions: int
    exact_backend: str
    semantic_entries: int = 0
    semantic_hits: int = 0
    verification_rejections: int = 0
    semantic_backend: str = SEMANTIC_BACKEND_DISABLED

    @property
    def hit_rate(self) -> float:
        """Hits divided by lookups; 0 before the first lookup."""
        hits = self.exact_hits + self.semantic_hits
        lookups = hits + self.misses
        return hits / lookups if lookups else 0.0


def _canonical_float(value: float | None, default: float) -> str:
    # repr of a float is the shortest string that round-trips, so 0.7 and 0.70
    # agree; adding 0.0 turns -0.0 into 0.0.
    return repr(float(default if value is None else value) + 0.0)


def canonical_request(request: CacheableRequest) -> bytes:
    """The canonical form of ``request``: sorted-key JSON without whitespace, UTF-8.

    Unset sampling parameters take OpenAI's defaults, so leaving ``temperature``
    unset and sending 1.0 give the same form.
    """
    document = {
        "key_schema_version": KEY_SCHEMA_VERSION,
        "tenant_id": request.tenant_id,
        "model": request.model,
        "instructions": request.instructions,
        "input": request.input,
        "temperature": _canonical_float(request.temperature, DEFAULT_TEMPERATURE),
        "top_p": _canonical_float(request.top_p, DEFAULT_TOP_P),
        "max_output_tokens": request.max_output_tokens,
        "tools_json": request.tools_json,
        "response_format_json": request.response_format_json,
        "multi_turn": request.multi_turn,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def exact_key(request: CacheableRequest) -> str:
    """The exact-tier key of ``request``: hex SHA-256 of its canonical form."""
    return hashlib.sha256(canonical_request(request)).hexdigest()


class ResponseCache:
    """Looks up and stores answers in the exact tier and keeps the counters.

    Args:
        store: the exact tier's storage.
        clock: wall time for ``created_at`` and expiry.
        default_ttl_seconds: lifetime of an entry stored without a TTL.
        max_ttl_seconds: the longest lifetime a caller may ask for.
    """

    def __init__(
        self,
        store: ExactStore,
        clock: Clock,
        *,
        default_ttl_seconds: float,
        max_ttl_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._default_ttl = default_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._exact_hits = 0
        self._misses = 0
        self._stores = 0
        self._evictions = 0

    async def lookup(self, request: CacheableRequest) -> LookupResult:
        """Find a live answer for ``request``; an expired entry is removed and missed.

        Hits do not extend an entry's lifetime: its TTL is absolute.
        """
        key = exact_key(request)
        entry = await self._store.get(key)
        if entry is not None and entry.expires_at <= self._clock.now():
            await self._store.delete(key)
            entry = None
        if entry is None:
            self._misses += 1
        else:
            self._exact_hits += 1
        return LookupResult(key=key, entry=entry)

    async def store(
        self,
        request: CacheableRequest,
        answer: Answer,
        *,
        complete: bool,
        has_tool_calls: bool,
        ttl_seconds: float | None = None,
    ) -> StoreResult:
        """Cache ``answer`` for ``request`` unless it must not be served again.

        Incomplete or empty answers and answers with tool calls are refused, as is
        an entry larger than the whole store. ``ttl_seconds`` (default: the
        service's) is capped at the maximum TTL.
        """
        key = exact_key(request)
        outcome = self._refusal(
            answer, complete=complete, has_tool_calls=has_tool_calls
        )
        if outcome is None:
            outcome = await self._put(key, request, answer, ttl_seconds)
        if outcome is not StoreOutcome.STORED:
            _log.info("cache_store_refused", outcome=outcome.value)
        return StoreResult(outcome=outcome, key=key)

    async def _put(
        self,
        key: str,
        request: CacheableRequest,
        answer: Answer,
        ttl_seconds: float | None,
    ) -> StoreOutcome:
        now = self._clock.now()
        ttl = self._default_ttl if ttl_seconds is None else ttl_seconds
        entry = CacheEntry(
            key=key,
            tenant_id=request.tenant_id,
            request_model=request.model,
            # An answer that does not name its model came from the requested one.
            answer=answer if answer.model else replace(answer, model=request.model),
            created_at=now,
            expires_at=now + min(ttl, self._max_ttl),
        )
        put = await self._store.put(entry)
        self._evictions += put.evicted
        if not put.stored:
            return StoreOutcome.REFUSED_TOO_LARGE
        self._stores += 1
        return StoreOutcome.STORED

    @staticmethod
    def _refusal(
        answer: Answer, *, complete: bool, has_tool_calls: bool
    ) -> StoreOutcome | None:
        # Tool calls are checked before emptiness: a tool-call answer has no text.
        if not complete:
            return StoreOutcome.REFUSED_INCOMPLETE
        if has_tool_calls:
            return StoreOutcome.REFUSED_TOOL_CALLS
        if not answer.output_text:
            return StoreOutcome.REFUSED_INCOMPLETE
        return None

    async def invalidate_key(self, key: str) -> int:
        """Remove the entry with ``key``; returns the number removed (0 or 1)."""
        return self._invalidated("key", int(await self._store.delete(key)))

    async def invalidate_tenant(self, tenant_id: str) -> int:
        """Remove every entry of ``tenant_id``; returns the number removed."""
        return self._invalidated("tenant", await self._store.delete_tenant(tenant_id))

    async def invalidate_model(self, model: str) -> int:
        """Remove every entry requested from or produced by ``model``."""
        return self._invalidated("model", await self._store.delete_model(model))

    async def invalidate_all(self) -> int:
        """Remove every entry; returns the number removed."""
        return self._invalidated("all", await self._store.clear())

    @staticmethod
    def _invalidated(scope: str, removed: int) -> int:
        _log.info("cache_invalidated", scope=scope, removed_entries=removed)
        return removed

    async def stats(self) -> CacheStats:
        """The counters since start and the exact tier's current size."""
        usage = await self._store.usage()
        return CacheStats(
            exact_entries=usage.entries,
            exact_bytes=usage.bytes_used,
            exact_capacity_bytes=usage.capacity_bytes,
            exact_hits=self._exact_hits,
            misses=self._misses,
            stores=self._stores,
            evictions=self._evictions,
            exact_backend=self._store.backend,
        )
