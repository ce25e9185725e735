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

class ScopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_KIND_UNSPECIFIED: _ClassVar[ScopeKind]
    SCOPE_KIND_GLOBAL: _ClassVar[ScopeKind]
    SCOPE_KIND_TENANT: _ClassVar[ScopeKind]
    SCOPE_KIND_SERVICE: _ClassVar[ScopeKind]
    SCOPE_KIND_USER: _ClassVar[ScopeKind]
    SCOPE_KIND_KEY: _ClassVar[ScopeKind]

class BudgetPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_PERIOD_UNSPECIFIED: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_DAY: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_MONTH: _ClassVar[BudgetPeriod]

class BudgetDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_DECISION_UNSPECIFIED: _ClassVar[BudgetDecision]
    BUDGET_DECISION_ALLOW: _ClassVar[BudgetDecision]
    BUDGET_DECISION_DENY: _ClassVar[BudgetDecision]
    BUDGET_DECISION_DOWNGRADE: _ClassVar[BudgetDecision]

class AlertDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_DELIVERY_STATE_UNSPECIFIED: _ClassVar[AlertDeliveryState]
    ALERT_DELIVERY_STATE_PENDING: _ClassVar[AlertDeliveryState]
    ALERT_DELIVERY_STATE_DELIVERED: _ClassVar[AlertDeliveryState]
    ALERT_DELIVERY_STATE_FAILED: _ClassVar[AlertDeliveryState]
SCOPE_KIND_UNSPECIFIED: ScopeKind
SCOPE_KIND_GLOBAL: ScopeKind
SCOPE_KIND_TENANT: ScopeKind
SCOPE_KIND_SERVICE: ScopeKind
SCOPE_KIND_USER: ScopeKind
SCOPE_KIND_KEY: ScopeKind
BUDGET_PERIOD_UNSPECIFIED: BudgetPeriod
BUDGET_PERIOD_DAY: BudgetPeriod
BUDGET_PERIOD_MONTH: BudgetPeriod
BUDGET_DECISION_UNSPECIFIED: BudgetDecision
BUDGET_DECISION_ALLOW: BudgetDecision
BUDGET_DECISION_DENY: BudgetDecision
BUDGET_DECISION_DOWNGRADE: BudgetDecision
ALERT_DELIVERY_STATE_UNSPECIFIED: AlertDeliveryState
ALERT_DELIVERY_STATE_PENDING: AlertDeliveryState
ALERT_DELIVERY_STATE_DELIVERED: AlertDeliveryState
ALERT_DELIVERY_STATE_FAILED: AlertDeliveryState

class RecordRequest(_message.Message):
    __slots__ = ("request_id", "caller", "model", "deployment", "usage", "batch", "cache_status", "budget_reservation_id", "occurred_at", "requested_model", "release_only")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CACHE_STATUS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ONLY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: _common_pb2.Caller
    model: str
    deployment: str
    usage: _common_pb2.Usage
    batch: bool
    cache_status: _common_pb2.CacheStatus
    budget_reservation_id: str
    occurred_at: _timestamp_pb2.Timestamp
    requested_model: str
    release_only: bool
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ..., model: _Optional[str] = ..., deployment: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., batch: _Optional[bool] = ..., cache_status: _Optional[_Union[_common_pb2.CacheStatus, str]] = ..., budget_reservation_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requested_model: _Optional[str] = ..., release_only: _Optional[bool] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("cost_micros", "saved_micros", "currency_code", "duplicate", "reservation_settled")
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_SETTLED_FIELD_NUMBER: _ClassVar[int]
    cost_micros: int
    saved_micros: int
    currency_code: str
    duplicate: bool
    reservation_settled: bool
    def __init__(self, cost_micros: _Optional[int] = ..., saved_micros: _Optional[int] = ..., currency_code: _Optional[str] = ..., duplicate: _Optional[bool] = ..., reservation_settled: _Optional[bool] = ...) -> None: ...

class RecordBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecordRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[RecordRequest, _Mapping]]] = ...) -> None: ...

class RecordBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RecordBatchResult, _Mapping]]] = ...) -> None: ...

class RecordBatchResult(_message.Message):
    __slots__ = ("recorded", "rejected")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    recorded: RecordResponse
    rejected: RecordRejection
    def __init__(self, recorded: _Optional[_Union[RecordResponse, _Mapping]] = ..., rejected: _Optional[_Union[RecordRejection, _Mapping]] = ...) -> None: ...

class RecordRejection(_message.Message):
    __slots__ = ("field_violations",)
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class BudgetScope(_message.Message):
    __slots__ = ("kind", "tenant_id", "service", "user_id", "api_key_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    kind: ScopeKind
    tenant_id: str
    service: str
    user_id: str
    api_key_id: str
    def __init__(self, kind: _Optional[_Union[ScopeKind, str]] = ..., tenant_id: _Optional[str] = ..., service: _Optional[str] = ..., user_id: _Optional[str] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("scope", "period", "limit_micros", "hard", "alert_thresholds_percent", "downgrade_model")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    ALERT_THRESHOLDS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADE_MODEL_FIELD_NUMBER: _ClassVar[int]
    scope: BudgetScope
    period: BudgetPeriod
    limit_micros: int
    hard: bool
    alert_thresholds_percent: _containers.RepeatedScalarFieldContainer[int]
    downgrade_model: str
    def __init__(self, scope: _Optional[_Union[BudgetScope, _Mapping]] = ..., period: _Optional[_Union[BudgetPeriod, str]] = ..., limit_micros: _Optional[int] = ..., hard: _Optional[bool] = ..., alert_thresholds_percent: _Optional[_Iterable[int]] = ..., downgrade_model: _Optional[str] = ...) -> None: ...

class CheckBudgetRequest(_message.Message):
    __slots__ = ("request_id", "caller", "model", "input_tokens", "max_output_tokens", "batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: _common_pb2.Caller
    model: str
    input_tokens: int
    max_output_tokens: int
    batch: bool
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ..., model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., batch: _Optional[bool] = ...) -> None: ...

class CheckBudgetResponse(_message.Message):
    __slots__ = ("decision", "reservation_id", "worst_case_cost_micros", "exceeded_budget", "remaining_micros", "downgrade_model", "resets_at", "reservation_expires_at", "tenant_unbudgeted_for")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    WORST_CASE_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    EXCEEDED_BUDGET_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_UNBUDGETED_FOR_FIELD_NUMBER: _ClassVar[int]
    decision: BudgetDecision
    reservation_id: str
    worst_case_cost_micros: int
    exceeded_budget: Budget
    remaining_micros: int
    downgrade_model: str
    resets_at: _timestamp_pb2.Timestamp
    reservation_expires_at: _timestamp_pb2.Timestamp
    tenant_unbudgeted_for: _duration_pb2.Duration
    def __init__(self, decision: _Optional[_Union[BudgetDecision, str]] = ..., reservation_id: _Optional[str] = ..., worst_case_cost_micros: _Optional[int] = ..., exceeded_budget: _Optional[_Union[Budget, _Mapping]] = ..., remaining_micros: _Optional[int] = ..., downgrade_model: _Optional[str] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reservation_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_unbudgeted_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class SetBudgetResponse(_message.Message):
    __slots__ = ("budget", "spent_micros")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    spent_micros: int
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ..., spent_micros: _Optional[int] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("tenant_id", "start_time", "end_time", "api_key_id", "current_period")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    api_key_id: str
    current_period: BudgetPeriod
    def __init__(self, tenant_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., api_key_id: _Optional[str] = ..., current_period: _Optional[_Union[BudgetPeriod, str]] = ...) -> None: ...

class ReportLine(_message.Message):
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

class GetReportResponse(_message.Message):
    __slots__ = ("total_requests", "total_cost_micros", "average_cost_micros", "cache_saved_micros", "routing_saved_micros", "batch_saved_micros", "by_model", "by_service", "by_user", "by_tenant", "by_day", "currency_code", "by_api_key", "start_time", "end_time")
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SAVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    BY_SERVICE_FIELD_NUMBER: _ClassVar[int]
    BY_USER_FIELD_NUMBER: _ClassVar[int]
    BY_TENANT_FIELD_NUMBER: _ClassVar[int]
    BY_DAY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BY_API_KEY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    total_requests: int
    total_cost_micros: int
    average_cost_micros: int
    cache_saved_micros: int
    routing_saved_micros: int
    batch_saved_micros: int
    by_model: _containers.RepeatedCompositeFieldContainer[ReportLine]
    by_service: _containers.RepeatedCompositeFieldContainer[ReportLine]
    by_user: _containers.RepeatedCompositeFieldContainer[ReportLine]
    by_tenant: _containers.RepeatedCompositeFieldContainer[ReportLine]
    by_day: _containers.RepeatedCompositeFieldContainer[ReportLine]
    currency_code: str
    by_api_key: _containers.RepeatedCompositeFieldContainer[ReportLine]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, total_requests: _Optional[int] = ..., total_cost_micros: _Optional[int] = ..., average_cost_micros: _Optional[int] = ..., cache_saved_micros: _Optional[int] = ..., routing_saved_micros: _Optional[int] = ..., batch_saved_micros: _Optional[int] = ..., by_model: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., by_service: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., by_user: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., by_tenant: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., by_day: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., currency_code: _Optional[str] = ..., by_api_key: _Optional[_Iterable[_Union[ReportLine, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "budget", "threshold_percent", "spent_micros", "period_start", "fired_at")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    budget: Budget
    threshold_percent: int
    spent_micros: int
    period_start: _timestamp_pb2.Timestamp
    fired_at: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., threshold_percent: _Optional[int] = ..., spent_micros: _Optional[int] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("tenant_id", "since")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("tenant_id", "since")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchAlertsResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class GetBudgetStatusRequest(_message.Message):
    __slots__ = ("caller",)
    CALLER_FIELD_NUMBER: _ClassVar[int]
    caller: _common_pb2.Caller
    def __init__(self, caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ...) -> None: ...

class BudgetStatus(_message.Message):
    __slots__ = ("budget", "spent_micros", "reserved_micros", "remaining_micros", "period_start", "period_end")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MICROS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ..., spent_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., remaining_micros: _Optional[int] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBudgetStatusResponse(_message.Message):
    __slots__ = ("budgets", "currency_code")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetStatus]
    currency_code: str
    def __init__(self, budgets: _Optional[_Iterable[_Union[BudgetStatus, _Mapping]]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class AlertDeliveryAttempt(_message.Message):
    __slots__ = ("attempt", "attempted_at", "http_status", "error", "latency")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    attempted_at: _timestamp_pb2.Timestamp
    http_status: int
    error: str
    latency: _duration_pb2.Duration
    def __init__(self, attempt: _Optional[int] = ..., attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AlertDelivery(_message.Message):
    __slots__ = ("alert", "endpoint", "idempotency_key", "state", "attempts", "created_at", "next_attempt_at", "finished_at")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    endpoint: str
    idempotency_key: str
    state: AlertDeliveryState
    attempts: _containers.RepeatedCompositeFieldContainer[AlertDeliveryAttempt]
    created_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., endpoint: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., state: _Optional[_Union[AlertDeliveryState, str]] = ..., attempts: _Optional[_Iterable[_Union[AlertDeliveryAttempt, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertDeliveriesRequest(_message.Message):
    __slots__ = ("alert_id", "tenant_id", "endpoint", "since")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    tenant_id: str
    endpoint: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[AlertDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[AlertDelivery, _Mapping]]] = ...) -> None: ...
