"""The shared server, served for real on 127.0.0.1 around toy servicers.

The toys implement one unary RPC (CacheService.GetStats) and one server-streaming RPC
(CostsService.WatchAlerts) that answer or raise whatever the test sets, so the
RPC envelope, health and reflection are checked without any real service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.context import current_request_id
from services.core.errors import (
    BackendUnavailableError,
    FieldViolation,
    InvalidArgumentError,
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from services.core.server import RunningServer, ServiceApp
from tests.conftest import ServeApp
from tests.grpc_helpers import error_details, trailers

CACHE_SERVICE = cache_pb.DESCRIPTOR.services_by_name["CacheService"].full_name
COSTS_SERVICE = costs_pb.DESCRIPTOR.services_by_name["CostsService"].full_name
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SECRET = "sk-live-do-not-leak"


class _ToyCacheServicer(cache_pb2_grpc.CacheServiceServicer):
    """GetStats answers, or raises ``error`` when one is set."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.request_ids: list[str] = []

    async def GetStats(  # noqa: N802 (gRPC method names are PascalCase)
        self,
        request: cache_pb.GetStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cache_pb.GetStatsResponse:
        self.request_ids.append(current_request_id())
        if self.error is not None:
            raise self.error
        return cache_pb.GetStatsResponse(exact_entries=3, exact_backend="memory")


class _ToyCostsServicer(costs_pb2_grpc.CostsServiceServicer):
    """WatchAlerts streams two alerts, then raises ``error`` when one is set."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def WatchAlerts(  # noqa: N802 (gRPC method names are PascalCase)
        self,
        request: costs_pb.WatchAlertsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[costs_pb.WatchAlertsResponse]:
        for index in range(2):
            yield costs_pb.WatchAlertsResponse(
                alert=costs_pb.Alert(alert_id=f"{request.tenant_id}-{index}")
            )
        if self.error is not None:
            raise self.error


@dataclass
class _Toy:
    cache: _ToyCacheServicer
    costs: _ToyCostsServicer
    running: RunningServer
    channel: grpc.aio.Channel
    store_healthy: list[bool] = field(default_factory=lambda: [True])

    @property
    def cache_stub(self) -> cache_pb2_grpc.CacheServiceStub:
        return cache_pb2_grpc.CacheServiceStub(self.channel)

    @property
    def costs_stub(self) -> costs_pb2_grpc.CostsServiceStub:
        return costs_pb2_grpc.CostsServiceStub(self.channel)

    async def health(self, service: str) -> Any:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        return response.status


@pytest.fixture
async def toy(serve_app: ServeApp) -> AsyncIterator[_Toy]:
    cache = _ToyCacheServicer()
    costs = _ToyCostsServicer()
    store_healthy = [True]

    async def store_check() -> bool:
        return store_healthy[0]

    def register(server: grpc.aio.Server) -> None:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(cache, server)
        costs_pb2_grpc.add_CostsServiceServicer_to_server(costs, server)

    app = ServiceApp(
        name="toy",
        service_names=[CACHE_SERVICE, COSTS_SERVICE],
        register=register,
        health_checks={"store": store_check},
    )
    running = await serve_app(app)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield _Toy(cache, costs, running, channel, store_healthy)


async def _failed_call(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error: grpc.aio.AioRpcError = caught.value
    return error


async def test_a_successful_call_returns_the_servicers_answer(toy: _Toy) -> None:
    response = await toy.cache_stub.GetStats(cache_pb.GetStatsRequest())
    assert (response.exact_entries, response.exact_backend) == (3, "memory")


async def test_tollgate_error_becomes_its_code_with_details_and_retry_after(
    toy: _Toy,
) -> None:
    toy.cache.error = ResourceExhaustedError(
        "rate limit exceeded",
        reason="RATE_LIMITED",
        retry_after=2.1,
        violations=[QuotaViolation("user:u1", "60 requests per minute")],
        metadata={"layer": "user"},
    )
    error = await _failed_call(toy.cache_stub.GetStats(cache_pb.GetStatsRequest()))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "rate limit exceeded"
    assert trailers(error)["retry-after"] == "3"
    details = error_details(error)
    assert set(details) == {
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
        "google.rpc.QuotaFailure",
    }
    info = details["google.rpc.ErrorInfo"]
    assert (info.domain, info.reason) == ("toy.tollgate", "RATE_LIMITED")
    assert dict(info.metadata) == {"layer": "user"}
    delay = details["google.rpc.RetryInfo"].retry_delay
    assert (delay.seconds, delay.nanos) == (2, 100_000_000)
    (violation,) = details["google.rpc.QuotaFailure"].violations
    assert (violation.subject, violation.description) == (
        "user:u1",
        "60 requests per minute",
    )


async def test_invalid_argument_carries_field_violations(toy: _Toy) -> None:
    toy.cache.error = InvalidArgumentError([FieldViolation("tenant_id", "required")])
    error = await _failed_call(toy.cache_stub.GetStats(cache_pb.GetStatsRequest()))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "retry-after" not in trailers(error)
    violations = error_details(error)["google.rpc.BadRequest"].field_violations
    assert [(v.field, v.description) for v in violations] == [("tenant_id", "required")]


async def test_backend_unavailable_becomes_unavailable(toy: _Toy) -> None:
    toy.cache.error = BackendUnavailableError("redis down", retry_after=0.2)
    error = await _failed_call(toy.cache_stub.GetStats(cache_pb.GetStatsRequest()))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert trailers(error)["retry-after"] == "1"
    info = error_details(error)["google.rpc.ErrorInfo"]
    assert info.reason == "BACKEND_UNAVAILABLE"


@pytest.mark.parametrize(
    "exception",
    [RuntimeError(SECRET), KeyError(SECRET), ValueError(SECRET), AssertionError()],
    ids=lambda exception: type(exception).__name__,
)
async def test_any_other_exception_becomes_a_generic_internal(
    toy: _Toy, exception: Exception
) -> None:
    toy.cache.error = exception
    error = await _failed_call(toy.cache_stub.GetStats(cache_pb.GetStatsRequest()))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    assert SECRET not in str(error.details())
    assert all(
        SECRET.encode() not in (value if isinstance(value, bytes) else value.encode())
        for value in trailers(error).values()
    )
    info = error_details(error)["google.rpc.ErrorInfo"]
    assert (info.domain, info.reason) == ("toy.tollgate", "INTERNAL")


async def test_an_abort_from_the_servicer_keeps_its_code(serve_app: ServeApp) -> None:
    class AbortingCache(cache_pb2_grpc.CacheServiceServicer):
        async def GetStats(  # noqa: N802 (gRPC method names are PascalCase)
            self,
            request: cache_pb.GetStatsRequest,
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> cache_pb.GetStatsResponse:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not ready")
            raise AssertionError("abort returned")

    running = await serve_app(
        ServiceApp(
            name="toy",
            service_names=[CACHE_SERVICE],
            register=lambda server: cache_pb2_grpc.add_CacheServiceServicer_to_server(
                AbortingCache(), server
            ),
        )
    )
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        error = await _failed_call(stub.GetStats(cache_pb.GetStatsRequest()))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "not ready"


async def test_an_rpc_the_servicer_does_not_implement_is_unimplemented(
    toy: _Toy,
) -> None:
    error = await _failed_call(toy.cache_stub.Lookup(cache_pb.LookupRequest()))
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_the_presented_request_id_is_echoed_and_bound(toy: _Toy) -> None:
    call = toy.cache_stub.GetStats(
        cache_pb.GetStatsRequest(), metadata=(("x-request-id", "req_client_1"),)
    )
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == "req_client_1"
    assert toy.cache.request_ids == ["req_client_1"]


async def test_a_request_id_is_generated_when_none_is_presented(toy: _Toy) -> None:
    ids = []
    for _ in range(2):
        call = toy.cache_stub.GetStats(cache_pb.GetStatsRequest())
        await call
        ids.append(dict(await call.trailing_metadata())["x-request-id"])
    assert all(isinstance(i, str) and i.startswith("req_") for i in ids)
    assert ids[0] != ids[1]
    assert toy.cache.request_ids == ids


async def test_an_overlong_request_id_is_cut_to_128_characters(toy: _Toy) -> None:
    presented = "req_" + "x" * 300
    call = toy.cache_stub.GetStats(
        cache_pb.GetStatsRequest(), metadata=(("x-request-id", presented),)
    )
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == presented[:128]


async def test_the_request_id_is_echoed_on_a_failing_call(toy: _Toy) -> None:
    toy.cache.error = RuntimeError(SECRET)
    call = toy.cache_stub.GetStats(
        cache_pb.GetStatsRequest(), metadata=(("x-request-id", "req_failing"),)
    )
    error = await _failed_call(call)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert trailers(error)["x-request-id"] == "req_failing"


async def test_a_stream_yields_its_items_then_fails_with_the_mapped_status(
    toy: _Toy,
) -> None:
    toy.costs.error = UnavailableError("ledger paused", retry_after=4.5)
    call = toy.costs_stub.WatchAlerts(
        costs_pb.WatchAlertsRequest(tenant_id="acme"),
        metadata=(("x-request-id", "req_stream"),),
    )
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for response in call:
            received.append(response.alert.alert_id)
    assert received == ["acme-0", "acme-1"]
    error: grpc.aio.AioRpcError = caught.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert trailers(error)["retry-after"] == "5"
    assert error_details(error)["google.rpc.ErrorInfo"].domain == "toy.tollgate"
    assert dict(await call.initial_metadata())["x-request-id"] == "req_stream"
    assert trailers(error)["x-request-id"] == "req_stream"


async def test_a_stream_that_crashes_ends_internal(toy: _Toy) -> None:
    toy.costs.error = RuntimeError(SECRET)
    call = toy.costs_stub.WatchAlerts(costs_pb.WatchAlertsRequest(tenant_id="acme"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"


async def test_a_stream_that_completes_ends_ok(toy: _Toy) -> None:
    call = toy.costs_stub.WatchAlerts(costs_pb.WatchAlertsRequest(tenant_id="t"))
    assert [response.alert.alert_id async for response in call] == ["t-0", "t-1"]
    assert await call.code() is grpc.StatusCode.OK


@pytest.mark.parametrize("service", ["", CACHE_SERVICE, COSTS_SERVICE])
async def test_health_is_serving_while_checks_pass(toy: _Toy, service: str) -> None:
    assert await toy.health(service) == SERVING


async def test_health_follows_the_component_checks(toy: _Toy) -> None:
    toy.store_healthy[0] = False
    assert await toy.running.health.refresh() is False
    assert toy.running.health.components == {"store": False}
    for service in ["", CACHE_SERVICE, COSTS_SERVICE]:
        assert await toy.health(service) == NOT_SERVING
    toy.store_healthy[0] = True
    assert await toy.running.health.refresh() is True
    for service in ["", CACHE_SERVICE, COSTS_SERVICE]:
        assert await toy.health(service) == SERVING


async def test_a_check_that_raises_counts_as_down(toy: _Toy) -> None:
    async def broken() -> bool:
        raise ConnectionError("backend gone")

    toy.running.health.add_check("broken", broken)
    assert await toy.running.health.refresh() is False
    assert await toy.health("") == NOT_SERVING


async def test_health_of_an_unknown_service_is_not_found(toy: _Toy) -> None:
    error = await _failed_call(toy.health("tollgate.nope.v1.NopeService"))
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_stopping_goes_not_serving_before_the_server_stops(toy: _Toy) -> None:
    server = toy.running.server
    stop_server = server.stop
    seen_while_stopping: list[Any] = []

    async def observe_then_stop(grace: float | None) -> None:
        # The server still answers here: stop() has begun but not yet stopped it.
        seen_while_stopping.extend(
            [await toy.health(""), await toy.health(CACHE_SERVICE)]
        )
        await stop_server(grace)

    with mock.patch.object(server, "stop", observe_then_stop):
        await toy.running.stop(0)
    assert seen_while_stopping == [NOT_SERVING, NOT_SERVING]
    error = await _failed_call(toy.health(""))
    assert error.code() is grpc.StatusCode.UNAVAILABLE


async def test_draining_is_for_good(toy: _Toy) -> None:
    await toy.running.health.drain()
    assert await toy.running.health.refresh() is True
    assert await toy.health("") == NOT_SERVING


async def _reflect(
    channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = [response async for response in stub.ServerReflectionInfo([request])]
    (response,) = responses
    return response


async def test_reflection_lists_the_services(toy: _Toy) -> None:
    response = await _reflect(
        toy.channel, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    names = {service.name for service in response.list_services_response.service}
    assert names == {
        CACHE_SERVICE,
        COSTS_SERVICE,
        HEALTH_SERVICE,
        REFLECTION_SERVICE,
    }


async def test_reflection_describes_a_service(toy: _Toy) -> None:
    response = await _reflect(
        toy.channel,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=CACHE_SERVICE),
    )
    files = response.file_descriptor_response.file_descriptor_proto
    assert files, response
    assert cache_pb.DESCRIPTOR.serialized_pb in files
