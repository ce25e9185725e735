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

class Complexity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLEXITY_UNSPECIFIED: _ClassVar[Complexity]
    COMPLEXITY_TRIVIAL: _ClassVar[Complexity]
    COMPLEXITY_SIMPLE: _ClassVar[Complexity]
    COMPLEXITY_MODERATE: _ClassVar[Complexity]
    COMPLEXITY_COMPLEX: _ClassVar[Complexity]

class Lane(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LANE_UNSPECIFIED: _ClassVar[Lane]
    LANE_SYNC: _ClassVar[Lane]
    LANE_BATCH: _ClassVar[Lane]
    LANE_CACHE_ONLY: _ClassVar[Lane]
    LANE_STATIC: _ClassVar[Lane]
    LANE_QUEUE: _ClassVar[Lane]

class QualitySignal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_SIGNAL_UNSPECIFIED: _ClassVar[QualitySignal]
    QUALITY_SIGNAL_THUMBS_UP: _ClassVar[QualitySignal]
    QUALITY_SIGNAL_THUMBS_DOWN: _ClassVar[QualitySignal]
    QUALITY_SIGNAL_ESCALATED: _ClassVar[QualitySignal]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ACTIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLED_BACK: _ClassVar[DeploymentState]
COMPLEXITY_UNSPECIFIED: Complexity
COMPLEXITY_TRIVIAL: Complexity
COMPLEXITY_SIMPLE: Complexity
COMPLEXITY_MODERATE: Complexity
COMPLEXITY_COMPLEX: Complexity
LANE_UNSPECIFIED: Lane
LANE_SYNC: Lane
LANE_BATCH: Lane
LANE_CACHE_ONLY: Lane
LANE_STATIC: Lane
LANE_QUEUE: Lane
QUALITY_SIGNAL_UNSPECIFIED: QualitySignal
QUALITY_SIGNAL_THUMBS_UP: QualitySignal
QUALITY_SIGNAL_THUMBS_DOWN: QualitySignal
QUALITY_SIGNAL_ESCALATED: QualitySignal
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_ACTIVE: DeploymentState
DEPLOYMENT_STATE_ROLLED_BACK: DeploymentState

class RouteRequest(_message.Message):
    __slots__ = ("request_id", "caller", "priority", "request_type", "requested_model", "input", "input_tokens", "max_output_tokens", "conversation", "input_text_tokens", "previous_input", "input_embeddings", "embedding_version")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    INPUT_TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_INPUT_FIELD_NUMBER: _ClassVar[int]
    INPUT_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: _common_pb2.Caller
    priority: _common_pb2.Priority
    request_type: _common_pb2.RequestType
    requested_model: str
    input: str
    input_tokens: int
    max_output_tokens: int
    conversation: ConversationShape
    input_text_tokens: int
    previous_input: str
    input_embeddings: _containers.RepeatedScalarFieldContainer[float]
    embedding_version: str
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ..., requested_model: _Optional[str] = ..., input: _Optional[str] = ..., input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., conversation: _Optional[_Union[ConversationShape, _Mapping]] = ..., input_text_tokens: _Optional[int] = ..., previous_input: _Optional[str] = ..., input_embeddings: _Optional[_Iterable[float]] = ..., embedding_version: _Optional[str] = ...) -> None: ...

class ConversationShape(_message.Message):
    __slots__ = ("messages", "earlier_user_turns", "tools", "json_schema", "images", "tool_exchanges", "reasoning")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    EARLIER_USER_TURNS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOOL_EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    messages: int
    earlier_user_turns: int
    tools: int
    json_schema: bool
    images: int
    tool_exchanges: int
    reasoning: bool
    def __init__(self, messages: _Optional[int] = ..., earlier_user_turns: _Optional[int] = ..., tools: _Optional[int] = ..., json_schema: _Optional[bool] = ..., images: _Optional[int] = ..., tool_exchanges: _Optional[int] = ..., reasoning: _Optional[bool] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("model", "deployment", "deployment_version", "lane", "complexity", "tier", "reason", "max_output_tokens", "input_token_cap", "deployment_instructions", "temperature", "degradation_level", "fallback_models", "fallback_text", "worst_case_cost_micros", "truncated_input_tokens", "lease")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKEN_CAP_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODELS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_TEXT_FIELD_NUMBER: _ClassVar[int]
    WORST_CASE_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    model: str
    deployment: str
    deployment_version: str
    lane: Lane
    complexity: Complexity
    tier: str
    reason: str
    max_output_tokens: int
    input_token_cap: int
    deployment_instructions: str
    temperature: float
    degradation_level: _common_pb2.DegradationLevel
    fallback_models: _containers.RepeatedScalarFieldContainer[str]
    fallback_text: str
    worst_case_cost_micros: int
    truncated_input_tokens: int
    lease: RouteLease
    def __init__(self, model: _Optional[str] = ..., deployment: _Optional[str] = ..., deployment_version: _Optional[str] = ..., lane: _Optional[_Union[Lane, str]] = ..., complexity: _Optional[_Union[Complexity, str]] = ..., tier: _Optional[str] = ..., reason: _Optional[str] = ..., max_output_tokens: _Optional[int] = ..., input_token_cap: _Optional[int] = ..., deployment_instructions: _Optional[str] = ..., temperature: _Optional[float] = ..., degradation_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., fallback_models: _Optional[_Iterable[str]] = ..., fallback_text: _Optional[str] = ..., worst_case_cost_micros: _Optional[int] = ..., truncated_input_tokens: _Optional[int] = ..., lease: _Optional[_Union[RouteLease, _Mapping]] = ...) -> None: ...

class RouteLease(_message.Message):
    __slots__ = ("duration", "max_output_tokens_cap", "tier", "prices", "premium_prices")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_CAP_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    PREMIUM_PRICES_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    max_output_tokens_cap: int
    tier: str
    prices: TokenPrices
    premium_prices: TokenPrices
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_output_tokens_cap: _Optional[int] = ..., tier: _Optional[str] = ..., prices: _Optional[_Union[TokenPrices, _Mapping]] = ..., premium_prices: _Optional[_Union[TokenPrices, _Mapping]] = ...) -> None: ...

class TokenPrices(_message.Message):
    __slots__ = ("input_micros_per_million", "output_micros_per_million")
    INPUT_MICROS_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MICROS_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    input_micros_per_million: int
    output_micros_per_million: int
    def __init__(self, input_micros_per_million: _Optional[int] = ..., output_micros_per_million: _Optional[int] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("deployment", "model", "latency", "error", "request_id", "quality")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    model: str
    latency: _duration_pb2.Duration
    error: bool
    request_id: str
    quality: QualitySignal
    def __init__(self, deployment: _Optional[str] = ..., model: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error: _Optional[bool] = ..., request_id: _Optional[str] = ..., quality: _Optional[_Union[QualitySignal, str]] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("rolled_back", "rollback_reason", "quality_recorded")
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    QUALITY_RECORDED_FIELD_NUMBER: _ClassVar[int]
    rolled_back: bool
    rollback_reason: str
    quality_recorded: bool
    def __init__(self, rolled_back: _Optional[bool] = ..., rollback_reason: _Optional[str] = ..., quality_recorded: _Optional[bool] = ...) -> None: ...

class RecordOutcomeBatchRequest(_message.Message):
    __slots__ = ("items", "reused_routes")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REUSED_ROUTES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecordOutcomeRequest]
    reused_routes: _containers.RepeatedCompositeFieldContainer[ReusedRoutes]
    def __init__(self, items: _Optional[_Iterable[_Union[RecordOutcomeRequest, _Mapping]]] = ..., reused_routes: _Optional[_Iterable[_Union[ReusedRoutes, _Mapping]]] = ...) -> None: ...

class ReusedRoutes(_message.Message):
    __slots__ = ("tier", "lane", "decisions", "routed_cost_micros", "premium_cost_micros")
    TIER_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTED_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    PREMIUM_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    tier: str
    lane: Lane
    decisions: int
    routed_cost_micros: int
    premium_cost_micros: int
    def __init__(self, tier: _Optional[str] = ..., lane: _Optional[_Union[Lane, str]] = ..., decisions: _Optional[int] = ..., routed_cost_micros: _Optional[int] = ..., premium_cost_micros: _Optional[int] = ...) -> None: ...

class RecordOutcomeBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordOutcomeResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[RecordOutcomeResponse, _Mapping]]] = ...) -> None: ...

class TrafficAllocation(_message.Message):
    __slots__ = ("deployment", "percent")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    percent: int
    def __init__(self, deployment: _Optional[str] = ..., percent: _Optional[int] = ...) -> None: ...

class SetTrafficSplitRequest(_message.Message):
    __slots__ = ("allocations",)
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[TrafficAllocation]
    def __init__(self, allocations: _Optional[_Iterable[_Union[TrafficAllocation, _Mapping]]] = ...) -> None: ...

class SetTrafficSplitResponse(_message.Message):
    __slots__ = ("allocations",)
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[TrafficAllocation]
    def __init__(self, allocations: _Optional[_Iterable[_Union[TrafficAllocation, _Mapping]]] = ...) -> None: ...

class GetDeploymentStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeploymentStatus(_message.Message):
    __slots__ = ("name", "model", "version", "traffic_percent", "requests", "errors", "error_rate", "p50_latency_ms", "p95_latency_ms", "state", "rollback_reason", "rolled_back_at", "window_requests", "window_errors", "baseline_deployment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_AT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ERRORS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    version: str
    traffic_percent: int
    requests: int
    errors: int
    error_rate: float
    p50_latency_ms: float
    p95_latency_ms: float
    state: DeploymentState
    rollback_reason: str
    rolled_back_at: _timestamp_pb2.Timestamp
    window_requests: int
    window_errors: int
    baseline_deployment: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., traffic_percent: _Optional[int] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., p50_latency_ms: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., rollback_reason: _Optional[str] = ..., rolled_back_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_requests: _Optional[int] = ..., window_errors: _Optional[int] = ..., baseline_deployment: _Optional[str] = ...) -> None: ...

class GetDeploymentStatusResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentStatus]
    def __init__(self, deployments: _Optional[_Iterable[_Union[DeploymentStatus, _Mapping]]] = ...) -> None: ...

class SetDegradationLevelRequest(_message.Message):
    __slots__ = ("level", "reason", "raise_only", "hold", "duration")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RAISE_ONLY_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.DegradationLevel
    reason: str
    raise_only: bool
    hold: _duration_pb2.Duration
    duration: _duration_pb2.Duration
    def __init__(self, level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., reason: _Optional[str] = ..., raise_only: _Optional[bool] = ..., hold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SetDegradationLevelResponse(_message.Message):
    __slots__ = ("level", "previous_level", "applied", "expires_at")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LEVEL_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    level: _common_pb2.DegradationLevel
    previous_level: _common_pb2.DegradationLevel
    applied: bool
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., previous_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., applied: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRoutingStatsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class RoutingCount(_message.Message):
    __slots__ = ("label", "requests")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    label: str
    requests: int
    def __init__(self, label: _Optional[str] = ..., requests: _Optional[int] = ...) -> None: ...

class GetRoutingStatsResponse(_message.Message):
    __slots__ = ("by_tier", "by_complexity", "routed_cost_micros", "premium_cost_micros", "degradation_level", "savings_micros", "tenants", "degradation_level_until")
    BY_TIER_FIELD_NUMBER: _ClassVar[int]
    BY_COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    ROUTED_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    PREMIUM_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SAVINGS_MICROS_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_UNTIL_FIELD_NUMBER: _ClassVar[int]
    by_tier: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    by_complexity: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    routed_cost_micros: int
    premium_cost_micros: int
    degradation_level: _common_pb2.DegradationLevel
    savings_micros: int
    tenants: _containers.RepeatedCompositeFieldContainer[TenantRoutingStats]
    degradation_level_until: _timestamp_pb2.Timestamp
    def __init__(self, by_tier: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ..., by_complexity: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ..., routed_cost_micros: _Optional[int] = ..., premium_cost_micros: _Optional[int] = ..., degradation_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., savings_micros: _Optional[int] = ..., tenants: _Optional[_Iterable[_Union[TenantRoutingStats, _Mapping]]] = ..., degradation_level_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TenantRoutingStats(_message.Message):
    __slots__ = ("tenant_id", "requests", "by_complexity", "downgraded_requests", "downgrade_rate", "signals", "downgraded_signals", "downgraded_complaint_rate", "shadow_verdicts")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BY_COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADE_RATE_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADED_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADED_COMPLAINT_RATE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERDICTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requests: int
    by_complexity: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    downgraded_requests: int
    downgrade_rate: float
    signals: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    downgraded_signals: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    downgraded_complaint_rate: float
    shadow_verdicts: _containers.RepeatedCompositeFieldContainer[RoutingCount]
    def __init__(self, tenant_id: _Optional[str] = ..., requests: _Optional[int] = ..., by_complexity: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ..., downgraded_requests: _Optional[int] = ..., downgrade_rate: _Optional[float] = ..., signals: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ..., downgraded_signals: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ..., downgraded_complaint_rate: _Optional[float] = ..., shadow_verdicts: _Optional[_Iterable[_Union[RoutingCount, _Mapping]]] = ...) -> None: ...
