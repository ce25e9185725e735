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

class BatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATUS_UNSPECIFIED: _ClassVar[BatchStatus]
    BATCH_STATUS_QUEUED: _ClassVar[BatchStatus]
    BATCH_STATUS_VALIDATING: _ClassVar[BatchStatus]
    BATCH_STATUS_IN_PROGRESS: _ClassVar[BatchStatus]
    BATCH_STATUS_FINALIZING: _ClassVar[BatchStatus]
    BATCH_STATUS_COMPLETED: _ClassVar[BatchStatus]
    BATCH_STATUS_FAILED: _ClassVar[BatchStatus]
    BATCH_STATUS_EXPIRED: _ClassVar[BatchStatus]
    BATCH_STATUS_CANCELLING: _ClassVar[BatchStatus]
    BATCH_STATUS_CANCELLED: _ClassVar[BatchStatus]

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]

class UsageBudgetScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_BUDGET_SCOPE_UNSPECIFIED: _ClassVar[UsageBudgetScope]
    USAGE_BUDGET_SCOPE_TENANT: _ClassVar[UsageBudgetScope]
    USAGE_BUDGET_SCOPE_SERVICE: _ClassVar[UsageBudgetScope]
    USAGE_BUDGET_SCOPE_USER: _ClassVar[UsageBudgetScope]
    USAGE_BUDGET_SCOPE_KEY: _ClassVar[UsageBudgetScope]

class UsageBudgetPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_BUDGET_PERIOD_UNSPECIFIED: _ClassVar[UsageBudgetPeriod]
    USAGE_BUDGET_PERIOD_DAY: _ClassVar[UsageBudgetPeriod]
    USAGE_BUDGET_PERIOD_MONTH: _ClassVar[UsageBudgetPeriod]

class UsageReportGrouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_REPORT_GROUPING_UNSPECIFIED: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_TENANT: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_API_KEY: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_USER: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_SERVICE: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_MODEL: _ClassVar[UsageReportGrouping]
    USAGE_REPORT_GROUPING_DAY: _ClassVar[UsageReportGrouping]

class ApiKeySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_KEY_SOURCE_UNSPECIFIED: _ClassVar[ApiKeySource]
    API_KEY_SOURCE_STORE: _ClassVar[ApiKeySource]
    API_KEY_SOURCE_FILE: _ClassVar[ApiKeySource]
BATCH_STATUS_UNSPECIFIED: BatchStatus
BATCH_STATUS_QUEUED: BatchStatus
BATCH_STATUS_VALIDATING: BatchStatus
BATCH_STATUS_IN_PROGRESS: BatchStatus
BATCH_STATUS_FINALIZING: BatchStatus
BATCH_STATUS_COMPLETED: BatchStatus
BATCH_STATUS_FAILED: BatchStatus
BATCH_STATUS_EXPIRED: BatchStatus
BATCH_STATUS_CANCELLING: BatchStatus
BATCH_STATUS_CANCELLED: BatchStatus
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState
USAGE_BUDGET_SCOPE_UNSPECIFIED: UsageBudgetScope
USAGE_BUDGET_SCOPE_TENANT: UsageBudgetScope
USAGE_BUDGET_SCOPE_SERVICE: UsageBudgetScope
USAGE_BUDGET_SCOPE_USER: UsageBudgetScope
USAGE_BUDGET_SCOPE_KEY: UsageBudgetScope
USAGE_BUDGET_PERIOD_UNSPECIFIED: UsageBudgetPeriod
USAGE_BUDGET_PERIOD_DAY: UsageBudgetPeriod
USAGE_BUDGET_PERIOD_MONTH: UsageBudgetPeriod
USAGE_REPORT_GROUPING_UNSPECIFIED: UsageReportGrouping
USAGE_REPORT_GROUPING_TENANT: UsageReportGrouping
USAGE_REPORT_GROUPING_API_KEY: UsageReportGrouping
USAGE_REPORT_GROUPING_USER: UsageReportGrouping
USAGE_REPORT_GROUPING_SERVICE: UsageReportGrouping
USAGE_REPORT_GROUPING_MODEL: UsageReportGrouping
USAGE_REPORT_GROUPING_DAY: UsageReportGrouping
API_KEY_SOURCE_UNSPECIFIED: ApiKeySource
API_KEY_SOURCE_STORE: ApiKeySource
API_KEY_SOURCE_FILE: ApiKeySource

class CreateResponseRequest(_message.Message):
    __slots__ = ("input", "instructions", "model", "priority", "request_type", "max_output_tokens", "temperature", "user_id", "metadata", "cache_bypass", "asynchronous", "messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "top_p", "reasoning_effort", "safety_identifier")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYPASS_FIELD_NUMBER: _ClassVar[int]
    ASYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    SAFETY_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    input: str
    instructions: str
    model: str
    priority: _common_pb2.Priority
    request_type: _common_pb2.RequestType
    max_output_tokens: int
    temperature: float
    user_id: str
    metadata: _containers.ScalarMap[str, str]
    cache_bypass: bool
    asynchronous: bool
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    tool_choice: _common_pb2.ToolChoice
    parallel_tool_calls: bool
    response_format: _common_pb2.ResponseFormat
    top_p: float
    reasoning_effort: _common_pb2.ReasoningEffort
    safety_identifier: str
    def __init__(self, input: _Optional[str] = ..., instructions: _Optional[str] = ..., model: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ..., max_output_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., user_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., cache_bypass: _Optional[bool] = ..., asynchronous: _Optional[bool] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[_common_pb2.ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[_common_pb2.ResponseFormat, _Mapping]] = ..., top_p: _Optional[float] = ..., reasoning_effort: _Optional[_Union[_common_pb2.ReasoningEffort, str]] = ..., safety_identifier: _Optional[str] = ...) -> None: ...

class CreateResponseResponse(_message.Message):
    __slots__ = ("output_text", "model", "deployment", "cache_status", "similarity", "usage", "cost_micros", "request_id", "degradation_level", "input_truncated", "input_tokens_dropped", "output_truncated", "currency_code", "ticket_id", "latency", "cache_age", "tool_calls", "finish_reason", "semantic_check")
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    CACHE_STATUS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    CACHE_AGE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_CHECK_FIELD_NUMBER: _ClassVar[int]
    output_text: str
    model: str
    deployment: str
    cache_status: _common_pb2.CacheStatus
    similarity: float
    usage: _common_pb2.Usage
    cost_micros: int
    request_id: str
    degradation_level: _common_pb2.DegradationLevel
    input_truncated: bool
    input_tokens_dropped: int
    output_truncated: bool
    currency_code: str
    ticket_id: str
    latency: _duration_pb2.Duration
    cache_age: _duration_pb2.Duration
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    finish_reason: _common_pb2.FinishReason
    semantic_check: str
    def __init__(self, output_text: _Optional[str] = ..., model: _Optional[str] = ..., deployment: _Optional[str] = ..., cache_status: _Optional[_Union[_common_pb2.CacheStatus, str]] = ..., similarity: _Optional[float] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_micros: _Optional[int] = ..., request_id: _Optional[str] = ..., degradation_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., input_truncated: _Optional[bool] = ..., input_tokens_dropped: _Optional[int] = ..., output_truncated: _Optional[bool] = ..., currency_code: _Optional[str] = ..., ticket_id: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cache_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., semantic_check: _Optional[str] = ...) -> None: ...

class StreamResponseRequest(_message.Message):
    __slots__ = ("input", "instructions", "model", "priority", "request_type", "max_output_tokens", "temperature", "user_id", "metadata", "cache_bypass", "messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "top_p", "reasoning_effort", "safety_identifier")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYPASS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    SAFETY_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    input: str
    instructions: str
    model: str
    priority: _common_pb2.Priority
    request_type: _common_pb2.RequestType
    max_output_tokens: int
    temperature: float
    user_id: str
    metadata: _containers.ScalarMap[str, str]
    cache_bypass: bool
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    tool_choice: _common_pb2.ToolChoice
    parallel_tool_calls: bool
    response_format: _common_pb2.ResponseFormat
    top_p: float
    reasoning_effort: _common_pb2.ReasoningEffort
    safety_identifier: str
    def __init__(self, input: _Optional[str] = ..., instructions: _Optional[str] = ..., model: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ..., max_output_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., user_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., cache_bypass: _Optional[bool] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[_common_pb2.ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[_common_pb2.ResponseFormat, _Mapping]] = ..., top_p: _Optional[float] = ..., reasoning_effort: _Optional[_Union[_common_pb2.ReasoningEffort, str]] = ..., safety_identifier: _Optional[str] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("request_id", "model", "deployment", "cache_status", "degradation_level", "input_truncated", "similarity", "cache_age", "input_tokens_dropped", "semantic_check")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    CACHE_STATUS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_AGE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_CHECK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    deployment: str
    cache_status: _common_pb2.CacheStatus
    degradation_level: _common_pb2.DegradationLevel
    input_truncated: bool
    similarity: float
    cache_age: _duration_pb2.Duration
    input_tokens_dropped: int
    semantic_check: str
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., deployment: _Optional[str] = ..., cache_status: _Optional[_Union[_common_pb2.CacheStatus, str]] = ..., degradation_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., input_truncated: _Optional[bool] = ..., similarity: _Optional[float] = ..., cache_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., input_tokens_dropped: _Optional[int] = ..., semantic_check: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments_delta")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments_delta: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_delta: _Optional[str] = ...) -> None: ...

class StreamCompleted(_message.Message):
    __slots__ = ("usage", "cost_micros", "currency_code", "output_truncated", "finish_reason", "tool_calls")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    usage: _common_pb2.Usage
    cost_micros: int
    currency_code: str
    output_truncated: bool
    finish_reason: _common_pb2.FinishReason
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    def __init__(self, usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_micros: _Optional[int] = ..., currency_code: _Optional[str] = ..., output_truncated: _Optional[bool] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class StreamResponseResponse(_message.Message):
    __slots__ = ("started", "delta", "completed", "tool_call_delta")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_DELTA_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    delta: TextDelta
    completed: StreamCompleted
    tool_call_delta: ToolCallDelta
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., completed: _Optional[_Union[StreamCompleted, _Mapping]] = ..., tool_call_delta: _Optional[_Union[ToolCallDelta, _Mapping]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("custom_id", "input", "instructions", "model", "request_type", "max_output_tokens", "temperature", "messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "top_p", "reasoning_effort", "safety_identifier")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    SAFETY_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    input: str
    instructions: str
    model: str
    request_type: _common_pb2.RequestType
    max_output_tokens: int
    temperature: float
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    tool_choice: _common_pb2.ToolChoice
    parallel_tool_calls: bool
    response_format: _common_pb2.ResponseFormat
    top_p: float
    reasoning_effort: _common_pb2.ReasoningEffort
    safety_identifier: str
    def __init__(self, custom_id: _Optional[str] = ..., input: _Optional[str] = ..., instructions: _Optional[str] = ..., model: _Optional[str] = ..., request_type: _Optional[_Union[_common_pb2.RequestType, str]] = ..., max_output_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[_common_pb2.ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[_common_pb2.ResponseFormat, _Mapping]] = ..., top_p: _Optional[float] = ..., reasoning_effort: _Optional[_Union[_common_pb2.ReasoningEffort, str]] = ..., safety_identifier: _Optional[str] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("items", "metadata", "user_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    metadata: _containers.ScalarMap[str, str]
    user_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., user_id: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("batch_id", "status", "total_items", "completed_items", "failed_items", "created_at", "finished_at", "cost_micros", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ITEMS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    status: BatchStatus
    total_items: int
    completed_items: int
    failed_items: int
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cost_micros: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, batch_id: _Optional[str] = ..., status: _Optional[_Union[BatchStatus, str]] = ..., total_items: _Optional[int] = ..., completed_items: _Optional[int] = ..., failed_items: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cost_micros: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ListBatchResultsRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class BatchItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListBatchResultsResponse(_message.Message):
    __slots__ = ("custom_id", "output_text", "model", "usage", "cost_micros", "error", "tool_calls", "finish_reason")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    output_text: str
    model: str
    usage: _common_pb2.Usage
    cost_micros: int
    error: BatchItemError
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    finish_reason: _common_pb2.FinishReason
    def __init__(self, custom_id: _Optional[str] = ..., output_text: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_micros: _Optional[int] = ..., error: _Optional[_Union[BatchItemError, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BreakerStatus(_message.Message):
    __slots__ = ("name", "state", "failure_count", "opened_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: BreakerState
    failure_count: int
    opened_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[BreakerState, str]] = ..., failure_count: _Optional[int] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("priority", "depth", "admitted", "rejected", "p50_wait_ms")
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    P50_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    priority: _common_pb2.Priority
    depth: int
    admitted: int
    rejected: int
    p50_wait_ms: float
    def __init__(self, priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., depth: _Optional[int] = ..., admitted: _Optional[int] = ..., rejected: _Optional[int] = ..., p50_wait_ms: _Optional[float] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("breakers", "degradation_level", "queues", "in_flight", "outbox_depth", "version")
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerStatus]
    degradation_level: _common_pb2.DegradationLevel
    queues: _containers.RepeatedCompositeFieldContainer[QueueStatus]
    in_flight: int
    outbox_depth: int
    version: str
    def __init__(self, breakers: _Optional[_Iterable[_Union[BreakerStatus, _Mapping]]] = ..., degradation_level: _Optional[_Union[_common_pb2.DegradationLevel, str]] = ..., queues: _Optional[_Iterable[_Union[QueueStatus, _Mapping]]] = ..., in_flight: _Optional[int] = ..., outbox_depth: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "model")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    model: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class UsageLine(_message.Message):
    __slots__ = ("key", "requests", "cost_micros", "saved_micros", "input_tokens", "cached_input_tokens", "output_tokens")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    key: str
    requests: int
    cost_micros: int
    saved_micros: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    def __init__(self, key: _Optional[str] = ..., requests: _Optional[int] = ..., cost_micros: _Optional[int] = ..., saved_micros: _Optional[int] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class UsageBudget(_message.Message):
    __slots__ = ("scope", "subject", "period", "hard", "limit_micros", "spent_micros", "reserved_micros", "remaining_micros", "resets_at")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    scope: UsageBudgetScope
    subject: str
    period: UsageBudgetPeriod
    hard: bool
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[_Union[UsageBudgetScope, str]] = ..., subject: _Optional[str] = ..., period: _Optional[_Union[UsageBudgetPeriod, str]] = ..., hard: _Optional[bool] = ..., limit_micros: _Optional[int] = ..., spent_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., remaining_micros: _Optional[int] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageRateHeadroom(_message.Message):
    __slots__ = ("metric", "limit_per_minute", "remaining", "reset")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    metric: str
    limit_per_minute: int
    remaining: int
    reset: _duration_pb2.Duration
    def __init__(self, metric: _Optional[str] = ..., limit_per_minute: _Optional[int] = ..., remaining: _Optional[int] = ..., reset: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("api_key_id", "tenant_id", "start_time", "end_time", "requests", "cost_micros", "saved_micros", "by_model", "by_day", "budgets", "budget_remaining_micros", "rate_headroom", "rate_headroom_unknown", "currency_code")
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    BY_DAY_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    RATE_HEADROOM_FIELD_NUMBER: _ClassVar[int]
    RATE_HEADROOM_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    api_key_id: str
    tenant_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    requests: int
    cost_micros: int
    saved_micros: int
    by_model: _containers.RepeatedCompositeFieldContainer[UsageLine]
    by_day: _containers.RepeatedCompositeFieldContainer[UsageLine]
    budgets: _containers.RepeatedCompositeFieldContainer[UsageBudget]
    budget_remaining_micros: int
    rate_headroom: _containers.RepeatedCompositeFieldContainer[UsageRateHeadroom]
    rate_headroom_unknown: bool
    currency_code: str
    def __init__(self, api_key_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., cost_micros: _Optional[int] = ..., saved_micros: _Optional[int] = ..., by_model: _Optional[_Iterable[_Union[UsageLine, _Mapping]]] = ..., by_day: _Optional[_Iterable[_Union[UsageLine, _Mapping]]] = ..., budgets: _Optional[_Iterable[_Union[UsageBudget, _Mapping]]] = ..., budget_remaining_micros: _Optional[int] = ..., rate_headroom: _Optional[_Iterable[_Union[UsageRateHeadroom, _Mapping]]] = ..., rate_headroom_unknown: _Optional[bool] = ..., currency_code: _Optional[str] = ...) -> None: ...

class GetUsageReportRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "tenant_id", "group_by")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    tenant_id: str
    group_by: UsageReportGrouping
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_id: _Optional[str] = ..., group_by: _Optional[_Union[UsageReportGrouping, str]] = ...) -> None: ...

class GetUsageReportResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "group_by", "lines", "total", "cache_saved_micros", "routing_saved_micros", "batch_saved_micros", "currency_code")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    group_by: UsageReportGrouping
    lines: _containers.RepeatedCompositeFieldContainer[UsageLine]
    total: UsageLine
    cache_saved_micros: int
    routing_saved_micros: int
    batch_saved_micros: int
    currency_code: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Union[UsageReportGrouping, str]] = ..., lines: _Optional[_Iterable[_Union[UsageLine, _Mapping]]] = ..., total: _Optional[_Union[UsageLine, _Mapping]] = ..., cache_saved_micros: _Optional[int] = ..., routing_saved_micros: _Optional[int] = ..., batch_saved_micros: _Optional[int] = ..., currency_code: _Optional[str] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "source", "tenant_id", "service", "user_id", "user_tier", "models", "create_time", "expire_time", "revoke_time", "rotate_time", "previous_secret_expire_time", "budget_limit_micros", "currency_code")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TIER_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    source: ApiKeySource
    tenant_id: str
    service: str
    user_id: str
    user_tier: str
    models: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    rotate_time: _timestamp_pb2.Timestamp
    previous_secret_expire_time: _timestamp_pb2.Timestamp
    budget_limit_micros: int
    currency_code: str
    def __init__(self, key_id: _Optional[str] = ..., source: _Optional[_Union[ApiKeySource, str]] = ..., tenant_id: _Optional[str] = ..., service: _Optional[str] = ..., user_id: _Optional[str] = ..., user_tier: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_secret_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., budget_limit_micros: _Optional[int] = ..., currency_code: _Optional[str] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("tenant_id", "service", "user_id", "user_tier", "models", "ttl", "budget_limit_micros")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TIER_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    service: str
    user_id: str
    user_tier: str
    models: _containers.RepeatedScalarFieldContainer[str]
    ttl: _duration_pb2.Duration
    budget_limit_micros: int
    def __init__(self, tenant_id: _Optional[str] = ..., service: _Optional[str] = ..., user_id: _Optional[str] = ..., user_tier: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., budget_limit_micros: _Optional[int] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("tenant_id", "include_revoked")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    include_revoked: bool
    def __init__(self, tenant_id: _Optional[str] = ..., include_revoked: _Optional[bool] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id", "grace_period")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    grace_period: _duration_pb2.Duration
    def __init__(self, key_id: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...
