"""A held degradation level: the gateway's automatic raise, which lapses by itself."""

from __future__ import annotations

from services.core.clock import FakeClock
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import Router, RouteRequest
from services.router.enums import DegradationLevel, Lane, Priority, RequestType
from services.router.table import load_routing_table


def _router(clock: FakeClock) -> Router:
    return Router(
        load_routing_table(None),
        InMemoryControlStore(),
        InMemoryMetricsStore(),
        load_complexity_model(),
        clock,
    )


REQUEST = RouteRequest(
    tenant_id="acme",
    user_id="u1",
    priority=Priority.STANDARD,
    request_type=RequestType.CHAT,
    requested_model="",
    input="hello",
    input_tokens=1,
    max_output_tokens=0,
)


async def test_a_held_level_bends_routes_until_it_lapses() -> None:
    clock = FakeClock()
    router = _router(clock)

    change = await router.hold_degradation_level(
        DegradationLevel.STATIC_FALLBACK, "upstream circuits open", 30.0
    )

    assert change.level is DegradationLevel.STATIC_FALLBACK
    assert change.previous_level is DegradationLevel.FULL_SERVICE
    held = await router.route(REQUEST)
    assert held.lane is Lane.STATIC
    assert held.degradation_level is DegradationLevel.STATIC_FALLBACK

    clock.advance(30.0)

    recovered = await router.route(REQUEST)
    assert recovered.lane is Lane.SYNC
    assert recovered.degradation_level is DegradationLevel.FULL_SERVICE


async def test_a_hold_never_lowers_the_operators_level_or_a_higher_hold() -> None:
    clock = FakeClock()
    router = _router(clock)
    await router.set_degradation_level(DegradationLevel.CACHED_ONLY, "operator")

    change = await router.hold_degradation_level(
        DegradationLevel.REDUCED_QUALITY, "fallback model", 30.0
    )
    assert change.level is DegradationLevel.CACHED_ONLY
    assert not change.applied

    await router.hold_degradation_level(DegradationLevel.MAINTENANCE, "down", 30.0)
    await router.hold_degradation_level(DegradationLevel.STATIC_FALLBACK, "less", 60.0)
    assert (await router.route(REQUEST)).lane is Lane.QUEUE  # maintenance still held

    clock.advance(30.0)  # the maintenance hold lapsed; the operator's level remains
    decision = await router.route(REQUEST)
    assert decision.degradation_level is DegradationLevel.CACHED_ONLY
