"""The response cache: canonical keys, store decisions, absolute TTL and statistics.

Two tiers. The exact tier serves an answer to a byte-for-byte identical canonical
request of the same tenant. The semantic tier, consulted after an exact miss,
embeds the user's text and searches a vector index under hard filters (tenant,
model, instructions hash, parameters hash, embedding version, expiry); of the top
candidates above the similarity threshold, the most similar one that passes the
verification guard (:mod:`services.cache.verification`) is served. Only
requests at or below a configured temperature, without images or tool results, are
eligible.

Each route (a tenant, a request type or both) runs the semantic tier in one of
three modes (:class:`SemanticMode`): off, shadow or serve, with its own threshold
(:class:`SemanticControl`). In shadow mode a verified candidate is counted and
logged without text, the lookup answers a miss, and when the fresh answer is then
offered to :meth:`ResponseCache.store` it is compared with the answer the candidate
would have served: they agree when their texts are equal once whitespace and case
are normalised, or when the cosine similarity of their embeddings reaches
``agreement_similarity``. The agreement rate is an operator's evidence, from their
own traffic, for turning serving on.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import structlog

from services.cache.verification import CHECKS, Verdict, fingerprint, verify
from services.core.conversation import FinishReason, ToolCall
from services.core.errors import BackendUnavailableError

if TYPE_CHECKING:
    from services.cache.ports import Embedder, ExactStore, PairJudge, VectorIndex
    from services.core.clock import Clock

_log = structlog.get_logger("tollgate.cache")

# Bump when the canonical form changes, so old entries can never match new keys.
# 2: the request model (context digest, exact-only reason) joined the key.
KEY_SCHEMA_VERSION = 2
# OpenAI's defaults for unset sampling parameters.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
# Accounted per entry on top of its strings: the dict slot, the dataclasses and the
# link in the LRU order. An estimate; what matters is that the bound is deterministic.
ENTRY_OVERHEAD_BYTES = 256
SEMANTIC_BACKEND_DISABLED = "disabled"
# The guard's check that fails when every veto held but some words stayed unpaired:
# the only rejection the pair judge may overrule.
UNEXPLAINED_WORDS = "alignment"
# accepted_check of a hit the pair judge accepted (and a rejection it made).
JUDGE_CHECK = "judge"
# The judge's least score that serves: on the two held-out development folds it
# added no false hit (bench/results/cache_pair_judge.md).
DEFAULT_JUDGE_THRESHOLD = 0.97
# Vectors of recent texts, so that the Store after a Lookup miss does not embed the
# same text again.
_VECTOR_MEMO_SIZE = 1024
# Shadow hits awaiting the Store of their request, by exact key: bounded, so that
# requests whose answer is never offered (errors, streams cut) cannot pile up.
_SHADOW_PENDING_SIZE = 4096
# Default bound of the cosine similarity of two answers' embeddings above which a
# shadow hit agrees with the fresh answer.
DEFAULT_AGREEMENT_SIMILARITY = 0.9


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
    context_digest: str = ""
    exact_only_reason: str = ""
    request_type: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of the call that produced an answer."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream answer as offered for caching."""

    output_text: str
    model: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None


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
                *(
                    call.id + call.name + call.arguments
                    for call in self.answer.tool_calls
                ),
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
    REFUSED_TOO_LARGE = "refused_too_large"


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of offering an answer, with the request's key."""

    outcome: StoreOutcome
    key: str
    semantic_indexed: bool = False

    @property
    def stored(self) -> bool:
        """Whether the answer is now cached."""
        return self.outcome is StoreOutcome.STORED


class LookupStatus(enum.Enum):
    """Which tier answered, if any."""

    MISS = "miss"
    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A hit (``entry`` set) or a miss, with the request's key.

    Attributes:
        key: the request's exact-tier key.
        entry: the cached entry on a hit.
        status: which tier answered.
        similarity: cosine similarity of the served query to the request's; 1 for
            an exact hit, 0 on a miss.
        rejected_candidates: semantic candidates above the threshold that failed
            verification.
        embedding_seconds: time spent embedding the input (0 if not embedded).
        search_seconds: time spent searching the vector index (0 if not searched).
        age_seconds: how long ago the served entry was stored (0 on a miss).
        accepted_check: the verification check that accepted a semantic (or
            shadow) hit; empty otherwise.
        shadow_hit: a verified candidate was found but not served: the route
            runs the semantic tier in shadow mode.
        mode: the semantic mode the request's route resolved to.
    """

    key: str
    entry: CacheEntry | None
    status: LookupStatus = LookupStatus.MISS
    similarity: float = 0.0
    rejected_candidates: int = 0
    embedding_seconds: float = 0.0
    search_seconds: float = 0.0
    age_seconds: float = 0.0
    accepted_check: str = ""
    shadow_hit: bool = False
    mode: SemanticMode | None = None

    @property
    def hit(self) -> bool:
        """Whether a cached answer was found."""
        return self.entry is not None


@dataclass(frozen=True, slots=True)
class InvalidateResult:
    """Entries removed from each tier."""

    exact: int
    semantic: int

    @property
    def total(self) -> int:
        """Entries removed across both tiers."""
        return self.exact + self.semantic


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
    semantic_stores: int = 0
    verification_rejections: int = 0
    rejections_by_check: dict[str, int] = field(default_factory=dict)
    expired_removed: int = 0
    semantic_errors: int = 0
    semantic_backend: str = SEMANTIC_BACKEND_DISABLED
    embedding_version: str = ""
    semantic_hits_by_check: dict[str, int] = field(default_factory=dict)
    shadow_hits: int = 0
    shadow_comparisons: int = 0
    shadow_agreements: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits divided by lookups; 0 before the first lookup."""
        hits = self.exact_hits + self.semantic_hits
        lookups = hits + self.misses
        return hits / lookups if lookups else 0.0

    @property
    def shadow_agreement_rate(self) -> float:
        """Agreeing comparisons divided by comparisons; 0 before the first."""
        if not self.shadow_comparisons:
            return 0.0
        return self.shadow_agreements / self.shadow_comparisons


class SemanticMode(enum.Enum):
    """What the semantic tier does for a route."""

    OFF = "off"
    SHADOW = "shadow"
    SERVE = "serve"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule of the semantic policy.

    Attributes:
        tenant_id: the tenant it applies to; empty for every tenant.
        request_type: the request type it applies to ("chat", "summarize", ...);
            empty for every type.
        mode: the mode, or ``None`` to inherit it.
        similarity_threshold: the threshold, or ``None`` to inherit it.
    """

    tenant_id: str = ""
    request_type: str = ""
    mode: SemanticMode | None = None
    similarity_threshold: float | None = None

    @property
    def route(self) -> tuple[str, str]:
        """The tenant and request type the rule applies to."""
        return (self.tenant_id, self.request_type)


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The mode and threshold a request's route resolves to."""

    mode: SemanticMode
    similarity_threshold: float


class SemanticControl:
    """The semantic tier's default and its per-tenant, per-request-type rules.

    The most specific rule that sets a field wins: tenant and request type, then
    tenant, then request type, then the default. Rules change at run time (the
    admin RPC) and take effect on the next lookup.

    Args:
        default_mode: the mode of a route without rules.
        default_threshold: the threshold of a route without rules.
        rules: the configured rules.
    """

    def __init__(
        self,
        default_mode: SemanticMode,
        default_threshold: float,
        rules: Sequence[PolicyRule] = (),
    ) -> None:
        self.default_mode = default_mode
        self.default_threshold = default_threshold
        self._rules: dict[tuple[str, str], PolicyRule] = {}
        for rule in rules:
            self.set_rule(rule)

    def set_rule(self, rule: PolicyRule) -> None:
        """Set ``rule``, replacing the rule of the same route.

        Raises:
            ValueError: the rule sets nothing, or its threshold is not in (0, 1].
        """
        if rule.mode is None and rule.similarity_threshold is None:
            raise ValueError("a rule must set a mode or a similarity threshold")
        threshold = rule.similarity_threshold
        if threshold is not None and not 0 < threshold <= 1:
            raise ValueError("similarity_threshold must be in (0, 1]")
        self._rules[rule.route] = rule

    def clear_rule(self, tenant_id: str, request_type: str) -> bool:
        """Remove the rule of a route; whether there was one."""
        return self._rules.pop((tenant_id, request_type), None) is not None

    def rules(self) -> list[PolicyRule]:
        """Every rule in force, sorted by tenant and request type."""
        return [self._rules[route] for route in sorted(self._rules)]

    def resolve(self, tenant_id: str, request_type: str) -> RoutePolicy:
        """The mode and threshold of a tenant's request of ``request_type``."""
        mode: SemanticMode | None = None
        threshold: float | None = None
        for route in (
            (tenant_id, request_type),
            (tenant_id, ""),
            ("", request_type),
            ("", ""),
        ):
            rule = self._rules.get(route)
            if rule is None:
                continue
            mode = mode or rule.mode
            if threshold is None:
                threshold = rule.similarity_threshold
        return RoutePolicy(
            mode=mode or self.default_mode,
            similarity_threshold=(
                self.default_threshold if threshold is None else threshold
            ),
        )


@dataclass(frozen=True, slots=True)
class SemanticScope:
    """The hard filters of the semantic tier: a candidate must equal all of them.

    Attributes:
        tenant_id: the tenant; tenants never share entries.
        model: the model the request named.
        instructions_hash: hex SHA-256 of the system prompt.
        parameters_hash: hex SHA-256 of the sampling parameters and output format.
        embedding_version: the embedder's version; vectors of different models are
            never compared.
    """

    tenant_id: str
    model: str
    instructions_hash: str
    parameters_hash: str
    embedding_version: str


@dataclass(frozen=True, slots=True)
class SemanticCandidate:
    """A point returned by the vector index, with the query it was stored for.

    ``fingerprint`` is the guard's :func:`~services.cache.verification.fingerprint`
    of ``query``, stored with the point ("" for a point stored without one).
    """

    query: str
    entry: CacheEntry
    similarity: float
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SemanticPolicy:
    """What the semantic tier serves.

    Attributes:
        similarity_threshold: minimum cosine similarity of a candidate.
        top_k: how many candidates above the threshold are verified.
        max_temperature: requests above it are exact-tier only.
        max_input_chars: longer inputs are exact-tier only.
        judge_threshold: the pair judge's least score that serves a candidate.
    """

    similarity_threshold: float
    top_k: int = 5
    max_temperature: float = 1.0
    max_input_chars: int = 1000
    judge_threshold: float = DEFAULT_JUDGE_THRESHOLD


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
        "context_digest": request.context_digest,
        "exact_only_reason": request.exact_only_reason,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def exact_key(request: CacheableRequest) -> str:
    """The exact-tier key of ``request``: hex SHA-256 of its canonical form."""
    return hashlib.sha256(canonical_request(request)).hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def semantic_scope(request: CacheableRequest, embedding_version: str) -> SemanticScope:
    """The hard filters of ``request`` for an embedder of ``embedding_version``.

    The parameters hash covers everything but the input that shapes an answer of
    an eligible request: temperature and top_p (OpenAI's defaults filled in), the
    output token limit, the response format, the tools and the context digest (the
    earlier turns), so a semantic hit never crosses conversations.
    """
    parameters = json.dumps(
        {
            "key_schema_version": KEY_SCHEMA_VERSION,
            "temperature": _canonical_float(request.temperature, DEFAULT_TEMPERATURE),
            "top_p": _canonical_float(request.top_p, DEFAULT_TOP_P),
            "max_output_tokens": request.max_output_tokens,
            "response_format_json": request.response_format_json,
            "tools_json": request.tools_json,
            "context_digest": request.context_digest,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return SemanticScope(
        tenant_id=request.tenant_id,
        model=request.model,
        instructions_hash=_sha256(request.instructions),
        parameters_hash=_sha256(parameters),
        embedding_version=embedding_version,
    )


def semantic_ineligibility(
    request: CacheableRequest, policy: SemanticPolicy
) -> str | None:
    """Why ``request`` may not use the semantic tier, or ``None`` if it may.

    Earlier turns and tools do not forbid it: they are part of the scope's hard
    filter, so only entries of the same conversation and tools are compared.
    """
    if request.exact_only_reason:
        return request.exact_only_reason
    temperature = (
        DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    )
    if temperature > policy.max_temperature:
        return "temperature"
    if not request.input.strip():
        return "empty_input"
    if len(request.input) > policy.max_input_chars:
        return "long_input"
    return None


class SemanticTier:
    """The embedder, the vector index and the policy, with a memo of vectors.

    Args:
        embedder: turns inputs into vectors.
        index: stores and searches the vectors under hard filters.
        policy: thresholds, top-k and eligibility.
        judge: decides the most similar candidate that passed every veto but whose
            words the guard could not pair up; without one such a candidate is
            rejected.
    """

    def __init__(
        self,
        embedder: Embedder,
        index: VectorIndex,
        policy: SemanticPolicy,
        judge: PairJudge | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.policy = policy
        self.judge = judge
        self._memo: OrderedDict[str, Sequence[float]] = OrderedDict()

    async def vector(self, text: str) -> Sequence[float]:
        """The embedding of ``text``, from the memo when it was embedded lately."""
        vector = self._memo.get(text)
        if vector is not None:
            self._memo.move_to_end(text)
            return vector
        (vector,) = await self.embedder.embed([text])
        self._memo[text] = vector
        if len(self._memo) > _VECTOR_MEMO_SIZE:
            self._memo.popitem(last=False)
        return vector

    def forget_vectors(self) -> None:
        """Drop the remembered vectors, so that the next lookups embed again."""
        self._memo.clear()

    def scope(self, request: CacheableRequest) -> SemanticScope:
        """The hard filters of ``request``."""
        return semantic_scope(request, self.embedder.version)


class ResponseCache:
    """Looks up and stores answers in both tiers and keeps the counters.

    Args:
        store: the exact tier's storage.
        clock: wall time for ``created_at`` and expiry; monotonic time for the
            embedding and search timings.
        default_ttl_seconds: lifetime of an entry stored without a TTL.
        max_ttl_seconds: the longest lifetime a caller may ask for.
        semantic: the semantic tier, or ``None`` for the exact tier only.
        control: the per-route modes and thresholds; without it every route
            serves at the semantic policy's threshold.
        verifier: the verification guard; a bench passes an older one to compare.
        agreement_similarity: in shadow mode, the cosine similarity of two
            answers' embeddings from which they agree.
    """

    def __init__(
        self,
        store: ExactStore,
        clock: Clock,
        *,
        default_ttl_seconds: float,
        max_ttl_seconds: float,
        semantic: SemanticTier | None = None,
        control: SemanticControl | None = None,
        verifier: Callable[[str, str, str], Verdict] = verify,
        agreement_similarity: float = DEFAULT_AGREEMENT_SIMILARITY,
    ) -> None:
        self._store = store
        self._clock = clock
        self._default_ttl = default_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._semantic = semantic
        self._control = control or SemanticControl(
            SemanticMode.SERVE,
            semantic.policy.similarity_threshold if semantic else 1.0,
        )
        self._verify = verifier
        self._agreement_similarity = agreement_similarity
        self._hits_by_check: dict[str, int] = {}
        self._shadow_pending: OrderedDict[str, str] = OrderedDict()
        self._shadow_hits = 0
        self._shadow_comparisons = 0
        self._shadow_agreements = 0
        self._exact_hits = 0
        self._semantic_hits = 0
        self._misses = 0
        self._stores = 0
        self._semantic_stores = 0
        self._evictions = 0
        self._rejections = dict.fromkeys(CHECKS, 0)
        self._expired_removed = 0
        self._semantic_errors = 0

    @property
    def exact_store(self) -> ExactStore:
        """The exact tier's storage."""
        return self._store

    @property
    def semantic(self) -> SemanticTier | None:
        """The semantic tier, if configured."""
        return self._semantic

    @property
    def control(self) -> SemanticControl:
        """The per-route modes and thresholds of the semantic tier."""
        return self._control

    async def embed(self, text: str) -> tuple[Sequence[float], str]:
        """The vector of ``text`` and the embedder's version, kept in the memo.

        The Lookup and Store of the same text then reuse it, so a caller that
        needs the vector too (the deprecated Embed RPC) costs no second run.
        ``((), "")`` without a semantic tier or for a blank text; a failing
        embedder raises :class:`BackendUnavailableError`.
        """
        semantic = self._semantic
        if semantic is None or not text.strip():
            return (), ""
        return await semantic.vector(text), semantic.embedder.version

    async def lookup(
        self, request: CacheableRequest, *, allow_semantic: bool = True
    ) -> LookupResult:
        """Find a live answer for ``request``: exact tier, then semantic tier.

        An expired exact entry is removed and missed. Hits do not extend an
        entry's lifetime: its TTL is absolute. The semantic tier is consulted only
        when ``allow_semantic`` is set and the request is eligible; if it fails,
        the lookup is a miss rather than an error.
        """
        key = exact_key(request)
        now = self._clock.now()
        entry = await self._store.get(key)
        if entry is not None and entry.expires_at <= now:
            await self._store.delete(key)
            entry = None
        if entry is not None:
            self._exact_hits += 1
            return LookupResult(
                key=key,
                entry=entry,
                status=LookupStatus.EXACT,
                similarity=1.0,
                age_seconds=max(0.0, now - entry.created_at),
            )
        route = self._control.resolve(request.tenant_id, request.request_type)
        result = LookupResult(key=key, entry=None, mode=route.mode)
        semantic = self._semantic
        if (
            allow_semantic
            and semantic is not None
            and route.mode is not SemanticMode.OFF
            and semantic_ineligibility(request, semantic.policy) is None
        ):
            try:
                result = await self._semantic_lookup(semantic, request, key, now, route)
            except BackendUnavailableError as error:
                self._semantic_errors += 1
                _log.warning("cache_semantic_lookup_failed", reason=error.reason)
        if result.hit and route.mode is SemanticMode.SHADOW:
            result = self._shadowed(request, result)
        if result.hit:
            self._semantic_hits += 1
            check = result.accepted_check
            self._hits_by_check[check] = self._hits_by_check.get(check, 0) + 1
        else:
            self._misses += 1
        return result

    def _shadowed(self, request: CacheableRequest, found: LookupResult) -> LookupResult:
        # Counted and remembered for the comparison at Store, logged without text,
        # and answered as a miss.
        assert found.entry is not None
        self._shadow_hits += 1
        self._shadow_pending[found.key] = found.entry.answer.output_text
        self._shadow_pending.move_to_end(found.key)
        if len(self._shadow_pending) > _SHADOW_PENDING_SIZE:
            self._shadow_pending.popitem(last=False)
        _log.info(
            "cache_semantic_shadow_hit",
            request_type=request.request_type,
            similarity=round(found.similarity, 4),
            accepted_check=found.accepted_check,
            entry_age_seconds=round(found.age_seconds),
        )
        return replace(
            found, entry=None, status=LookupStatus.MISS, shadow_hit=True, age_seconds=0
        )

    async def _semantic_lookup(
        self,
        semantic: SemanticTier,
        request: CacheableRequest,
        key: str,
        now: float,
        route: RoutePolicy,
    ) -> LookupResult:
        started = self._clock.monotonic()
        vector = await semantic.vector(request.input)
        embedded = self._clock.monotonic()
        candidates = await semantic.index.search(
            vector,
            semantic.scope(request),
            now=now,
            limit=semantic.policy.top_k,
            min_similarity=route.similarity_threshold,
        )
        searched = self._clock.monotonic()
        rejected = 0
        unexplained: SemanticCandidate | None = None
        # The index returns the most similar first: the first verified one wins.
        for candidate in sorted(candidates, key=lambda c: -c.similarity):
            if candidate.entry.answer.tool_calls:
                continue  # never indexed; a tool call is served exactly or not at all
            verdict = self._verify(
                request.input, candidate.query, candidate.fingerprint
            )
            if verdict.ok:
                return self._semantic_hit(
                    key,
                    candidate,
                    verdict.accepted_by or "passed",
                    rejected,
                    embedded - started,
                    searched - embedded,
                    now,
                    route,
                )
            rejected += 1
            check = verdict.failed_check
            self._rejections[check] = self._rejections.get(check, 0) + 1
            if check == UNEXPLAINED_WORDS and unexplained is None:
                unexplained = candidate
        # Every veto held for this one; only its wording was left unexplained. One
        # judge run per lookup at most: the most similar such candidate.
        if unexplained is not None and semantic.judge is not None:
            score = await semantic.judge.score(request.input, unexplained.query)
            # The judge has the last word on this candidate, and is counted so.
            self._rejections[UNEXPLAINED_WORDS] -= 1
            if score >= semantic.policy.judge_threshold:
                return self._semantic_hit(
                    key,
                    unexplained,
                    JUDGE_CHECK,
                    rejected - 1,
                    embedded - started,
                    searched - embedded,
                    now,
                    route,
                )
            self._rejections[JUDGE_CHECK] = self._rejections.get(JUDGE_CHECK, 0) + 1
        return LookupResult(
            key=key,
            entry=None,
            rejected_candidates=rejected,
            embedding_seconds=embedded - started,
            search_seconds=searched - embedded,
            mode=route.mode,
        )

    @staticmethod
    def _semantic_hit(
        key: str,
        candidate: SemanticCandidate,
        accepted_check: str,
        rejected: int,
        embedding_seconds: float,
        search_seconds: float,
        now: float,
        route: RoutePolicy,
    ) -> LookupResult:
        return LookupResult(
            key=key,
            entry=candidate.entry,
            status=LookupStatus.SEMANTIC,
            similarity=min(1.0, candidate.similarity),
            rejected_candidates=rejected,
            embedding_seconds=embedding_seconds,
            search_seconds=search_seconds,
            age_seconds=max(0.0, now - candidate.entry.created_at),
            accepted_check=accepted_check,
            mode=route.mode,
        )

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

        Incomplete or empty answers are refused, as is an entry larger than the
        whole exact store. ``ttl_seconds`` (default: the service's) is capped at the
        maximum TTL. An eligible request is also indexed in the semantic tier,
        unless its answer calls tools: the arguments of a call answer the exact
        words asked, so a paraphrase must not get them. A failure of the semantic
        tier is logged, and the exact entry stays.
        """
        key = exact_key(request)
        shadow_answer = self._shadow_pending.pop(key, None)
        if shadow_answer is not None and complete and answer.output_text:
            await self._compare(shadow_answer, answer.output_text)
        has_tool_calls = has_tool_calls or bool(answer.tool_calls)
        outcome = self._refusal(
            answer, complete=complete, has_tool_calls=has_tool_calls
        )
        entry: CacheEntry | None = None
        if outcome is None:
            entry = self._entry(key, request, answer, ttl_seconds)
            outcome = await self._put(entry)
        indexed = False
        if outcome is not StoreOutcome.STORED:
            _log.info("cache_store_refused", outcome=outcome.value)
        elif entry is not None and not has_tool_calls:
            indexed = await self._index(request, entry)
        return StoreResult(outcome=outcome, key=key, semantic_indexed=indexed)

    async def _compare(self, shadow_answer: str, fresh_answer: str) -> None:
        similarity = 1.0
        if _plain(shadow_answer) != _plain(fresh_answer):
            similarity = 0.0
            semantic = self._semantic
            if semantic is not None:
                try:
                    first, second = await semantic.embedder.embed(
                        [shadow_answer, fresh_answer]
                    )
                    similarity = _cosine(first, second)
                except BackendUnavailableError as error:
                    _log.warning("cache_shadow_compare_failed", reason=error.reason)
                    return
        agreed = similarity >= self._agreement_similarity
        self._shadow_comparisons += 1
        self._shadow_agreements += agreed
        _log.info(
            "cache_semantic_shadow_compared",
            agreed=agreed,
            answer_similarity=round(similarity, 4),
        )

    def _entry(
        self,
        key: str,
        request: CacheableRequest,
        answer: Answer,
        ttl_seconds: float | None,
    ) -> CacheEntry:
        now = self._clock.now()
        ttl = self._default_ttl if ttl_seconds is None else ttl_seconds
        return CacheEntry(
            key=key,
            tenant_id=request.tenant_id,
            request_model=request.model,
            # An answer that does not name its model came from the requested one.
            answer=answer if answer.model else replace(answer, model=request.model),
            created_at=now,
            expires_at=now + min(ttl, self._max_ttl),
        )

    async def _put(self, entry: CacheEntry) -> StoreOutcome:
        put = await self._store.put(entry)
        self._evictions += put.evicted
        if not put.stored:
            return StoreOutcome.REFUSED_TOO_LARGE
        self._stores += 1
        return StoreOutcome.STORED

    async def _index(self, request: CacheableRequest, entry: CacheEntry) -> bool:
        semantic = self._semantic
        if semantic is None or semantic_ineligibility(request, semantic.policy):
            return False
        try:
            vector = await semantic.vector(request.input)
            await semantic.index.upsert(
                semantic.scope(request),
                request.input,
                entry,
                vector,
                fingerprint=fingerprint(request.input),
            )
        except BackendUnavailableError as error:
            self._semantic_errors += 1
            _log.warning("cache_semantic_store_failed", reason=error.reason)
            return False
        self._semantic_stores += 1
        return True

    @staticmethod
    def _refusal(
        answer: Answer, *, complete: bool, has_tool_calls: bool
    ) -> StoreOutcome | None:
        if not complete:
            return StoreOutcome.REFUSED_INCOMPLETE
        # A tool-call answer may have no text at all.
        if not answer.output_text and not has_tool_calls:
            return StoreOutcome.REFUSED_INCOMPLETE
        return None

    async def invalidate_key(self, key: str) -> InvalidateResult:
        """Remove the entry with ``key`` from both tiers."""
        exact = int(await self._store.delete(key))
        semantic = int(await self._semantic.index.delete(key)) if self._semantic else 0
        return self._invalidated("key", InvalidateResult(exact, semantic))

    async def invalidate_tenant(self, tenant_id: str) -> InvalidateResult:
        """Remove every entry of ``tenant_id`` from both tiers."""
        exact = await self._store.delete_tenant(tenant_id)
        semantic = (
            await self._semantic.index.delete_tenant(tenant_id) if self._semantic else 0
        )
        return self._invalidated("tenant", InvalidateResult(exact, semantic))

    async def invalidate_model(self, model: str) -> InvalidateResult:
        """Remove every entry requested from or produced by ``model``."""
        exact = await self._store.delete_model(model)
        semantic = (
            await self._semantic.index.delete_model(model) if self._semantic else 0
        )
        return self._invalidated("model", InvalidateResult(exact, semantic))

    async def invalidate_all(self) -> InvalidateResult:
        """Remove every entry from both tiers."""
        exact = await self._store.clear()
        semantic = await self._semantic.index.clear() if self._semantic else 0
        return self._invalidated("all", InvalidateResult(exact, semantic))

    @staticmethod
    def _invalidated(scope: str, result: InvalidateResult) -> InvalidateResult:
        _log.info(
            "cache_invalidated",
            scope=scope,
            exact_removed=result.exact,
            semantic_removed=result.semantic,
        )
        return result

    async def sweep(self) -> int:
        """Remove expired entries from both tiers; returns how many went."""
        now = self._clock.now()
        removed = await self._store.delete_expired(now)
        if self._semantic is not None:
            removed += await self._semantic.index.delete_expired(now)
        self._expired_removed += removed
        if removed:
            _log.info("cache_swept", removed_entries=removed)
        return removed

    async def stats(self) -> CacheStats:
        """The counters since start and both tiers' current sizes."""
        usage = await self._store.usage()
        semantic = self._semantic
        return CacheStats(
            exact_entries=usage.entries,
            exact_bytes=usage.bytes_used,
            exact_capacity_bytes=usage.capacity_bytes,
            exact_hits=self._exact_hits,
            misses=self._misses,
            stores=self._stores,
            evictions=self._evictions + usage.backend_evictions,
            exact_backend=self._store.backend,
            semantic_entries=await semantic.index.count() if semantic else 0,
            semantic_hits=self._semantic_hits,
            semantic_stores=self._semantic_stores,
            verification_rejections=sum(self._rejections.values()),
            rejections_by_check={k: v for k, v in self._rejections.items() if v},
            expired_removed=self._expired_removed,
            semantic_errors=self._semantic_errors,
            semantic_backend=(
                semantic.index.backend if semantic else SEMANTIC_BACKEND_DISABLED
            ),
            embedding_version=semantic.embedder.version if semantic else "",
            semantic_hits_by_check=dict(self._hits_by_check),
            shadow_hits=self._shadow_hits,
            shadow_comparisons=self._shadow_comparisons,
            shadow_agreements=self._shadow_agreements,
        )


def _plain(text: str) -> str:
    return " ".join(text.split()).casefold()


def _cosine(first: Sequence[float], second: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(first, second, strict=True))
    norms = math.sqrt(sum(x * x for x in first)) * math.sqrt(sum(y * y for y in second))
    return dot / norms if norms else 0.0
