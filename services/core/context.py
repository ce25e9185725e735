"""Per-RPC context shared by the server interceptor and the code it calls."""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

_request_id: ContextVar[str] = ContextVar("tollgate_request_id", default="")


def new_request_id() -> str:
    """Make a fresh request id."""
    return f"req_{os.urandom(16).hex()}"


def current_request_id() -> str:
    """The request id of the RPC being served, or a fresh one outside an RPC."""
    return _request_id.get() or new_request_id()


def set_request_id(request_id: str) -> None:
    """Bind the request id for the rest of the current task."""
    _request_id.set(request_id)


def metadata_value(
    metadata: Iterable[tuple[str, str | bytes]] | None, key: str
) -> str | bytes:
    """The first value of ``key`` in gRPC metadata, or "" when absent.

    Works on what grpc.aio gives on both sides: the server's invocation metadata and
    a client's trailing metadata both iterate as ``(key, value)`` pairs.
    """
    for item_key, value in metadata or ():
        if item_key == key:
            return value
    return ""
