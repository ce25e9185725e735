from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.clock import FakeClock
from services.core.server import RunningServer
from services.router.app import build_app
from services.router.config import RouterSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details
from tests.unit.router.router_tables import BLUE_GREEN_DEPLOYMENTS, default_table_data

CALLER = common_pb.Caller(tenant_id="acme", user_id="user_0001")


async def _serve(serve_app: ServeApp, settings: RouterSettings) -> RunningServer:
    return await serve_app(await build_app(settings), settings)


@pytest.fixture
async def server(serve_app: ServeApp) -> RunningServer:
    return await _serve(
        serve_app, RouterSettings(port=0, admin_key_sha256s=ADMIN_KEY_SHA256S)
    )


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with admin_channel(server.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> router_pb2_grpc.RouterServiceStub:
    return router_pb2_grpc.RouterServiceStub(channel)


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    details = error_details(error)
    assert details["google.rpc.ErrorInfo"].domain == "router.tollgate"
    return {
        v.field: v.description
        for v in details["google.rpc.BadRequest"].field_violations
    }


async def test_route_picks_the_premium_tier_for_realtime(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    response = await stub.Route(
        router_pb.RouteRequest(
            request_id="req_1",
            caller=CALLER,
            priority=common_pb.PRIORITY_REALTIME,
            request_type=common_pb.REQUEST_TYPE_CHAT,
            requested_model="",
            input="What is Python?",
            input_tokens=1000,
            max_output_tokens=500,
        )
    )

    assert response.model == "gpt-4.1"
    assert response.tier == "premium"
    assert response.reason == "priority REALTIME → premium tier gpt-4.1"
    assert (response.deployment, response.deployment_version) == ("stable", "v1")
    assert response.lane == router_pb.LANE_SYNC
    assert response.complexity == router_pb.COMPLEXITY_UNSPECIFIED
    assert response.degradation_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert (response.max_output_tokens, response.input_token_cap) == (500, 2000)
    assert list(response.fallback_models) == ["gpt-4.1-mini", "gpt-4.1-nano"]
    assert response.worst_case_cost_micros == 6000
    assert response.truncated_input_tokens == 0
    assert response.deployment_instructions == ""
    assert not response.HasField("temperature")
    assert response.fallback_text == ""


async def test_unspecified_priority_and_type_mean_standard_chat(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    response = await stub.Route(router_pb.RouteRequest(caller=CALLER))

    assert (response.model, response.tier) == ("gpt-4.1-mini", "standard")
    assert response.reason == "request type CHAT → standard tier gpt-4.1-mini"
    assert (response.max_output_tokens, response.input_token_cap) == (500, 2000)
    assert response.worst_case_cost_micros == 800  # 500 output x 1.6 micro-dollars


async def test_auto_routes_by_the_prompts_complexity(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    trivial = await stub.Route(
        router_pb.RouteRequest(
            caller=CALLER,
            priority=common_pb.PRIORITY_REALTIME,
            requested_model="auto",
            input="What is Python?",
            input_tokens=4,
        )
    )
    complex_ = await stub.Route(
        router_pb.RouteRequest(
            caller=CALLER,
            requested_model="auto",
            input="Prove that there are infinitely many primes, then derive a bound "
            "on the gap between consecutive primes and analyze its complexity.",
            input_tokens=30,
        )
    )

    assert trivial.complexity == router_pb.COMPLEXITY_TRIVIAL
    assert (trivial.model, trivial.tier) == ("gpt-4.1-nano", "economy")
    assert trivial.reason == (
        "auto: trivial prompt → cheapest capable tier economy gpt-4.1-nano (student)"
    )
    assert complex_.complexity == router_pb.COMPLEXITY_COMPLEX
    assert complex_.model == "gpt-4.1"
    stats = await stub.GetRoutingStats(router_pb.GetRoutingStatsRequest())
    by_complexity = {c.label: c.requests for c in stats.by_complexity}
    assert (by_complexity["trivial"], by_complexity["complex"]) == (1, 1)
    assert stats.savings_micros == stats.premium_cost_micros - stats.routed_cost_micros
    assert stats.savings_micros > 0


async def test_input_over_the_cap_is_reported_and_not_priced(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    response = await stub.Route(
        router_pb.RouteRequest(
            caller=CALLER,
            request_type=common_pb.REQUEST_TYPE_CLASSIFY,
            input_tokens=1500,
        )
    )

    assert (response.input_token_cap, response.truncated_input_tokens) == (500, 1000)
    assert (response.model, response.max_output_tokens) == ("gpt-4.1-nano", 50)
    # 500 x 0.1 + 50 x 0.4 micro-dollars.
    assert response.worst_case_cost_micros == 70


async def test_batch_priority_goes_to_the_batch_lane(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    response = await stub.Route(
        router_pb.RouteRequest(
            caller=CALLER,
            priority=common_pb.PRIORITY_BATCH,
            request_type=common_pb.REQUEST_TYPE_SUMMARIZE,
            max_output_tokens=10_000,
        )
    )

    assert response.lane == router_pb.LANE_BATCH
    assert response.model == "gpt-4.1-mini"
    assert (response.max_output_tokens, response.input_token_cap) == (300, 8000)


async def test_route_rejects_bad_fields_with_violations(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Route(
            router_pb.RouteRequest(
                caller=common_pb.Caller(user_id="u1"),
                input_tokens=-1,
                max_output_tokens=-5,
                input_text_tokens=-2,
                priority=99,  # type: ignore[arg-type]  # a value from a newer client
            )
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(error.value)) == {
        "caller.tenant_id",
        "input_tokens",
        "max_output_tokens",
        "input_text_tokens",
        "priority",
    }


async def test_route_rejects_an_unknown_model(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Route(
            router_pb.RouteRequest(caller=CALLER, requested_model="gpt-9-turbo")
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(error.value)) == {"requested_model"}


async def test_degradation_levels_bend_the_route(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    request = router_pb.RouteRequest(
        caller=CALLER,
        priority=common_pb.PRIORITY_REALTIME,
        request_type=common_pb.REQUEST_TYPE_CLASSIFY,
    )

    changed = await stub.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY, reason="upstream slow"
        )
    )
    reduced = await stub.Route(request)
    await stub.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, reason="outage"
        )
    )
    static = await stub.Route(request)

    assert changed.level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert changed.previous_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert (reduced.model, reduced.max_output_tokens) == ("gpt-4.1-mini", 25)
    assert reduced.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert static.lane == router_pb.LANE_STATIC
    assert static.fallback_text == "unavailable"
    assert static.degradation_level == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK


async def test_a_raise_only_level_keeps_a_higher_one(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    await stub.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_CACHED_ONLY, reason="operator"
        )
    )

    raised = await stub.SetDegradationLevel(
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY,
            reason="breaker open",
            raise_only=True,
        )
    )

    assert not raised.applied
    assert raised.level == common_pb.DEGRADATION_LEVEL_CACHED_ONLY
    route = await stub.Route(router_pb.RouteRequest(caller=CALLER))
    assert route.lane == router_pb.LANE_CACHE_ONLY


async def test_unspecified_degradation_level_is_refused(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SetDegradationLevel(router_pb.SetDegradationLevelRequest())

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(error.value)) == {"level"}


async def test_traffic_split_must_add_up_to_100_and_name_deployments(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SetTrafficSplit(
            router_pb.SetTrafficSplitRequest(
                allocations=[
                    router_pb.TrafficAllocation(deployment="stable", percent=50),
                    router_pb.TrafficAllocation(deployment="canary", percent=10),
                ]
            )
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(error.value) == {
        "allocations[1].deployment": "unknown deployment 'canary'",
        "allocations": "percentages add up to 60, not 100",
    }


async def test_outcomes_show_in_the_deployment_status(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    for millis, failed in [(120, False), (80, True)]:
        response = await stub.RecordOutcome(
            router_pb.RecordOutcomeRequest(
                deployment="stable",
                model="gpt-4.1-mini",
                latency=duration_pb2.Duration(nanos=millis * 1_000_000),
                error=failed,
            )
        )
        assert not response.rolled_back

    status = await stub.GetDeploymentStatus(router_pb.GetDeploymentStatusRequest())

    [stable] = status.deployments
    assert (stable.name, stable.version, stable.traffic_percent) == (
        "stable",
        "v1",
        100,
    )
    assert (stable.requests, stable.errors, stable.error_rate) == (2, 1, 0.5)
    assert (stable.window_requests, stable.window_errors) == (2, 1)
    assert (stable.p50_latency_ms, stable.p95_latency_ms) == (80.0, 120.0)
    assert stable.state == router_pb.DEPLOYMENT_STATE_ACTIVE
    assert (stable.baseline_deployment, stable.rollback_reason) == ("", "")
    assert not stable.HasField("rolled_back_at")


@pytest.mark.parametrize(
    ("deployment", "latency", "field"),
    [
        ("purple", duration_pb2.Duration(nanos=1000), "deployment"),
        ("", duration_pb2.Duration(nanos=1000), "deployment"),
        ("stable", duration_pb2.Duration(seconds=-1), "latency"),
    ],
)
async def test_a_bad_outcome_is_refused(
    stub: router_pb2_grpc.RouterServiceStub,
    deployment: str,
    latency: duration_pb2.Duration,
    field: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.RecordOutcome(
            router_pb.RecordOutcomeRequest(deployment=deployment, latency=latency)
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(error.value)) == {field}


async def test_routing_stats_count_by_tier(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    for priority in (common_pb.PRIORITY_CRITICAL, common_pb.PRIORITY_LOW):
        await stub.Route(
            router_pb.RouteRequest(caller=CALLER, priority=priority, input_tokens=1000)
        )

    stats = await stub.GetRoutingStats(router_pb.GetRoutingStatsRequest())

    assert {c.label: c.requests for c in stats.by_tier} == {
        "premium": 1,
        "standard": 0,
        "economy": 1,
    }
    assert {c.label: c.requests for c in stats.by_complexity}["unspecified"] == 2
    assert stats.routed_cost_micros == 6000 + 300
    assert stats.premium_cost_micros == 2 * 6000
    assert stats.degradation_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE


async def test_health_reports_the_routing_table(
    server: RunningServer, channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = await health.Check(
        health_pb2.HealthCheckRequest(service="tollgate.router.v1.RouterService")
    )

    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert server.health.components == {"routing_table": True}


async def test_a_routing_file_with_a_canary_routes_cohorts(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    data = default_table_data()
    data["deployments"] = BLUE_GREEN_DEPLOYMENTS
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))
    server = await _serve(
        serve_app,
        RouterSettings(port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, routing_file=path),
    )

    async with admin_channel(server.address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        canary = await stub.Route(
            router_pb.RouteRequest(
                caller=common_pb.Caller(tenant_id="acme", user_id="user_0005")
            )
        )
        split = await stub.SetTrafficSplit(
            router_pb.SetTrafficSplitRequest(
                allocations=[
                    router_pb.TrafficAllocation(deployment="blue", percent=100)
                ]
            )
        )
        after = await stub.Route(
            router_pb.RouteRequest(
                caller=common_pb.Caller(tenant_id="acme", user_id="user_0005")
            )
        )

    assert (canary.deployment, canary.deployment_version) == ("green", "v2.4-canary")
    assert canary.deployment_instructions == "Be concise and empathetic."
    assert canary.HasField("temperature")
    assert canary.temperature == 0.6
    assert [(a.deployment, a.percent) for a in split.allocations] == [
        ("blue", 100),
        ("green", 0),
    ]
    assert after.deployment == "blue"


def _canary_file(tmp_path: Path) -> Path:
    data = default_table_data()
    data["deployments"] = BLUE_GREEN_DEPLOYMENTS
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _outcome(
    deployment: str, millis: int, error: bool
) -> router_pb.RecordOutcomeRequest:
    return router_pb.RecordOutcomeRequest(
        deployment=deployment,
        model="gpt-4.1-mini",
        latency=duration_pb2.Duration(nanos=millis * 1_000_000),
        error=error,
    )


async def test_a_failing_canary_is_rolled_back_and_shown(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = RouterSettings(
        port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, routing_file=_canary_file(tmp_path)
    )
    server = await serve_app(await build_app(settings, clock=clock), settings)
    guard_min = BLUE_GREEN_DEPLOYMENTS["green"]["guard"]["min_requests"]

    async with admin_channel(server.address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for _ in range(guard_min):
            await stub.RecordOutcome(_outcome("blue", 100, False))
        clock.advance(60)
        answers = [
            await stub.RecordOutcome(_outcome("green", 100, True))
            for _ in range(guard_min)
        ]
        status = await stub.GetDeploymentStatus(router_pb.GetDeploymentStatusRequest())
        after = await stub.Route(
            router_pb.RouteRequest(
                caller=common_pb.Caller(tenant_id="acme", user_id="user_0005")
            )
        )

    assert [a.rolled_back for a in answers] == [False] * (guard_min - 1) + [True]
    reason = "error rate 100.0% over 50 calls exceeds baseline 0.0% + 5.0%"
    assert answers[-1].rollback_reason == reason
    blue, green = status.deployments
    assert (blue.traffic_percent, blue.state) == (
        100,
        router_pb.DEPLOYMENT_STATE_ACTIVE,
    )
    assert green.traffic_percent == 0
    assert green.state == router_pb.DEPLOYMENT_STATE_ROLLED_BACK
    assert green.rollback_reason == reason
    assert green.rolled_back_at.ToNanoseconds() == int(clock.now() * 1e9)
    assert green.baseline_deployment == "blue"
    assert after.deployment == "blue"


async def test_cohorts_are_sticky_across_a_restart(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    settings = RouterSettings(
        port=0, admin_key_sha256s=ADMIN_KEY_SHA256S, routing_file=_canary_file(tmp_path)
    )
    users = [f"user-{n}" for n in range(300)]
    seen: list[list[str]] = []
    for _ in range(2):
        server = await serve_app(await build_app(settings))
        async with admin_channel(server.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            seen.append(
                [
                    (
                        await stub.Route(
                            router_pb.RouteRequest(
                                caller=common_pb.Caller(tenant_id="acme", user_id=u)
                            )
                        )
                    ).deployment
                    for u in users
                ]
            )
        await server.stop(0)

    assert seen[0] == seen[1]
    assert set(seen[0]) == {"blue", "green"}


async def test_a_quality_signal_is_counted_per_tenant(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    await stub.Route(
        router_pb.RouteRequest(
            request_id="req_q1",
            caller=CALLER,
            requested_model="auto",
            input="What is the capital of Peru?",
            input_tokens=8,
        )
    )

    recorded = await stub.RecordOutcome(
        router_pb.RecordOutcomeRequest(
            request_id="req_q1", quality=router_pb.QUALITY_SIGNAL_THUMBS_DOWN
        )
    )
    repeated = await stub.RecordOutcome(
        router_pb.RecordOutcomeRequest(
            request_id="req_q1", quality=router_pb.QUALITY_SIGNAL_THUMBS_DOWN
        )
    )
    unknown = await stub.RecordOutcome(
        router_pb.RecordOutcomeRequest(
            request_id="req_none", quality=router_pb.QUALITY_SIGNAL_ESCALATED
        )
    )

    assert (recorded.quality_recorded, repeated.quality_recorded) == (True, False)
    assert not unknown.quality_recorded
    stats = await stub.GetRoutingStats(
        router_pb.GetRoutingStatsRequest(tenant_id="acme")
    )
    (tenant,) = stats.tenants
    assert (tenant.tenant_id, tenant.requests) == ("acme", 1)
    assert tenant.downgraded_requests == 1
    assert tenant.downgrade_rate == 1.0
    signals = {c.label: c.requests for c in tenant.downgraded_signals}
    assert signals["thumbs_down"] == 1
    assert tenant.downgraded_complaint_rate == 1.0
    other = await stub.GetRoutingStats(
        router_pb.GetRoutingStatsRequest(tenant_id="globex")
    )
    assert list(other.tenants) == []


async def test_record_outcome_needs_a_deployment_or_a_request_id_with_a_signal(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.RecordOutcome(router_pb.RecordOutcomeRequest())
    with pytest.raises(grpc.aio.AioRpcError) as no_id:
        await stub.RecordOutcome(
            router_pb.RecordOutcomeRequest(quality=router_pb.QUALITY_SIGNAL_THUMBS_UP)
        )

    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(empty.value)) == {"deployment"}
    assert set(_violations(no_id.value)) == {"request_id"}
