import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tollgate.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SemanticMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEMANTIC_MODE_UNSPECIFIED: _ClassVar[SemanticMode]
    SEMANTIC_MODE_OFF: _ClassVar[SemanticMode]
    SEMANTIC_MODE_SHADOW: _ClassVar[SemanticMode]
    SEMANTIC_MODE_SERVE: _ClassVar[SemanticMode]

class StoreOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_OUTCOME_UNSPECIFIED: _ClassVar[StoreOutcome]
    STORE_OUTCOME_STORED: _ClassVar[StoreOutcome]
    STORE_OUTCOME_REFUSED_INCOMPLETE: _ClassVar[StoreOutcome]
    STORE_OUTCOME_REFUSED_TOOL_CALLS: _ClassVar[StoreOutcome]
    STORE_OUTCOME_REFUSED_TOO_LARGE: _ClassVar[StoreOutcome]
SEMANTIC_MODE_UNSPECIFIED: SemanticMode
SEMANTIC_MODE_OFF: SemanticMode
SEMANTIC_MODE_SHADOW: SemanticMode
SEMANTIC_MODE_SERVE: SemanticMode
STORE_OUTCOME_UNSPECIFIED: StoreOutcome
STORE_OUTCOME_STORED: StoreOutcome
STORE_OUTCOME_REFUSED_INCOMPLETE: StoreOutcome
STORE_OUTCOME_REFUSED_TOOL_CALLS: StoreOutcome
STORE_OUTCOME_REFUSED_TOO_LARGE: StoreOutcome

class SemanticPolicyRule(_message.Message):
    __slots__ = ("tenant_id", "request_type", "mode", "similarity_threshold")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request_type: _common_pb2.RequestType
    mode: SemanticMode
    similarity_threshold: float
    def __init__(self, tenant_id: _Optional[str] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ..., mode: _Optional[_Union[SemanticMode, str]] = ..., similarity_threshold: _Optional[float] = ...) -> None: ...

class SetSemanticPolicyRequest(_message.Message):
    __slots__ = ("rule", "clear")
    RULE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    rule: SemanticPolicyRule
    clear: bool
    def __init__(self, rule: _Optional[_Union[SemanticPolicyRule, _Mapping]] = ..., clear: _Optional[bool] = ...) -> None: ...

class SetSemanticPolicyResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[SemanticPolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[SemanticPolicyRule, _Mapping]]] = ...) -> None: ...

class GetSemanticPolicyRequest(_message.Message):
    __slots__ = ("tenant_id", "request_type")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request_type: _common_pb2.RequestType
    def __init__(self, tenant_id: _Optional[str] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ...) -> None: ...

class GetSemanticPolicyResponse(_message.Message):
    __slots__ = ("default_mode", "default_similarity_threshold", "rules", "effective_mode", "effective_similarity_threshold")
    DEFAULT_MODE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_MODE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    default_mode: SemanticMode
    default_similarity_threshold: float
    rules: _containers.RepeatedCompositeFieldContainer[SemanticPolicyRule]
    effective_mode: SemanticMode
    effective_similarity_threshold: float
    def __init__(self, default_mode: _Optional[_Union[SemanticMode, str]] = ..., default_similarity_threshold: _Optional[float] = ..., rules: _Optional[_Iterable[_Union[SemanticPolicyRule, _Mapping]]] = ..., effective_mode: _Optional[_Union[SemanticMode, str]] = ..., effective_similarity_threshold: _Optional[float] = ...) -> None: ...

class CacheableRequest(_message.Message):
    __slots__ = ("tenant_id", "model", "instructions", "input", "temperature", "top_p", "max_output_tokens", "tools_json", "response_format_json", "multi_turn", "context_digest", "exact_only_reason", "request_type")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_JSON_FIELD_NUMBER: _ClassVar[int]
    MULTI_TURN_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EXACT_ONLY_REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    model: str
    instructions: str
    input: str
    temperature: float
    top_p: float
    max_output_tokens: int
    tools_json: str
    response_format_json: str
    multi_turn: bool
    context_digest: str
    exact_only_reason: str
    request_type: _common_pb2.RequestType
    def __init__(self, tenant_id: _Optional[str] = ..., model: _Optional[str] = ..., instructions: _Optional[str] = ..., input: _Optional[str] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_output_tokens: _Optional[int] = ..., tools_json: _Optional[str] = ..., response_format_json: _Optional[str] = ..., multi_turn: _Optional[bool] = ..., context_digest: _Optional[str] = ..., exact_only_reason: _Optional[str] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ...) -> None: ...

class CachedResponse(_message.Message):
    __slots__ = ("output_text", "model", "usage", "created_at", "expires_at", "tool_calls", "finish_reason")
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    output_text: str
    model: str
    usage: _common_pb2.Usage
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    finish_reason: _common_pb2.FinishReason
    def __init__(self, output_text: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("request_id", "request", "allow_semantic")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request: CacheableRequest
    allow_semantic: bool
    def __init__(self, request_id: _Optional[str] = ..., request: _Optional[_Union[CacheableRequest, _Mapping]] = ..., allow_semantic: _Optional[bool] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "status", "similarity", "response", "key", "rejected_candidates", "age", "embedding_latency_ms", "search_latency_ms", "accepted_check", "shadow_hit", "semantic_mode")
    HIT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REJECTED_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_CHECK_FIELD_NUMBER: _ClassVar[int]
    SHADOW_HIT_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_MODE_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    status: _common_pb2.CacheStatus
    similarity: float
    response: CachedResponse
    key: str
    rejected_candidates: int
    age: _duration_pb2.Duration
    embedding_latency_ms: float
    search_latency_ms: float
    accepted_check: str
    shadow_hit: bool
    semantic_mode: SemanticMode
    def __init__(self, hit: _Optional[bool] = ..., status: _Optional[_Union[_common_pb2.CacheStatus, str]] = ..., similarity: _Optional[float] = ..., response: _Optional[_Union[CachedResponse, _Mapping]] = ..., key: _Optional[str] = ..., rejected_candidates: _Optional[int] = ..., age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., embedding_latency_ms: _Optional[float] = ..., search_latency_ms: _Optional[float] = ..., accepted_check: _Optional[str] = ..., shadow_hit: _Optional[bool] = ..., semantic_mode: _Optional[_Union[SemanticMode, str]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("request_id", "input")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    input: str
    def __init__(self, request_id: _Optional[str] = ..., input: _Optional[str] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("vector", "embedding_version")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    embedding_version: str
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., embedding_version: _Optional[str] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("request_id", "request", "response", "ttl", "complete", "has_tool_calls")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    HAS_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request: CacheableRequest
    response: CachedResponse
    ttl: _duration_pb2.Duration
    complete: bool
    has_tool_calls: bool
    def __init__(self, request_id: _Optional[str] = ..., request: _Optional[_Union[CacheableRequest, _Mapping]] = ..., response: _Optional[_Union[CachedResponse, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., complete: _Optional[bool] = ..., has_tool_calls: _Optional[bool] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("stored", "outcome", "key", "semantic_indexed")
    STORED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_INDEXED_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    outcome: StoreOutcome
    key: str
    semantic_indexed: bool
    def __init__(self, stored: _Optional[bool] = ..., outcome: _Optional[_Union[StoreOutcome, str]] = ..., key: _Optional[str] = ..., semantic_indexed: _Optional[bool] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("key", "tenant_id", "model", "all")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    key: str
    tenant_id: str
    model: str
    all: bool
    def __init__(self, key: _Optional[str] = ..., tenant_id: _Optional[str] = ..., model: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed_entries", "exact_removed_entries", "semantic_removed_entries")
    REMOVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EXACT_REMOVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_REMOVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    removed_entries: int
    exact_removed_entries: int
    semantic_removed_entries: int
    def __init__(self, removed_entries: _Optional[int] = ..., exact_removed_entries: _Optional[int] = ..., semantic_removed_entries: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("exact_entries", "exact_bytes", "exact_capacity_bytes", "semantic_entries", "exact_hits", "semantic_hits", "misses", "stores", "evictions", "verification_rejections", "hit_rate", "exact_backend", "semantic_backend", "semantic_stores", "verification_rejections_by_check", "expired_removed", "semantic_errors", "embedding_version", "similarity_threshold", "semantic_hits_by_check", "shadow_hits", "shadow_comparisons", "shadow_agreements", "shadow_agreement_rate", "default_semantic_mode")
    class VerificationRejectionsByCheckEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SemanticHitsByCheckEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EXACT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EXACT_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXACT_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    EXACT_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_STORES_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_REJECTIONS_BY_CHECK_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_ERRORS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_BY_CHECK_FIELD_NUMBER: _ClassVar[int]
    SHADOW_HITS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SEMANTIC_MODE_FIELD_NUMBER: _ClassVar[int]
    exact_entries: int
    exact_bytes: int
    exact_capacity_bytes: int
    semantic_entries: int
    exact_hits: int
    semantic_hits: int
    misses: int
    stores: int
    evictions: int
    verification_rejections: int
    hit_rate: float
    exact_backend: str
    semantic_backend: str
    semantic_stores: int
    verification_rejections_by_check: _containers.ScalarMap[str, int]
    expired_removed: int
    semantic_errors: int
    embedding_version: str
    similarity_threshold: float
    semantic_hits_by_check: _containers.ScalarMap[str, int]
    shadow_hits: int
    shadow_comparisons: int
    shadow_agreements: int
    shadow_agreement_rate: float
    default_semantic_mode: SemanticMode
    def __init__(self, exact_entries: _Optional[int] = ..., exact_bytes: _Optional[int] = ..., exact_capacity_bytes: _Optional[int] = ..., semantic_entries: _Optional[int] = ..., exact_hits: _Optional[int] = ..., semantic_hits: _Optional[int] = ..., misses: _Optional[int] = ..., stores: _Optional[int] = ..., evictions: _Optional[int] = ..., verification_rejections: _Optional[int] = ..., hit_rate: _Optional[float] = ..., exact_backend: _Optional[str] = ..., semantic_backend: _Optional[str] = ..., semantic_stores: _Optional[int] = ..., verification_rejections_by_check: _Optional[_Mapping[str, int]] = ..., expired_removed: _Optional[int] = ..., semantic_errors: _Optional[int] = ..., embedding_version: _Optional[str] = ..., similarity_threshold: _Optional[float] = ..., semantic_hits_by_check: _Optional[_Mapping[str, int]] = ..., shadow_hits: _Optional[int] = ..., shadow_comparisons: _Optional[int] = ..., shadow_agreements: _Optional[int] = ..., shadow_agreement_rate: _Optional[float] = ..., default_semantic_mode: _Optional[_Union[SemanticMode, str]] = ...) -> None: ...
