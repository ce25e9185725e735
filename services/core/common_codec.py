"""``tollgate.common.v1`` messages that several services read and write.

Tool calls and finish reasons travel between the gateway and the cache (cached
answers) and in the gateway's own replies; one codec keeps the two sides equal.
"""

from __future__ import annotations

from collections.abc import Iterable

from tollgate.common.v1 import common_pb2 as common_pb

from services.core.conversation import FinishReason, ToolCall

FINISH_TO_PROTO = {
    FinishReason.STOP: common_pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: common_pb.FINISH_REASON_LENGTH,
    FinishReason.TOOL_CALLS: common_pb.FINISH_REASON_TOOL_CALLS,
    FinishReason.CONTENT_FILTER: common_pb.FINISH_REASON_CONTENT_FILTER,
}
_FINISH_FROM_PROTO: dict[int, FinishReason] = {
    value: reason for reason, value in FINISH_TO_PROTO.items()
}


def finish_reason_proto(reason: FinishReason | None) -> common_pb.FinishReason:
    """A finish reason as its proto value (UNSPECIFIED for none)."""
    if reason is None:
        return common_pb.FINISH_REASON_UNSPECIFIED
    return FINISH_TO_PROTO[reason]


def finish_reason_from_proto(value: int) -> FinishReason | None:
    """The finish reason of a proto value (None for UNSPECIFIED or unknown)."""
    return _FINISH_FROM_PROTO.get(value)


def tool_calls_proto(calls: Iterable[ToolCall]) -> list[common_pb.ToolCall]:
    """Tool calls as protobuf."""
    return [
        common_pb.ToolCall(id=call.id, name=call.name, arguments=call.arguments)
        for call in calls
    ]


def tool_calls_from_proto(calls: Iterable[common_pb.ToolCall]) -> tuple[ToolCall, ...]:
    """Tool calls from protobuf."""
    return tuple(ToolCall(call.id, call.name, call.arguments) for call in calls)
