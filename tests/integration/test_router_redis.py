from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
import yaml
from google.protobuf import duration_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.clock import FakeClock
from services.router.adapters.redis_store import DEFAULT_PREFIX
from services.router.app import build_app
from services.router.config import RouterSettings
from tests.backends import RedisServer
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details
from tests.unit.router.router_tables import BLUE_GREEN_DEPLOYMENTS, default_table_data

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(200)]
GUARD_MIN = BLUE_GREEN_DEPLOYMENTS["green"]["guard"]["min_requests"]

Stub = router_pb2_grpc.RouterServiceStub


@pytest.fixture
async def clean_redis(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    async def clear() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        keys = [key async for key in client.scan_iter(f"{DEFAULT_PREFIX}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    await clear()
    yield redis_server
    await clear()


@pytest.fixture
async def replicas(
    serve_app: ServeApp, clean_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Stub, Stub]]:
    """Two router replicas with the same canary table and one Redis."""
    data = default_table_data()
    data["deployments"] = BLUE_GREEN_DEPLOYMENTS
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = RouterSettings(
        port=0,
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        routing_file=path,
        redis_url=clean_redis.url,
    )
    first = await serve_app(await build_app(settings, clock=FakeClock()), settings)
    second = await serve_app(await build_app(settings, clock=FakeClock()), settings)
    async with (
        admin_channel(first.address) as one,
        admin_channel(second.address) as two,
    ):
        yield Stub(one), Stub(two)


async def _deployments(stub: Stub) -> list[str]:
    return [
        (
            await stub.Route(
                router_pb.RouteRequest(
                    caller=common_pb.Caller(tenant_id="acme", user_id=user)
                )
            )
        ).deployment
        for user in USERS
    ]


def _outcome(deployment: str, error: bool) -> router_pb.RecordOutcomeRequest:
    return router_pb.RecordOutcomeRequest(
        deployment=deployment,
        latency=duration_pb2.Duration(nanos=100_000_000),
        error=error,
    )


async def test_replicas_agree_on_the_degradation_level(
    replicas: tuple[Stub, Stub],
) -> None:
    first, second = replicas

    await first.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, reason="outage"
        )
    )
    raised = await second.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY,
            reason="gateway",
            raise_only=True,
        )
    )
    routes = [
        await stub.Route(router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a")))
        for stub in replicas
    ]

    assert not raised.applied
    assert raised.previous_level == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK
    assert [r.lane for r in routes] == [router_pb.LANE_STATIC] * 2


async def test_a_held_level_is_shared_and_lapses_by_itself(
    replicas: tuple[Stub, Stub], clean_redis: RedisServer
) -> None:
    first, second = replicas
    request = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, reason="upstream down"
    )
    request.hold.FromMilliseconds(300)

    held = await first.SetDegradationLevel(request)
    route = await second.Route(
        router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a"))
    )

    assert held.applied
    assert route.lane == router_pb.LANE_STATIC
    client = aioredis.Redis.from_url(clean_redis.url)
    try:
        # The hold's key expires in Redis by itself: nobody has to lower it.
        assert 0 < await client.pttl(f"{DEFAULT_PREFIX}held_level") <= 300
    finally:
        await client.aclose()


async def test_a_hold_must_be_positive_and_at_most_an_hour(
    replicas: tuple[Stub, Stub],
) -> None:
    request = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    )
    request.hold.FromSeconds(7200)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await replicas[0].SetDegradationLevel(request)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_replicas_agree_on_the_split_and_the_cohorts(
    replicas: tuple[Stub, Stub],
) -> None:
    first, second = replicas
    assert await _deployments(first) == await _deployments(second)

    await first.SetTrafficSplit(
        router_pb.SetTrafficSplitRequest(
            allocations=[
                router_pb.TrafficAllocation(deployment="blue", percent=50),
                router_pb.TrafficAllocation(deployment="green", percent=50),
            ]
        )
    )
    after_first, after_second = await _deployments(first), await _deployments(second)

    assert after_first == after_second
    assert 60 <= after_first.count("green") <= 140  # about half of 200
    status = await second.GetDeploymentStatus(router_pb.GetDeploymentStatusRequest())
    assert [d.traffic_percent for d in status.deployments] == [50, 50]


async def test_a_rollback_from_outcomes_on_both_replicas_happens_once(
    replicas: tuple[Stub, Stub],
) -> None:
    second = replicas[1]
    for index in range(GUARD_MIN):
        await replicas[index % 2].RecordOutcome(_outcome("blue", False))
    answers = [
        await replicas[index % 2].RecordOutcome(_outcome("green", True))
        for index in range(GUARD_MIN + 4)
    ]

    # The window is shared: the 50th outcome, wherever it lands, breaks the guard.
    assert [a.rolled_back for a in answers].index(True) == GUARD_MIN - 1
    assert sum(a.rolled_back for a in answers) == 1
    for stub in replicas:
        status = await stub.GetDeploymentStatus(router_pb.GetDeploymentStatusRequest())
        blue, green = status.deployments
        assert green.state == router_pb.DEPLOYMENT_STATE_ROLLED_BACK
        assert (blue.traffic_percent, green.traffic_percent) == (100, 0)
        assert green.window_requests == GUARD_MIN + 4
    assert set(await _deployments(second)) == {"blue"}


async def test_routing_stats_add_up_over_replicas(
    replicas: tuple[Stub, Stub],
) -> None:
    for stub in replicas:
        await stub.Route(
            router_pb.RouteRequest(
                caller=common_pb.Caller(tenant_id="a"),
                requested_model="auto",
                input="What is the capital of France?",
                input_tokens=7,
            )
        )

    stats = await replicas[0].GetRoutingStats(router_pb.GetRoutingStatsRequest())

    assert {c.label: c.requests for c in stats.by_tier}["economy"] == 2
    assert {c.label: c.requests for c in stats.by_complexity}["trivial"] == 2


async def test_a_split_survives_a_restart_of_every_replica(
    serve_app: ServeApp, clean_redis: RedisServer
) -> None:
    settings = RouterSettings(
        port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, redis_url=clean_redis.url
    )
    server = await serve_app(await build_app(settings), settings)
    async with admin_channel(server.address) as channel:
        await Stub(channel).SetDegradationLevel(
            router_pb.SetDegradationLevelRequest(
                level=common_pb.DEGRADATION_LEVEL_MAINTENANCE, reason="deploy"
            )
        )
    await server.stop(0)

    restarted = await serve_app(await build_app(settings), settings)
    async with admin_channel(restarted.address) as channel:
        route = await Stub(channel).Route(
            router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a"))
        )

    assert route.lane == router_pb.LANE_QUEUE


async def test_while_redis_is_down_routing_goes_on_and_changes_are_refused(
    replicas: tuple[Stub, Stub], clean_redis: RedisServer
) -> None:
    first, _ = replicas
    await first.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY, reason="slow"
        )
    )
    await first.Route(router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a")))

    clean_redis.stop()
    try:
        route = await first.Route(
            router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a"))
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await first.SetDegradationLevel(
                router_pb.SetDegradationLevelRequest(
                    level=common_pb.DEGRADATION_LEVEL_FULL_SERVICE, reason="ok"
                )
            )
    finally:
        clean_redis.start()

    # The last level read stays in force.
    assert route.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    details = error_details(error.value)
    assert details["google.rpc.ErrorInfo"].reason == "BACKEND_UNAVAILABLE"
    assert "google.rpc.RetryInfo" in details


async def test_a_quality_signal_reaches_the_decision_made_by_another_replica(
    replicas: tuple[Stub, Stub],
) -> None:
    first, second = replicas
    await first.Route(
        router_pb.RouteRequest(
            request_id="req_shared",
            caller=common_pb.Caller(tenant_id="a"),
            requested_model="auto",
            input="What is the capital of France?",
            input_tokens=7,
        )
    )

    counted = await second.RecordOutcome(
        router_pb.RecordOutcomeRequest(
            request_id="req_shared", quality=router_pb.QUALITY_SIGNAL_ESCALATED
        )
    )
    again = await first.RecordOutcome(
        router_pb.RecordOutcomeRequest(
            request_id="req_shared", quality=router_pb.QUALITY_SIGNAL_ESCALATED
        )
    )
    stats = await first.GetRoutingStats(router_pb.GetRoutingStatsRequest())

    assert (counted.quality_recorded, again.quality_recorded) == (True, False)
    (tenant,) = stats.tenants
    assert (tenant.tenant_id, tenant.requests, tenant.downgraded_requests) == (
        "a",
        1,
        1,
    )
    assert {c.label: c.requests for c in tenant.downgraded_signals}["escalated"] == 1
    assert {c.label: c.requests for c in tenant.by_complexity}["trivial"] == 1


async def test_a_timed_level_is_shared_reverts_by_itself_and_a_change_drops_it(
    serve_app: ServeApp, clean_redis: RedisServer
) -> None:
    settings = RouterSettings(
        port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, redis_url=clean_redis.url
    )
    clocks = (FakeClock(), FakeClock())
    servers = [
        await serve_app(await build_app(settings, clock=clock), settings)
        for clock in clocks
    ]
    standing = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY, reason="slow upstream"
    )
    timed = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, reason="incident"
    )
    timed.duration.FromSeconds(600)
    route = router_pb.RouteRequest(caller=common_pb.Caller(tenant_id="a"))

    async with (
        admin_channel(servers[0].address) as one,
        admin_channel(servers[1].address) as two,
    ):
        first, second = Stub(one), Stub(two)
        await first.SetDegradationLevel(standing)
        await first.SetDegradationLevel(timed)
        during = (await second.Route(route)).degradation_level
        client = aioredis.Redis.from_url(clean_redis.url)
        try:
            ttl_ms = await client.pttl(f"{DEFAULT_PREFIX}timed_level")
        finally:
            await client.aclose()
        for clock in clocks:
            clock.advance(600)
        after = (await second.Route(route)).degradation_level
        await first.SetDegradationLevel(timed)
        await second.SetDegradationLevel(standing)
        dropped = (await first.Route(route)).degradation_level

    assert during == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK
    # The key also expires in Redis by itself, at the end of the duration.
    assert 0 < ttl_ms <= 600_000
    assert after == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert dropped == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
