"""An operator's degradation level for a while (`tollgate degrade LEVEL --for`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import duration_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.clock import FakeClock
from services.router.app import build_app
from services.router.config import RouterSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details

CALLER = common_pb.Caller(tenant_id="acme", user_id="user_0001")


@dataclass
class Router:
    """A router service on a fake clock, and a stub holding the admin key."""

    stub: router_pb2_grpc.RouterServiceStub
    clock: FakeClock


@pytest.fixture
async def router(serve_app: ServeApp) -> AsyncIterator[Router]:
    clock = FakeClock()
    settings = RouterSettings(port=0, admin_key_sha256s=ADMIN_KEY_SHA256S)
    server = await serve_app(await build_app(settings, clock=clock), settings)
    async with admin_channel(server.address) as channel:
        yield Router(router_pb2_grpc.RouterServiceStub(channel), clock)


def _set(
    level: common_pb.DegradationLevel, seconds: float | None = None
) -> router_pb.SetDegradationLevelRequest:
    request = router_pb.SetDegradationLevelRequest(level=level, reason="operator")
    if seconds is not None:
        request.duration.FromNanoseconds(int(seconds * 1e9))
    return request


async def _level_routed(router: Router) -> common_pb.DegradationLevel:
    route: router_pb.RouteResponse = await router.stub.Route(
        router_pb.RouteRequest(caller=CALLER)
    )
    return route.degradation_level


async def _stats(router: Router) -> router_pb.GetRoutingStatsResponse:
    stats: router_pb.GetRoutingStatsResponse = await router.stub.GetRoutingStats(
        router_pb.GetRoutingStatsRequest()
    )
    return stats


async def test_a_timed_level_is_in_force_then_reverts_to_the_standing_one(
    router: Router,
) -> None:
    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY)
    )
    started = router.clock.now()

    changed = await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_CACHED_ONLY, seconds=1800)
    )
    during = await _level_routed(router)
    stats_during = await _stats(router)
    router.clock.advance(1799)
    just_before = await _level_routed(router)
    router.clock.advance(1)
    after = await _level_routed(router)
    stats_after = await _stats(router)

    assert changed.applied
    assert changed.level == common_pb.DEGRADATION_LEVEL_CACHED_ONLY
    assert changed.previous_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert changed.expires_at.ToSeconds() == started + 1800
    assert during == just_before == common_pb.DEGRADATION_LEVEL_CACHED_ONLY
    assert stats_during.degradation_level == common_pb.DEGRADATION_LEVEL_CACHED_ONLY
    assert stats_during.degradation_level_until.ToSeconds() == started + 1800
    assert after == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert stats_after.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert not stats_after.HasField("degradation_level_until")


async def test_a_timed_level_may_lower_the_standing_one_for_a_while(
    router: Router,
) -> None:
    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK)
    )

    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_FULL_SERVICE, seconds=60)
    )
    during = await _level_routed(router)
    router.clock.advance(60)

    assert during == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert await _level_routed(router) == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK


async def test_a_standing_change_ends_a_timed_level_and_a_new_one_replaces_it(
    router: Router,
) -> None:
    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_MAINTENANCE, seconds=3600)
    )
    replaced = await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_CACHED_ONLY, seconds=60)
    )
    router.clock.advance(60)
    after_replacement = await _level_routed(router)

    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, seconds=3600)
    )
    standing = await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY)
    )
    router.clock.advance(7200)

    assert replaced.previous_level == common_pb.DEGRADATION_LEVEL_MAINTENANCE
    # The maintenance hour was replaced: after the minute, the standing level (none).
    assert after_replacement == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert standing.previous_level == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK
    assert not standing.HasField("expires_at")
    assert await _level_routed(router) == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY


async def test_a_held_raise_stays_on_top_of_a_timed_level(router: Router) -> None:
    await router.stub.SetDegradationLevel(
        _set(common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY, seconds=600)
    )
    hold = _set(common_pb.DEGRADATION_LEVEL_CACHED_ONLY)
    hold.hold.FromSeconds(120)
    await router.stub.SetDegradationLevel(hold)

    held = await _stats(router)
    router.clock.advance(120)
    timed = await _stats(router)
    router.clock.advance(480)

    assert held.degradation_level == common_pb.DEGRADATION_LEVEL_CACHED_ONLY
    assert held.degradation_level_until.ToSeconds() == router.clock.now() - 480
    assert timed.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert timed.degradation_level_until.ToSeconds() == router.clock.now()
    assert await _level_routed(router) == common_pb.DEGRADATION_LEVEL_FULL_SERVICE


@pytest.mark.parametrize(
    ("duration", "hold", "raise_only"),
    [
        (duration_pb2.Duration(seconds=0), None, False),
        (duration_pb2.Duration(seconds=-5), None, False),
        (duration_pb2.Duration(seconds=7 * 24 * 3600 + 1), None, False),
        (duration_pb2.Duration(seconds=60), duration_pb2.Duration(seconds=60), False),
        (duration_pb2.Duration(seconds=60), None, True),
    ],
)
async def test_a_bad_duration_is_invalid_argument(
    router: Router,
    duration: duration_pb2.Duration,
    hold: duration_pb2.Duration | None,
    raise_only: bool,
) -> None:
    request = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_CACHED_ONLY,
        duration=duration,
        hold=hold,
        raise_only=raise_only,
    )

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await router.stub.SetDegradationLevel(request)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(error.value)["google.rpc.BadRequest"].field_violations
    assert [v.field for v in violations] == ["duration"]
    assert await _level_routed(router) == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
