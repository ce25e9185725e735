"""The in-process channel of `tollgate serve all`: what a network call would do.

A call through it passes the server's RPC envelope, gets the caller's metadata and
deadline, fails with the AioRpcError the network would raise, and runs in the
caller's task and context, which it leaves as it found them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf import wrappers_pb2

from services.allinone import InProcessChannel
from services.core.context import current_request_id, set_request_id
from services.core.errors import FieldViolation, InvalidArgumentError
from services.core.server import RpcEnvelope, ServiceApp
from services.core.settings import ServerSettings
from tests.grpc_helpers import error_details

SLOW = "/test.Echo/Slow"
SEEN = "/test.Echo/Seen"
BAD = "/test.Echo/Bad"


async def _slow(request: Any, context: Any) -> wrappers_pb2.StringValue:
    await asyncio.sleep(30)
    return wrappers_pb2.StringValue()


async def _seen(request: Any, context: Any) -> wrappers_pb2.StringValue:
    remaining = context.time_remaining()
    return wrappers_pb2.StringValue(value=f"{current_request_id()} {remaining:.3f}")


async def _bad(request: Any, context: Any) -> wrappers_pb2.StringValue:
    raise InvalidArgumentError([FieldViolation("input", "must not be empty")])


def _channel() -> InProcessChannel:
    handlers = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            name: grpc.unary_unary_rpc_method_handler(behaviour)
            for name, behaviour in (("Slow", _slow), ("Seen", _seen), ("Bad", _bad))
        },
    )
    app = ServiceApp(name="echo", service_names=["test.Echo"], register=lambda _: None)
    envelope = RpcEnvelope(app, ServerSettings(), in_process=True)
    return InProcessChannel([envelope.wrap_generic(handlers)])


async def test_the_callers_deadline_ends_the_call_with_deadline_exceeded() -> None:
    call = _channel().unary_unary(SLOW)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(wrappers_pb2.StringValue(), timeout=0.05)

    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_the_servicer_runs_in_the_callers_context_and_leaves_it_intact() -> None:
    set_request_id("req_caller")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="req_caller", tenant="acme")
    call = _channel().unary_unary(SEEN)

    reply = await call(
        wrappers_pb2.StringValue(),
        timeout=5,
        metadata=(("x-request-id", "req_caller"),),
    )

    request_id, remaining = reply.value.split()
    assert request_id == "req_caller"
    assert 4.0 < float(remaining) <= 5.0
    # The envelope neither cleared nor rebound the caller's log context.
    assert current_request_id() == "req_caller"
    assert structlog.contextvars.get_contextvars() == {
        "request_id": "req_caller",
        "tenant": "acme",
    }


async def test_a_tollgate_error_arrives_as_the_networks_status_with_details() -> None:
    call = _channel().unary_unary(BAD)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(wrappers_pb2.StringValue(), timeout=5)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(caught.value)["google.rpc.BadRequest"].field_violations
    assert [(v.field, v.description) for v in violations] == [
        ("input", "must not be empty")
    ]
    assert error_details(caught.value)["google.rpc.ErrorInfo"].domain == (
        "echo.tollgate"
    )


async def test_an_unknown_method_is_unimplemented() -> None:
    call = _channel().unary_unary("/test.Echo/Missing")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(wrappers_pb2.StringValue(), timeout=5)

    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
