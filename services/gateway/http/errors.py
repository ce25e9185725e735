"""Tollgate's errors in OpenAI's shape: one table from error class to HTTP answer.

OpenAI's SDKs read the status code, the body ``{"error": {"message", "type",
"param", "code"}}`` and the ``retry-after`` / ``retry-after-ms`` /
``x-should-retry`` headers to decide whether and when to retry, so every answer
the door gives on failure uses exactly those; nothing else (no stack trace, no
prompt text) leaves the process.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.core.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TollgateError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from services.gateway.domain import RateHeadroom


@dataclass(frozen=True, slots=True)
class HttpError:
    """One OpenAI-shaped error answer: status, body fields and headers."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        """OpenAI's error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body_bytes(self) -> bytes:
        """The body as compact JSON bytes."""
        return json.dumps(self.body(), separators=(",", ":")).encode()


class DoorError(Exception):
    """Raised inside the door to answer with a given :class:`HttpError`."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.message)
        self.error = error


# Status and OpenAI ``type`` per error class; lookup walks the MRO like the gRPC
# table in services.core.errors, so subclasses inherit their parent's answer.
_TABLE: dict[type[TollgateError], tuple[int, str]] = {
    TollgateError: (500, "server_error"),
    InvalidArgumentError: (400, "invalid_request_error"),
    FailedPreconditionError: (400, "invalid_request_error"),
    UnauthenticatedError: (401, "invalid_request_error"),
    PermissionDeniedError: (403, "invalid_request_error"),
    NotFoundError: (404, "invalid_request_error"),
    ResourceExhaustedError: (429, "requests"),
    UnavailableError: (503, "server_error"),
    DeadlineExceededError: (504, "timeout"),
    UnimplementedError: (501, "invalid_request_error"),
    InternalError: (500, "server_error"),
}

_CODES = {
    "API_KEY_MISSING": "missing_api_key",
    "API_KEY_INVALID": "invalid_api_key",
    "RATE_LIMITED": "rate_limit_exceeded",
    "BUDGET_EXCEEDED": "insufficient_quota",
    "QUEUE_FULL": "queue_full",
}

_METRIC = re.compile(r"limit of (\d+) (requests|tokens) per minute")


def _lookup(error: TollgateError) -> tuple[int, str]:
    for cls in type(error).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return 500, "server_error"


def retry_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }


def reset_duration(seconds: float) -> str:
    """A reset time the way OpenAI writes it: ``120ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def headroom_headers(headroom: Iterable[RateHeadroom]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-limit/remaining/reset-{requests,tokens}`` headers."""
    headers: dict[str, str] = {}
    for item in headroom:
        headers[f"x-ratelimit-limit-{item.metric}"] = str(item.limit_per_minute)
        headers[f"x-ratelimit-remaining-{item.metric}"] = str(item.remaining)
        headers[f"x-ratelimit-reset-{item.metric}"] = reset_duration(item.reset_seconds)
    return headers


def rate_limit_headers(error: ResourceExhaustedError) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers of a denial, from the limiter's own numbers.

    The gateway puts each metric's headroom in the error's metadata
    (``limitRequests``, ``remainingRequests``, ``resetRequestsMs``, and the same
    for tokens); a budget or queue refusal has none.
    """
    headroom = []
    for metric in ("requests", "tokens"):
        name = metric.capitalize()
        limit = error.metadata.get(f"limit{name}")
        if limit is None:
            continue
        headroom.append(
            RateHeadroom(
                metric,
                int(limit),
                int(error.metadata.get(f"remaining{name}", "0")),
                int(error.metadata.get(f"reset{name}Ms", "0")) / 1000,
            )
        )
    return headroom_headers(headroom)


def openai_error(error: TollgateError, param: str | None = None) -> HttpError:
    """The HTTP answer of a domain error; ``param`` names the offending field."""
    status, kind = _lookup(error)
    code: str | None = _CODES.get(error.reason, error.reason.lower())
    headers: dict[str, str] = {}
    message = error.message
    if isinstance(error, InternalError) or status == 500:
        message, code = "The server had an error while processing your request.", None
    if error.retry_after is not None and status in (429, 503):
        headers.update(retry_headers(error.retry_after))
    if isinstance(error, ResourceExhaustedError):
        headers.update(rate_limit_headers(error))
        if error.reason == "BUDGET_EXCEEDED":
            # A spent budget does not come back within an SDK's retry window.
            kind = "insufficient_quota"
            headers["x-should-retry"] = "false"
        elif error.reason == "RATE_LIMITED":
            match = next(
                (_METRIC.search(v.description) for v in error.violations), None
            )
            kind = match.group(2) if match else "requests"
    if isinstance(error, InvalidArgumentError) and param is None and error.violations:
        param = error.violations[0].field or None
    return HttpError(status, message, kind, param, code, headers)


def internal_error() -> HttpError:
    """The generic 500 answer of an unexpected failure."""
    return HttpError(
        500,
        "The server had an error while processing your request.",
        "server_error",
    )


def not_found(method: str, path: str) -> HttpError:
    """The 404 answer of a route the door does not serve, in OpenAI's words."""
    return HttpError(
        404,
        f"Unknown request URL: {method} {path}. Please check the URL for typos, "
        "or see the docs at https://platform.openai.com/docs/api-reference/.",
        "invalid_request_error",
        None,
        "unknown_url",
    )


def invalid(
    message: str, param: str | None = None, code: str | None = None
) -> DoorError:
    """A 400 ``invalid_request_error`` to raise."""
    return DoorError(HttpError(400, message, "invalid_request_error", param, code))
