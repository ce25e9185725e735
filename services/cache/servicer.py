"""gRPC surface of the cache service: validate, decode, call the domain, encode."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
import structlog
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.common.v1 import common_pb2 as common_pb

from services.cache.domain import (
    Answer,
    CacheableRequest,
    CacheEntry,
    InvalidateResult,
    LookupStatus,
    PolicyRule,
    ResponseCache,
    SemanticMode,
    StoreOutcome,
    Usage,
)
from services.core import metrics
from services.core.common_codec import (
    finish_reason_from_proto,
    finish_reason_proto,
    tool_calls_from_proto,
    tool_calls_proto,
)
from services.core.errors import FieldViolation, InvalidArgumentError

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_log = structlog.get_logger("tollgate.cache")

_TEMPERATURE_RANGE = (0.0, 2.0)
_TOP_P_RANGE = (0.0, 1.0)

_STORE_OUTCOMES = {
    StoreOutcome.STORED: cache_pb.STORE_OUTCOME_STORED,
    StoreOutcome.REFUSED_INCOMPLETE: cache_pb.STORE_OUTCOME_REFUSED_INCOMPLETE,
    StoreOutcome.REFUSED_TOO_LARGE: cache_pb.STORE_OUTCOME_REFUSED_TOO_LARGE,
}


_LOOKUP_STATUSES = {
    LookupStatus.MISS: common_pb.CACHE_STATUS_MISS,
    LookupStatus.EXACT: common_pb.CACHE_STATUS_EXACT,
    LookupStatus.SEMANTIC: common_pb.CACHE_STATUS_SEMANTIC,
}


_SEMANTIC_MODES = {
    SemanticMode.OFF: cache_pb.SEMANTIC_MODE_OFF,
    SemanticMode.SHADOW: cache_pb.SEMANTIC_MODE_SHADOW,
    SemanticMode.SERVE: cache_pb.SEMANTIC_MODE_SERVE,
}
_MODES_FROM_PROTO = {value: mode for mode, value in _SEMANTIC_MODES.items()}
_REQUEST_TYPES = {
    common_pb.REQUEST_TYPE_UNSPECIFIED: "",
    common_pb.REQUEST_TYPE_CHAT: "chat",
    common_pb.REQUEST_TYPE_SUMMARIZE: "summarize",
    common_pb.REQUEST_TYPE_ANALYZE: "analyze",
    common_pb.REQUEST_TYPE_CLASSIFY: "classify",
    common_pb.REQUEST_TYPE_GENERATE: "generate",
}
_REQUEST_TYPES_TO_PROTO = {name: value for value, name in _REQUEST_TYPES.items()}

# Embed cuts a text here: the embedder reads at most 256 tokens of it anyway.
_MAX_EMBED_CHARS = 100_000

# An exact-tier key as Lookup and Store return it: a hex SHA-256.
_EXACT_KEY = re.compile(r"[0-9a-f]{64}")


class CacheServicer:
    """Implements ``tollgate.cache.v1.CacheService`` over a :class:`ResponseCache`.

    Args:
        cache: the domain.
        similarity_threshold: reported by GetStats.
    """

    def __init__(self, cache: ResponseCache, similarity_threshold: float = 0.0) -> None:
        self._cache = cache
        self._similarity_threshold = similarity_threshold

    async def Lookup(
        self, request: cache_pb.LookupRequest, context: Context
    ) -> cache_pb.LookupResponse:
        """Find a cached answer: exact tier, then (if allowed) semantic tier.

        A miss is ``hit=false``; a semantic hit carries its similarity.
        """
        violations = _request_violations(request.request)
        if violations:
            raise InvalidArgumentError(violations)
        structlog.contextvars.bind_contextvars(tenant=request.request.tenant_id)
        result = await self._cache.lookup(
            _decode_request(request.request), allow_semantic=request.allow_semantic
        )
        response = cache_pb.LookupResponse(
            hit=result.hit,
            status=_LOOKUP_STATUSES[result.status],
            similarity=result.similarity,
            key=result.key,
            rejected_candidates=result.rejected_candidates,
            embedding_latency_ms=result.embedding_seconds * 1000,
            search_latency_ms=result.search_seconds * 1000,
            accepted_check=result.accepted_check,
            shadow_hit=result.shadow_hit,
        )
        if result.mode is not None:
            response.semantic_mode = _SEMANTIC_MODES[result.mode]
        if result.accepted_check:
            mode = "shadow" if result.shadow_hit else "serve"
            metrics.CACHE_SEMANTIC_HITS.labels(
                check=result.accepted_check, mode=mode
            ).inc()
        if result.entry is not None:
            response.response.CopyFrom(_encode_entry(result.entry))
            response.age.FromTimedelta(timedelta(seconds=result.age_seconds))
        return response

    async def Embed(
        self, request: cache_pb.EmbedRequest, context: Context
    ) -> cache_pb.EmbedResponse:
        """Deprecated: the semantic tier's vector of ``input``, kept for its Lookup.

        No Tollgate service calls it since the router classifies with an encoder
        of its own; the vector is kept for the Lookup and Store of the same text.

        Never INVALID_ARGUMENT: a caller goes on without the vector. The model
        reads 256 tokens at most, so a longer text is cut before the tokenizer.
        """
        vector, version = await self._cache.embed(request.input[:_MAX_EMBED_CHARS])
        return cache_pb.EmbedResponse(vector=vector, embedding_version=version)

    async def Store(
        self, request: cache_pb.StoreRequest, context: Context
    ) -> cache_pb.StoreResponse:
        """Cache an answer; refusals are ``stored=false`` with the outcome."""
        violations = _request_violations(request.request)
        if not request.HasField("response"):
            violations.append(FieldViolation("response", "must be set"))
        ttl_seconds: float | None = None
        if request.HasField("ttl"):
            ttl_seconds = float(request.ttl.seconds + request.ttl.nanos / 1e9)
            if ttl_seconds <= 0:
                violations.append(FieldViolation("ttl", "must be positive"))
        if violations:
            raise InvalidArgumentError(violations)
        structlog.contextvars.bind_contextvars(tenant=request.request.tenant_id)
        result = await self._cache.store(
            _decode_request(request.request),
            _decode_answer(request.response),
            complete=request.complete,
            has_tool_calls=request.has_tool_calls,
            ttl_seconds=ttl_seconds,
        )
        return cache_pb.StoreResponse(
            stored=result.stored,
            outcome=_STORE_OUTCOMES[result.outcome],
            key=result.key,
            semantic_indexed=result.semantic_indexed,
        )

    async def Invalidate(
        self, request: cache_pb.InvalidateRequest, context: Context
    ) -> cache_pb.InvalidateResponse:
        """Remove entries by key, tenant, model or all."""
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidArgumentError(
                [FieldViolation("target", "set one of key, tenant_id, model, all")]
            )
        if not getattr(request, target):
            raise InvalidArgumentError(
                [FieldViolation(target, "must not be empty (or false for all)")]
            )
        if target == "key" and not _EXACT_KEY.fullmatch(request.key):
            raise InvalidArgumentError(
                [FieldViolation("key", "must be an exact-tier key: 64 hex characters")]
            )
        removed: InvalidateResult
        if target == "key":
            removed = await self._cache.invalidate_key(request.key)
        elif target == "tenant_id":
            removed = await self._cache.invalidate_tenant(request.tenant_id)
        elif target == "model":
            removed = await self._cache.invalidate_model(request.model)
        else:
            removed = await self._cache.invalidate_all()
        return cache_pb.InvalidateResponse(
            removed_entries=removed.total,
            exact_removed_entries=removed.exact,
            semantic_removed_entries=removed.semantic,
        )

    async def GetStats(
        self, request: cache_pb.GetStatsRequest, context: Context
    ) -> cache_pb.GetStatsResponse:
        """Report sizes, counters and backends."""
        stats = await self._cache.stats()
        return cache_pb.GetStatsResponse(
            exact_entries=stats.exact_entries,
            exact_bytes=stats.exact_bytes,
            exact_capacity_bytes=stats.exact_capacity_bytes,
            semantic_entries=stats.semantic_entries,
            exact_hits=stats.exact_hits,
            semantic_hits=stats.semantic_hits,
            misses=stats.misses,
            stores=stats.stores,
            evictions=stats.evictions,
            verification_rejections=stats.verification_rejections,
            hit_rate=stats.hit_rate,
            exact_backend=stats.exact_backend,
            semantic_backend=stats.semantic_backend,
            semantic_stores=stats.semantic_stores,
            verification_rejections_by_check=stats.rejections_by_check,
            expired_removed=stats.expired_removed,
            semantic_errors=stats.semantic_errors,
            embedding_version=stats.embedding_version,
            similarity_threshold=(
                self._similarity_threshold or self._cache.control.default_threshold
            ),
            semantic_hits_by_check=stats.semantic_hits_by_check,
            shadow_hits=stats.shadow_hits,
            shadow_comparisons=stats.shadow_comparisons,
            shadow_agreements=stats.shadow_agreements,
            shadow_agreement_rate=stats.shadow_agreement_rate,
            default_semantic_mode=_SEMANTIC_MODES[self._cache.control.default_mode],
        )

    async def SetSemanticPolicy(
        self, request: cache_pb.SetSemanticPolicyRequest, context: Context
    ) -> cache_pb.SetSemanticPolicyResponse:
        """Set or clear the semantic rule of a tenant, a request type or both."""
        rule = _decode_rule(request.rule)
        control = self._cache.control
        if request.clear:
            control.clear_rule(rule.tenant_id, rule.request_type)
            event = "cache_semantic_rule_cleared"
        else:
            try:
                control.set_rule(rule)
            except ValueError as error:
                raise InvalidArgumentError(
                    [FieldViolation("rule", str(error))]
                ) from error
            event = "cache_semantic_rule_set"
        _log.info(
            event,
            rule_tenant=rule.tenant_id,
            request_type=rule.request_type,
            mode=rule.mode.value if rule.mode else "",
            similarity_threshold=rule.similarity_threshold,
        )
        return cache_pb.SetSemanticPolicyResponse(
            rules=[_encode_rule(r) for r in control.rules()]
        )

    async def GetSemanticPolicy(
        self, request: cache_pb.GetSemanticPolicyRequest, context: Context
    ) -> cache_pb.GetSemanticPolicyResponse:
        """Report the default, the rules and what one route resolves to."""
        control = self._cache.control
        route = control.resolve(
            request.tenant_id, _REQUEST_TYPES.get(request.request_type, "")
        )
        return cache_pb.GetSemanticPolicyResponse(
            default_mode=_SEMANTIC_MODES[control.default_mode],
            default_similarity_threshold=control.default_threshold,
            rules=[_encode_rule(r) for r in control.rules()],
            effective_mode=_SEMANTIC_MODES[route.mode],
            effective_similarity_threshold=route.similarity_threshold,
        )


def _decode_rule(rule: cache_pb.SemanticPolicyRule) -> PolicyRule:
    if rule.request_type not in _REQUEST_TYPES:
        raise InvalidArgumentError(
            [FieldViolation("rule.request_type", "is not a known request type")]
        )
    return PolicyRule(
        tenant_id=rule.tenant_id,
        request_type=_REQUEST_TYPES[rule.request_type],
        mode=_MODES_FROM_PROTO.get(rule.mode),
        similarity_threshold=(
            rule.similarity_threshold if rule.HasField("similarity_threshold") else None
        ),
    )


def _encode_rule(rule: PolicyRule) -> cache_pb.SemanticPolicyRule:
    encoded = cache_pb.SemanticPolicyRule(
        tenant_id=rule.tenant_id,
        request_type=_REQUEST_TYPES_TO_PROTO[rule.request_type],
    )
    if rule.mode is not None:
        encoded.mode = _SEMANTIC_MODES[rule.mode]
    if rule.similarity_threshold is not None:
        encoded.similarity_threshold = rule.similarity_threshold
    return encoded


def _request_violations(request: cache_pb.CacheableRequest) -> list[FieldViolation]:
    violations = []
    if not request.tenant_id:
        violations.append(FieldViolation("request.tenant_id", "is required"))
    if not request.model:
        violations.append(FieldViolation("request.model", "is required"))
    for name, (low, high) in (
        ("temperature", _TEMPERATURE_RANGE),
        ("top_p", _TOP_P_RANGE),
    ):
        # The negated form also rejects NaN.
        if request.HasField(name) and not low <= getattr(request, name) <= high:
            violations.append(
                FieldViolation(f"request.{name}", f"must be between {low} and {high}")
            )
    if request.max_output_tokens < 0:
        violations.append(
            FieldViolation("request.max_output_tokens", "must not be negative")
        )
    return violations


def _decode_request(request: cache_pb.CacheableRequest) -> CacheableRequest:
    return CacheableRequest(
        tenant_id=request.tenant_id,
        model=request.model,
        instructions=request.instructions,
        input=request.input,
        temperature=request.temperature if request.HasField("temperature") else None,
        top_p=request.top_p if request.HasField("top_p") else None,
        max_output_tokens=request.max_output_tokens,
        tools_json=request.tools_json,
        response_format_json=request.response_format_json,
        multi_turn=request.multi_turn,
        context_digest=request.context_digest,
        exact_only_reason=request.exact_only_reason,
        request_type=_REQUEST_TYPES.get(request.request_type, ""),
    )


def _decode_answer(response: cache_pb.CachedResponse) -> Answer:
    return Answer(
        output_text=response.output_text,
        model=response.model,
        usage=Usage(
            input_tokens=response.usage.input_tokens,
            cached_input_tokens=response.usage.cached_input_tokens,
            output_tokens=response.usage.output_tokens,
            reasoning_tokens=response.usage.reasoning_tokens,
        ),
        tool_calls=tool_calls_from_proto(response.tool_calls),
        finish_reason=finish_reason_from_proto(response.finish_reason),
    )


def _encode_entry(entry: CacheEntry) -> cache_pb.CachedResponse:
    usage = entry.answer.usage
    return cache_pb.CachedResponse(
        output_text=entry.answer.output_text,
        model=entry.answer.model,
        usage=common_pb.Usage(
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        ),
        created_at=_timestamp(entry.created_at),
        expires_at=_timestamp(entry.expires_at),
        tool_calls=tool_calls_proto(entry.answer.tool_calls),
        finish_reason=finish_reason_proto(entry.answer.finish_reason),
    )


def _timestamp(seconds: float) -> datetime:
    # The generated constructors take datetimes for Timestamp fields.
    return datetime.fromtimestamp(seconds, tz=UTC)
