"""Per-RPC context shared by the server interceptor and the code it calls."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

_request_id: ContextVar[str] = ContextVar("tollgate_request_id", default="")


def new_request_id() -> str:
    """Make a fresh request id."""
    return f"req_{uuid.uuid4().hex}"


def current_request_id() -> str:
    """The request id of the RPC being served, or a fresh one outside an RPC."""
    return _request_id.get() or new_request_id()


def set_request_id(request_id: str) -> None:
    """Bind the request id for the rest of the current task."""
    _request_id.set(request_id)
