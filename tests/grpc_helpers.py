"""Helpers to read the details of gRPC errors in tests."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

_DETAIL_TYPES: dict[str, type[Any]] = {
    "google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
    "google.rpc.RetryInfo": error_details_pb2.RetryInfo,
    "google.rpc.QuotaFailure": error_details_pb2.QuotaFailure,
    "google.rpc.BadRequest": error_details_pb2.BadRequest,
    "google.rpc.RequestInfo": error_details_pb2.RequestInfo,
}


def trailers(error: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    """The trailing metadata of a failed call, as a dict."""
    return dict(error.trailing_metadata() or ())


def error_details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The unpacked google.rpc.Status details of a failed call, by type name."""
    raw = trailers(error).get("grpc-status-details-bin")
    if raw is None:
        return {}
    assert isinstance(raw, bytes)
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0]
    details: dict[str, Any] = {}
    for packed in status.details:
        assert isinstance(packed, any_pb2.Any)
        name = packed.TypeName()
        message = _DETAIL_TYPES[name]()
        packed.Unpack(message)
        details[name] = message
    return details


ADMIN_KEY = "tg_test_admin_key"
# What a service's settings take to accept ADMIN_KEY on its admin RPCs.
ADMIN_KEY_SHA256S = [hashlib.sha256(ADMIN_KEY.encode()).hexdigest()]


class _AdminKeyInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = [*(client_call_details.metadata or ())]
        metadata.append(("authorization", f"Bearer {ADMIN_KEY}"))
        return await continuation(
            client_call_details._replace(metadata=metadata), request
        )


def admin_channel(address: str) -> grpc.aio.Channel:
    """A channel whose unary calls carry ADMIN_KEY, as an operator's would."""
    return grpc.aio.insecure_channel(address, interceptors=[_AdminKeyInterceptor()])
