"""The error table and the google.rpc.Status built from it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from services.core.errors import (
    RETRY_AFTER_TRAILER,
    STATUS_CODES,
    BackendUnavailableError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaViolation,
    ResourceExhaustedError,
    TollgateError,
    UnauthenticatedError,
    UnavailableError,
    retry_after_seconds,
    status_code,
    to_grpc_status,
    to_rpc_status,
)

DOMAIN = "ratelimit.tollgate"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _details(status: status_pb2.Status) -> list[tuple[str, Any]]:
    """Each packed detail as (type name, unpacked message), in order."""
    types: dict[str, type[Any]] = {
        "google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
        "google.rpc.RetryInfo": error_details_pb2.RetryInfo,
        "google.rpc.BadRequest": error_details_pb2.BadRequest,
        "google.rpc.QuotaFailure": error_details_pb2.QuotaFailure,
    }
    unpacked: list[tuple[str, Any]] = []
    for packed in status.details:
        assert isinstance(packed, any_pb2.Any)
        message = types[packed.TypeName()]()
        assert packed.Unpack(message)
        unpacked.append((packed.TypeName(), message))
    return unpacked


def _detail_names(status: status_pb2.Status) -> list[str]:
    return [name for name, _ in _details(status)]


def _detail(status: status_pb2.Status, name: str) -> Any:
    (message,) = [
        message for type_name, message in _details(status) if type_name == name
    ]
    return message


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (TollgateError("x"), grpc.StatusCode.INTERNAL, "INTERNAL"),
        (
            InvalidArgumentError([FieldViolation("input", "empty")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
        (UnauthenticatedError("x"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (
            PermissionDeniedError("x"),
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        ),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (
            FailedPreconditionError("x"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "FAILED_PRECONDITION",
        ),
        (
            ResourceExhaustedError("x"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RESOURCE_EXHAUSTED",
        ),
        (UnavailableError("x"), grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
        (
            BackendUnavailableError("x"),
            grpc.StatusCode.UNAVAILABLE,
            "BACKEND_UNAVAILABLE",
        ),
        (
            DeadlineExceededError("x"),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "DEADLINE_EXCEEDED",
        ),
        (InternalError("x"), grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_each_error_maps_to_its_code_and_default_reason(
    error: TollgateError, code: grpc.StatusCode, reason: str
) -> None:
    assert status_code(error) is code
    assert error.reason == reason
    assert to_rpc_status(error, DOMAIN).code == code.value[0]
    assert to_grpc_status(error, DOMAIN).code is code


def test_no_error_maps_to_unknown_or_ok() -> None:
    codes = set(STATUS_CODES.values())
    assert grpc.StatusCode.UNKNOWN not in codes
    assert grpc.StatusCode.OK not in codes


def test_unlisted_subclass_inherits_its_parents_code() -> None:
    class QueueFullError(ResourceExhaustedError):
        default_reason = "QUEUE_FULL"

    error = QueueFullError("queue full")
    assert status_code(error) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "QUEUE_FULL"


def test_explicit_reason_overrides_the_default() -> None:
    error = ResourceExhaustedError("over budget", reason="BUDGET_EXCEEDED")
    assert error.reason == "BUDGET_EXCEEDED"
    assert error.message == "over budget"
    assert str(error) == "over budget"


def test_rpc_status_has_exactly_one_error_info() -> None:
    error = NotFoundError(
        "no such budget", reason="BUDGET_NOT_FOUND", metadata={"budgetId": "b1"}
    )
    status = to_rpc_status(error, DOMAIN)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert status.message == "no such budget"
    assert _detail_names(status) == ["google.rpc.ErrorInfo"]
    info = _detail(status, "google.rpc.ErrorInfo")
    assert info.domain == DOMAIN
    assert info.reason == "BUDGET_NOT_FOUND"
    assert dict(info.metadata) == {"budgetId": "b1"}


def test_retry_info_is_added_when_a_retry_time_is_known() -> None:
    error = UnavailableError("circuit open", retry_after=2.5)
    status = to_rpc_status(error, DOMAIN)
    assert _detail_names(status) == ["google.rpc.ErrorInfo", "google.rpc.RetryInfo"]
    delay = _detail(status, "google.rpc.RetryInfo").retry_delay
    assert (delay.seconds, delay.nanos) == (2, 500_000_000)


def test_retry_info_delay_is_exact_to_the_nanosecond() -> None:
    status = to_rpc_status(UnavailableError("x", retry_after=1.15), DOMAIN)
    delay = _detail(status, "google.rpc.RetryInfo").retry_delay
    assert (delay.seconds, delay.nanos) == (1, 150_000_000)


def test_no_retry_info_without_a_retry_time() -> None:
    status = to_rpc_status(UnavailableError("down"), DOMAIN)
    assert _detail_names(status) == ["google.rpc.ErrorInfo"]


def test_bad_request_lists_the_field_violations_in_order() -> None:
    error = InvalidArgumentError(
        [
            FieldViolation("input", "must not be empty"),
            FieldViolation("metadata.key", "too long"),
        ]
    )
    assert error.message == (
        "invalid request: input: must not be empty; metadata.key: too long"
    )
    status = to_rpc_status(error, DOMAIN)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert _detail_names(status) == ["google.rpc.ErrorInfo", "google.rpc.BadRequest"]
    violations = _detail(status, "google.rpc.BadRequest").field_violations
    assert [(v.field, v.description) for v in violations] == [
        ("input", "must not be empty"),
        ("metadata.key", "too long"),
    ]


def test_invalid_argument_message_can_be_given() -> None:
    error = InvalidArgumentError([FieldViolation("a", "b")], message="bad a")
    assert to_rpc_status(error, DOMAIN).message == "bad a"


def test_quota_failure_and_retry_info_for_an_exhausted_quota() -> None:
    error = ResourceExhaustedError(
        "rate limited",
        reason="RATE_LIMITED",
        retry_after=0.2,
        violations=[QuotaViolation("user:u1", "60 requests per minute")],
    )
    status = to_rpc_status(error, DOMAIN)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert _detail_names(status) == [
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
        "google.rpc.QuotaFailure",
    ]
    assert _detail(status, "google.rpc.ErrorInfo").reason == "RATE_LIMITED"
    violations = _detail(status, "google.rpc.QuotaFailure").violations
    assert [(v.subject, v.description) for v in violations] == [
        ("user:u1", "60 requests per minute")
    ]


def test_no_quota_failure_without_violations() -> None:
    status = to_rpc_status(ResourceExhaustedError("queue full"), DOMAIN)
    assert _detail_names(status) == ["google.rpc.ErrorInfo"]


def test_grpc_status_carries_the_rpc_status_in_its_trailers() -> None:
    error = BackendUnavailableError("redis unreachable")
    grpc_status = to_grpc_status(error, DOMAIN)
    assert grpc_status.code is grpc.StatusCode.UNAVAILABLE
    assert grpc_status.details == "redis unreachable"
    trailers = dict(grpc_status.trailing_metadata)
    assert set(trailers) == {STATUS_DETAILS_KEY}
    raw = trailers[STATUS_DETAILS_KEY]
    assert isinstance(raw, bytes)
    assert status_pb2.Status.FromString(raw) == to_rpc_status(error, DOMAIN)


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.0, "1"), (0.2, "1"), (1.0, "1"), (2.0, "2"), (2.1, "3"), (59.5, "60")],
)
def test_retry_after_trailer_is_whole_seconds_rounded_up(
    retry_after: float, header: str
) -> None:
    error = ResourceExhaustedError("slow down", retry_after=retry_after)
    trailers = dict(to_grpc_status(error, DOMAIN).trailing_metadata)
    assert trailers[RETRY_AFTER_TRAILER] == header
    assert retry_after_seconds(retry_after) == int(header)


def test_no_retry_after_trailer_without_a_retry_time() -> None:
    trailers = dict(to_grpc_status(NotFoundError("x"), DOMAIN).trailing_metadata)
    assert RETRY_AFTER_TRAILER not in trailers
