"""Route leases over the wire: the real router service and the gateway's client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.breaker import BreakerConfig, CircuitBreaker
from services.core.clock import FakeClock
from services.core.server import RunningServer
from services.gateway.clients import DownstreamClient, RouterClient
from services.gateway.domain import (
    Lane,
    Principal,
    RouteLease,
)
from services.gateway.ports import OutcomeReport, ReusedRoutes
from services.router.app import build_app
from services.router.config import RouterSettings
from tests.chat_requests import chat_request
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details

PRINCIPAL = Principal(tenant_id="acme", service="chat", user_id="u1", user_tier="paid")
REQUEST = chat_request("What is a token bucket?")


@pytest.fixture
async def server(serve_app: ServeApp) -> RunningServer:
    settings = RouterSettings(
        port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, route_lease_seconds=2.5
    )
    return await serve_app(await build_app(settings), settings)


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with admin_channel(server.address) as channel:
        yield channel


@pytest.fixture
def client(channel: grpc.aio.Channel) -> RouterClient:
    breaker = CircuitBreaker("router", BreakerConfig(), FakeClock())
    return RouterClient(DownstreamClient("router", "", breaker, 5.0, channel=channel))


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> router_pb2_grpc.RouterServiceStub:
    return router_pb2_grpc.RouterServiceStub(channel)


async def test_a_named_model_comes_with_its_lease(client: RouterClient) -> None:
    route = await client.route("req-1", PRINCIPAL, REQUEST, input_tokens=1000)

    assert route.lease == RouteLease(
        duration_seconds=2.5,
        max_output_tokens_cap=500,
        tier="standard",
        prices=(400_000, 1_600_000),
        premium_prices=(2_000_000, 8_000_000),
    )


async def test_auto_comes_without_one(client: RouterClient) -> None:
    auto = dataclasses.replace(REQUEST, model="auto")

    route = await client.route("req-1", PRINCIPAL, auto, input_tokens=1000)

    assert route.lease is None


async def test_reused_routes_count_in_the_routing_stats(
    client: RouterClient, stub: router_pb2_grpc.RouterServiceStub
) -> None:
    await client.route("req-1", PRINCIPAL, REQUEST, input_tokens=1000)

    await client.record_outcomes(
        [], [ReusedRoutes("standard", Lane.SYNC, 3, 3 * 1200, 3 * 6000)]
    )
    await client.record_outcomes(
        [OutcomeReport("stable", "gpt-4.1-mini", 0.2, False)],
        [ReusedRoutes("economy", Lane.BATCH, 1, 300, 6000)],
    )

    stats = await stub.GetRoutingStats(router_pb.GetRoutingStatsRequest())
    assert {count.label: count.requests for count in stats.by_tier} == {
        "premium": 0,
        "standard": 4,
        "economy": 1,
    }
    # The routed request: 1000 input and 500 output tokens of gpt-4.1-mini.
    assert stats.routed_cost_micros == 1200 + 3 * 1200 + 300
    assert stats.premium_cost_micros == 4 * 6000 + 6000


async def test_a_batch_with_an_unknown_tier_records_nothing(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    request = router_pb.RecordOutcomeBatchRequest(
        reused_routes=[
            router_pb.ReusedRoutes(
                tier="standard", lane=router_pb.LANE_SYNC, decisions=2
            ),
            router_pb.ReusedRoutes(tier="gold", lane=router_pb.LANE_SYNC, decisions=1),
            router_pb.ReusedRoutes(tier="economy", decisions=0, routed_cost_micros=-1),
        ]
    )

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.RecordOutcomeBatch(request)

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = {
        v.field
        for v in error_details(error.value)["google.rpc.BadRequest"].field_violations
    }
    assert violations == {
        "reused_routes[1].tier",
        "reused_routes[2].lane",
        "reused_routes[2].decisions",
        "reused_routes[2].routed_cost_micros",
    }
    stats = await stub.GetRoutingStats(router_pb.GetRoutingStatsRequest())
    assert sum(count.requests for count in stats.by_tier) == 0


async def test_an_empty_batch_is_refused(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.RecordOutcomeBatch(router_pb.RecordOutcomeBatchRequest())

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() is not None
