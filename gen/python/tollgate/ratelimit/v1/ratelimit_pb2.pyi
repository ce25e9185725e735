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

class LimitLayer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_LAYER_UNSPECIFIED: _ClassVar[LimitLayer]
    LIMIT_LAYER_USER: _ClassVar[LimitLayer]
    LIMIT_LAYER_SERVICE: _ClassVar[LimitLayer]
    LIMIT_LAYER_GLOBAL: _ClassVar[LimitLayer]

class LimitMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_METRIC_UNSPECIFIED: _ClassVar[LimitMetric]
    LIMIT_METRIC_REQUESTS: _ClassVar[LimitMetric]
    LIMIT_METRIC_TOKENS: _ClassVar[LimitMetric]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]

class ReconcileOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECONCILE_OUTCOME_UNSPECIFIED: _ClassVar[ReconcileOutcome]
    RECONCILE_OUTCOME_SETTLED: _ClassVar[ReconcileOutcome]
    RECONCILE_OUTCOME_UNKNOWN_RESERVATION: _ClassVar[ReconcileOutcome]

class UpstreamOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSTREAM_OUTCOME_UNSPECIFIED: _ClassVar[UpstreamOutcome]
    UPSTREAM_OUTCOME_THROTTLED: _ClassVar[UpstreamOutcome]
    UPSTREAM_OUTCOME_SUCCESS: _ClassVar[UpstreamOutcome]
LIMIT_LAYER_UNSPECIFIED: LimitLayer
LIMIT_LAYER_USER: LimitLayer
LIMIT_LAYER_SERVICE: LimitLayer
LIMIT_LAYER_GLOBAL: LimitLayer
LIMIT_METRIC_UNSPECIFIED: LimitMetric
LIMIT_METRIC_REQUESTS: LimitMetric
LIMIT_METRIC_TOKENS: LimitMetric
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision
RECONCILE_OUTCOME_UNSPECIFIED: ReconcileOutcome
RECONCILE_OUTCOME_SETTLED: ReconcileOutcome
RECONCILE_OUTCOME_UNKNOWN_RESERVATION: ReconcileOutcome
UPSTREAM_OUTCOME_UNSPECIFIED: UpstreamOutcome
UPSTREAM_OUTCOME_THROTTLED: UpstreamOutcome
UPSTREAM_OUTCOME_SUCCESS: UpstreamOutcome

class BucketStatus(_message.Message):
    __slots__ = ("layer", "key", "metric", "limit_per_minute", "effective_limit_per_minute", "capacity", "remaining")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    layer: LimitLayer
    key: str
    metric: LimitMetric
    limit_per_minute: int
    effective_limit_per_minute: int
    capacity: int
    remaining: int
    def __init__(self, layer: _Optional[_Union[LimitLayer, str]] = ..., key: _Optional[str] = ..., metric: _Optional[_Union[LimitMetric, str]] = ..., limit_per_minute: _Optional[int] = ..., effective_limit_per_minute: _Optional[int] = ..., capacity: _Optional[int] = ..., remaining: _Optional[int] = ...) -> None: ...

class AcquireRequest(_message.Message):
    __slots__ = ("request_id", "caller", "model", "estimated_tokens", "priority")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: _common_pb2.Caller
    model: str
    estimated_tokens: int
    priority: _common_pb2.Priority
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ..., model: _Optional[str] = ..., estimated_tokens: _Optional[int] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ("decision", "reservation_id", "retry_after", "denied_by", "buckets", "reservation_expires_at", "degraded")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    reservation_id: str
    retry_after: _duration_pb2.Duration
    denied_by: BucketStatus
    buckets: _containers.RepeatedCompositeFieldContainer[BucketStatus]
    reservation_expires_at: _timestamp_pb2.Timestamp
    degraded: bool
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., reservation_id: _Optional[str] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., denied_by: _Optional[_Union[BucketStatus, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[BucketStatus, _Mapping]]] = ..., reservation_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., degraded: _Optional[bool] = ...) -> None: ...

class AcquireBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AcquireRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[AcquireRequest, _Mapping]]] = ...) -> None: ...

class AcquireBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AcquireBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AcquireBatchResult, _Mapping]]] = ...) -> None: ...

class AcquireBatchResult(_message.Message):
    __slots__ = ("decided", "rejected")
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    decided: AcquireResponse
    rejected: AcquireRejection
    def __init__(self, decided: _Optional[_Union[AcquireResponse, _Mapping]] = ..., rejected: _Optional[_Union[AcquireRejection, _Mapping]] = ...) -> None: ...

class AcquireRejection(_message.Message):
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

class ReconcileRequest(_message.Message):
    __slots__ = ("reservation_id", "actual_tokens")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    actual_tokens: int
    def __init__(self, reservation_id: _Optional[str] = ..., actual_tokens: _Optional[int] = ...) -> None: ...

class ReconcileBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReconcileRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[ReconcileRequest, _Mapping]]] = ...) -> None: ...

class ReconcileBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReconcileResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[ReconcileResponse, _Mapping]]] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("outcome", "refunded_tokens")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    outcome: ReconcileOutcome
    refunded_tokens: int
    def __init__(self, outcome: _Optional[_Union[ReconcileOutcome, str]] = ..., refunded_tokens: _Optional[int] = ...) -> None: ...

class ReportUpstreamThrottleRequest(_message.Message):
    __slots__ = ("model", "outcome", "retry_after")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    model: str
    outcome: UpstreamOutcome
    retry_after: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., outcome: _Optional[_Union[UpstreamOutcome, str]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReportUpstreamThrottleResponse(_message.Message):
    __slots__ = ("backoff_factor", "paused_until")
    BACKOFF_FACTOR_FIELD_NUMBER: _ClassVar[int]
    PAUSED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    backoff_factor: float
    paused_until: _timestamp_pb2.Timestamp
    def __init__(self, backoff_factor: _Optional[float] = ..., paused_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("caller", "model")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    caller: _common_pb2.Caller
    model: str
    def __init__(self, caller: _Optional[_Union[_common_pb2.Caller, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ModelBackoff(_message.Message):
    __slots__ = ("model", "backoff_factor", "paused_until")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FACTOR_FIELD_NUMBER: _ClassVar[int]
    PAUSED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    model: str
    backoff_factor: float
    paused_until: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., backoff_factor: _Optional[float] = ..., paused_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("buckets", "backoffs", "backend", "degraded")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    BACKOFFS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[BucketStatus]
    backoffs: _containers.RepeatedCompositeFieldContainer[ModelBackoff]
    backend: str
    degraded: bool
    def __init__(self, buckets: _Optional[_Iterable[_Union[BucketStatus, _Mapping]]] = ..., backoffs: _Optional[_Iterable[_Union[ModelBackoff, _Mapping]]] = ..., backend: _Optional[str] = ..., degraded: _Optional[bool] = ...) -> None: ...
