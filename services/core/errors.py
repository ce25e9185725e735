"""Domain errors and the one table that maps them to gRPC statuses.

Domain code raises :class:`TollgateError` subclasses, which know nothing of gRPC.
The RPC envelope (services.core.server) turns each into a ``google.rpc.Status``
with exactly one ``ErrorInfo`` plus the details that apply (``RetryInfo``,
``QuotaFailure``, ``BadRequest``), and a ``retry-after`` trailer in whole seconds
when a retry time is known. Anything else becomes INTERNAL with a generic message;
never UNKNOWN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from services.core.prototime import duration

RETRY_AFTER_TRAILER = "retry-after"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


MAX_REPORTED_VIOLATIONS = 20
"""Field violations reported in one INVALID_ARGUMENT status, at most."""

MAX_DESCRIPTION_CHARS = 100
"""Characters of one violation's field or description, at most."""

MAX_MESSAGE_CHARS = 500
"""Characters of a status message, at most. gRPC refuses a reply whose headers
exceed 16 KiB, and a message of non-ASCII text grows threefold when encoded, so a
description that quotes hostile input must not carry the whole of it."""


def _bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field: its path (``input``, ``metadata.key``) and what is wrong."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One exhausted quota: what it limits (``user:u1``) and how."""

    subject: str
    description: str


class TollgateError(Exception):
    """Base of every error the services raise on purpose."""

    default_reason: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.retry_after = retry_after
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgumentError(TollgateError):
    """The request is malformed: one or more fields are invalid."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        *,
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        # A hostile request can be wrong in thousands of places; the status must
        # still fit in gRPC's 16 KiB of trailing metadata, so only the first few
        # are reported, and the message says how many were left out.
        self.violations = list(violations[:MAX_REPORTED_VIOLATIONS])
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        left_out = len(violations) - len(self.violations)
        if left_out:
            summary += f"; and {left_out} more"
        super().__init__(message or f"invalid request: {summary}", reason=reason)


class UnauthenticatedError(TollgateError):
    """No credentials, or credentials that match no key."""

    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(TollgateError):
    """The caller is known but may not do this."""

    default_reason = "PERMISSION_DENIED"


class NotFoundError(TollgateError):
    """The named resource does not exist."""

    default_reason = "NOT_FOUND"


class FailedPreconditionError(TollgateError):
    """The system is not in a state that allows the operation."""

    default_reason = "FAILED_PRECONDITION"


class ResourceExhaustedError(TollgateError):
    """A limit was hit: rate limit, budget or queue. Carries the retry time."""

    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        violations: Sequence[QuotaViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, reason=reason, retry_after=retry_after, metadata=metadata
        )
        self.violations = list(violations)


class UnavailableError(TollgateError):
    """A dependency is unreachable or its circuit is open; retry later."""

    default_reason = "UNAVAILABLE"


class BackendUnavailableError(UnavailableError):
    """A storage backend (Redis, SQLite, Qdrant) could not be reached."""

    default_reason = "BACKEND_UNAVAILABLE"


class DeadlineExceededError(TollgateError):
    """The caller's deadline passed before the work could finish."""

    default_reason = "DEADLINE_EXCEEDED"


class UnimplementedError(TollgateError):
    """The RPC exists in the contract but this server does not serve it (yet)."""

    default_reason = "UNIMPLEMENTED"


class InternalError(TollgateError):
    """A bug. The message shown to callers is generic."""

    default_reason = "INTERNAL"


# The one table from error class to gRPC code. Lookup walks the class's MRO, so a
# subclass (BackendUnavailableError) inherits its parent's code unless listed.
STATUS_CODES: dict[type[TollgateError], grpc.StatusCode] = {
    TollgateError: grpc.StatusCode.INTERNAL,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnimplementedError: grpc.StatusCode.UNIMPLEMENTED,
    InternalError: grpc.StatusCode.INTERNAL,
}


def status_code(error: TollgateError) -> grpc.StatusCode:
    """The gRPC code for ``error``, from :data:`STATUS_CODES`."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds for a ``retry-after`` header: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


def to_rpc_status(error: TollgateError, domain: str) -> status_pb2.Status:
    """Build the ``google.rpc.Status`` for ``error``, as raised in ``domain``."""
    code = status_code(error)
    status = status_pb2.Status(
        code=code.value[0], message=_bounded(error.message, MAX_MESSAGE_CHARS)
    )
    status.details.append(
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=domain, metadata=error.metadata
            )
        )
    )
    if error.retry_after is not None:
        status.details.append(
            _pack(error_details_pb2.RetryInfo(retry_delay=duration(error.retry_after)))
        )
    if isinstance(error, InvalidArgumentError):
        status.details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_bounded(v.field, MAX_DESCRIPTION_CHARS),
                            description=_bounded(v.description, MAX_DESCRIPTION_CHARS),
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, ResourceExhaustedError) and error.violations:
        status.details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=v.subject, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    return status


@dataclass(frozen=True)
class GrpcStatus(grpc.Status):
    """A concrete ``grpc.Status`` for ``abort_with_status``."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = field(default=())


def to_grpc_status(error: TollgateError, domain: str) -> GrpcStatus:
    """The status to abort an RPC with, including the ``retry-after`` trailer."""
    status = to_rpc_status(error, domain)
    trailers: list[tuple[str, str | bytes]] = [
        (_STATUS_DETAILS_KEY, status.SerializeToString())
    ]
    if error.retry_after is not None:
        trailers.append(
            (RETRY_AFTER_TRAILER, str(retry_after_seconds(error.retry_after)))
        )
    return GrpcStatus(
        code=status_code(error),
        details=status.message,
        trailing_metadata=tuple(trailers),
    )
