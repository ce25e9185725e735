from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_CRITICAL: _ClassVar[Priority]
    PRIORITY_REALTIME: _ClassVar[Priority]
    PRIORITY_STANDARD: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]
    PRIORITY_LOW: _ClassVar[Priority]

class RequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_TYPE_UNSPECIFIED: _ClassVar[RequestType]
    REQUEST_TYPE_CHAT: _ClassVar[RequestType]
    REQUEST_TYPE_SUMMARIZE: _ClassVar[RequestType]
    REQUEST_TYPE_ANALYZE: _ClassVar[RequestType]
    REQUEST_TYPE_CLASSIFY: _ClassVar[RequestType]
    REQUEST_TYPE_GENERATE: _ClassVar[RequestType]

class CacheStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_STATUS_UNSPECIFIED: _ClassVar[CacheStatus]
    CACHE_STATUS_MISS: _ClassVar[CacheStatus]
    CACHE_STATUS_EXACT: _ClassVar[CacheStatus]
    CACHE_STATUS_SEMANTIC: _ClassVar[CacheStatus]
    CACHE_STATUS_SKIPPED: _ClassVar[CacheStatus]

class DegradationLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADATION_LEVEL_UNSPECIFIED: _ClassVar[DegradationLevel]
    DEGRADATION_LEVEL_FULL_SERVICE: _ClassVar[DegradationLevel]
    DEGRADATION_LEVEL_REDUCED_QUALITY: _ClassVar[DegradationLevel]
    DEGRADATION_LEVEL_CACHED_ONLY: _ClassVar[DegradationLevel]
    DEGRADATION_LEVEL_STATIC_FALLBACK: _ClassVar[DegradationLevel]
    DEGRADATION_LEVEL_MAINTENANCE: _ClassVar[DegradationLevel]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_CRITICAL: Priority
PRIORITY_REALTIME: Priority
PRIORITY_STANDARD: Priority
PRIORITY_BATCH: Priority
PRIORITY_LOW: Priority
REQUEST_TYPE_UNSPECIFIED: RequestType
REQUEST_TYPE_CHAT: RequestType
REQUEST_TYPE_SUMMARIZE: RequestType
REQUEST_TYPE_ANALYZE: RequestType
REQUEST_TYPE_CLASSIFY: RequestType
REQUEST_TYPE_GENERATE: RequestType
CACHE_STATUS_UNSPECIFIED: CacheStatus
CACHE_STATUS_MISS: CacheStatus
CACHE_STATUS_EXACT: CacheStatus
CACHE_STATUS_SEMANTIC: CacheStatus
CACHE_STATUS_SKIPPED: CacheStatus
DEGRADATION_LEVEL_UNSPECIFIED: DegradationLevel
DEGRADATION_LEVEL_FULL_SERVICE: DegradationLevel
DEGRADATION_LEVEL_REDUCED_QUALITY: DegradationLevel
DEGRADATION_LEVEL_CACHED_ONLY: DegradationLevel
DEGRADATION_LEVEL_STATIC_FALLBACK: DegradationLevel
DEGRADATION_LEVEL_MAINTENANCE: DegradationLevel

class Caller(_message.Message):
    __slots__ = ("tenant_id", "service", "user_id", "user_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    service: str
    user_id: str
    user_tier: str
    def __init__(self, tenant_id: _Optional[str] = ..., service: _Optional[str] = ..., user_id: _Optional[str] = ..., user_tier: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "cached_input_tokens", "output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...
