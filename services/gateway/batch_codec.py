"""Protobuf to batch-lane objects and back, so that the batch RPCs are three lines.

Only this module and the servicer touch the gateway's batch messages; the lane
itself (:mod:`services.gateway.batches`) knows nothing of protobuf.
"""

from __future__ import annotations

import math

from google.protobuf import timestamp_pb2
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core.common_codec import finish_reason_proto, tool_calls_proto
from services.core.errors import FieldViolation, InvalidArgumentError
from services.gateway.batches import (
    BatchItemRequest,
    BatchStatus,
    BatchView,
    ItemResult,
)
from services.gateway.clients import REQUEST_TYPE_FROM_PROTO, usage_proto
from services.gateway.prompt_codec import decode_prompt

MAX_BATCH_ID_CHARS = 128

STATUS_TO_PROTO = {
    BatchStatus.QUEUED: gateway_pb.BATCH_STATUS_QUEUED,
    BatchStatus.VALIDATING: gateway_pb.BATCH_STATUS_VALIDATING,
    BatchStatus.IN_PROGRESS: gateway_pb.BATCH_STATUS_IN_PROGRESS,
    BatchStatus.FINALIZING: gateway_pb.BATCH_STATUS_FINALIZING,
    BatchStatus.COMPLETED: gateway_pb.BATCH_STATUS_COMPLETED,
    BatchStatus.FAILED: gateway_pb.BATCH_STATUS_FAILED,
    BatchStatus.EXPIRED: gateway_pb.BATCH_STATUS_EXPIRED,
    BatchStatus.CANCELLING: gateway_pb.BATCH_STATUS_CANCELLING,
    BatchStatus.CANCELLED: gateway_pb.BATCH_STATUS_CANCELLED,
}
"""Every lane status to its proto ``BatchStatus`` value."""


def decode_submit(
    request: gateway_pb.SubmitBatchRequest,
) -> tuple[list[BatchItemRequest], dict[str, str], str]:
    """The items, metadata and user id of a SubmitBatchRequest.

    Only what protobuf alone can get wrong (an unknown enum value, both ``input``
    and ``messages``) is checked here;
    :meth:`~services.gateway.batches.BatchService.submit` validates the rest.

    Raises:
        InvalidArgumentError: an item's ``request_type`` is unknown.
    """
    items: list[BatchItemRequest] = []
    violations: list[FieldViolation] = []
    for index, item in enumerate(request.items):
        prompt, problems = decode_prompt(item, prefix=f"items[{index}].")
        violations.extend(problems)
        request_type = REQUEST_TYPE_FROM_PROTO.get(item.request_type)
        if request_type is None:
            violations.append(
                FieldViolation(
                    f"items[{index}].request_type",
                    f"unknown request type value {item.request_type}",
                )
            )
            continue
        items.append(
            BatchItemRequest(
                custom_id=item.custom_id,
                prompt=prompt,
                model=item.model.strip(),
                request_type=request_type,
                max_output_tokens=item.max_output_tokens,
                temperature=item.temperature if item.HasField("temperature") else None,
                top_p=item.top_p if item.HasField("top_p") else None,
                safety_identifier=item.safety_identifier,
            )
        )
    if violations:
        raise InvalidArgumentError(violations)
    return items, dict(request.metadata), request.user_id


def decode_batch_id(
    request: gateway_pb.GetBatchRequest
    | gateway_pb.ListBatchResultsRequest
    | gateway_pb.CancelBatchRequest,
) -> str:
    """The batch (or ticket) id a request names.

    Raises:
        InvalidArgumentError: it is empty or too long.
    """
    batch_id = request.batch_id.strip()
    if not batch_id:
        raise InvalidArgumentError([FieldViolation("batch_id", "must not be empty")])
    if len(batch_id) > MAX_BATCH_ID_CHARS:
        raise InvalidArgumentError(
            [
                FieldViolation(
                    "batch_id", f"must be at most {MAX_BATCH_ID_CHARS} characters"
                )
            ]
        )
    return batch_id


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    # Whole seconds and the fraction apart: a float of epoch nanoseconds would
    # lose the last digits.
    whole = math.floor(seconds)
    nanos = min(round((seconds - whole) * 1e9), 999_999_999)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def encode_batch(view: BatchView) -> gateway_pb.Batch:
    """The proto ``Batch`` of a batch's progress."""
    batch = gateway_pb.Batch(
        batch_id=view.batch_id,
        status=STATUS_TO_PROTO[view.status],
        total_items=view.total_items,
        completed_items=view.completed_items,
        failed_items=view.failed_items,
        created_at=_timestamp(view.created_at),
        cost_micros=view.cost_micros,
        metadata=view.metadata,
    )
    if view.finished_at is not None:
        batch.finished_at.CopyFrom(_timestamp(view.finished_at))
    return batch


def encode_submit(view: BatchView) -> gateway_pb.SubmitBatchResponse:
    """The SubmitBatchResponse for a new batch."""
    return gateway_pb.SubmitBatchResponse(batch=encode_batch(view))


def encode_get(view: BatchView) -> gateway_pb.GetBatchResponse:
    """The GetBatchResponse for a batch."""
    return gateway_pb.GetBatchResponse(batch=encode_batch(view))


def encode_cancel(view: BatchView) -> gateway_pb.CancelBatchResponse:
    """The CancelBatchResponse for a batch after the cancel request."""
    return gateway_pb.CancelBatchResponse(batch=encode_batch(view))


def encode_result(result: ItemResult) -> gateway_pb.ListBatchResultsResponse:
    """One ListBatchResultsResponse: an item's answer or error."""
    message = gateway_pb.ListBatchResultsResponse(
        custom_id=result.custom_id,
        output_text=result.output_text,
        model=result.model,
        usage=usage_proto(result.usage),
        cost_micros=result.cost_micros,
        tool_calls=tool_calls_proto(result.tool_calls),
        finish_reason=finish_reason_proto(result.finish_reason),
    )
    if result.error is not None:
        message.error.CopyFrom(
            gateway_pb.BatchItemError(
                code=result.error.code, message=result.error.message
            )
        )
    return message
