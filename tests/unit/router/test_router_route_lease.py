"""Which decisions the router leases for reuse, and what a reuse counts."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.clock import FakeClock
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import Router, RouteRequest, TrafficAllocation
from services.router.enums import Complexity, DegradationLevel, Priority, RequestType
from services.router.table import RoutingTable, load_routing_table
from tests.unit.router.router_tables import blue_green_table, default_table_data

LEASE_SECONDS = 1.5


def _router(table: RoutingTable | None = None, lease: float = LEASE_SECONDS) -> Router:
    return Router(
        table or load_routing_table(None),
        InMemoryControlStore(),
        InMemoryMetricsStore(),
        load_complexity_model(),
        FakeClock(),
        route_lease_seconds=lease,
    )


def _request(**changes: Any) -> RouteRequest:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "user_id": "u",
        "priority": Priority.STANDARD,
        "request_type": RequestType.CHAT,
        "requested_model": "gpt-4.1-mini",
        "input": "What is a token bucket?",
        "input_tokens": 100,
        "max_output_tokens": 0,
    }
    fields.update(changes)
    return RouteRequest(**fields)


@pytest.mark.parametrize("requested_model", ["gpt-4.1-mini", ""])
async def test_a_decision_only_model_priority_and_type_make_is_leased(
    requested_model: str,
) -> None:
    decision = await _router().route(_request(requested_model=requested_model))

    lease = decision.lease
    assert lease is not None
    assert lease.duration_seconds == LEASE_SECONDS
    # The chat budget's 500 output tokens; the caller's own limit is not in it.
    assert lease.max_output_tokens_cap == 500
    assert lease.tier.model == decision.model == "gpt-4.1-mini"
    assert lease.premium_tier.model == "gpt-4.1"


async def test_the_cap_is_the_deployments_when_lower_and_ignores_the_callers() -> None:
    data = default_table_data()
    data["deployments"]["stable"]["max_output_tokens"] = 120
    table = RoutingTable.model_validate(data)

    decision = await _router(table).route(_request(max_output_tokens=80))

    assert decision.max_output_tokens == 80
    assert decision.lease is not None
    assert decision.lease.max_output_tokens_cap == 120


async def test_auto_is_classified_per_prompt_and_never_leased() -> None:
    decision = await _router().route(_request(requested_model="auto"))

    assert decision.complexity is not Complexity.UNSPECIFIED
    assert decision.lease is None


async def test_a_split_between_deployments_is_not_leased() -> None:
    # The sticky cohort of each user picks the deployment.
    decision = await _router(blue_green_table()).route(_request())

    assert decision.lease is None


async def test_a_split_set_to_one_deployment_is_leased_again() -> None:
    router = _router(blue_green_table())
    await router.set_traffic_split(
        [TrafficAllocation("blue", 0), TrafficAllocation("green", 100)]
    )

    decision = await router.route(_request())

    assert decision.deployment == "green"
    assert decision.lease is not None


@pytest.mark.parametrize(
    "level", [level for level in DegradationLevel if level.value > 0]
)
async def test_no_lease_below_full_service(level: DegradationLevel) -> None:
    router = _router()
    await router.set_degradation_level(level, "drill")

    decision = await router.route(_request())

    assert decision.degradation_level is level
    assert decision.lease is None


async def test_a_lease_duration_of_zero_leases_nothing() -> None:
    decision = await _router(lease=0.0).route(_request())

    assert decision.lease is None


async def test_reused_decisions_count_in_the_stats_as_routed_ones() -> None:
    router = _router()
    routed = await router.route(
        _request(requested_model="", priority=Priority.LOW, input_tokens=1000)
    )

    await router.record_reused_routes(
        "economy",
        decisions=4,
        routed_cost_micros=4 * routed.worst_case_cost_micros,
        premium_cost_micros=4 * 6000,
    )

    stats = await router.routing_stats()
    assert stats.by_tier == (("premium", 0), ("standard", 0), ("economy", 5))
    assert dict(stats.by_complexity)[Complexity.UNSPECIFIED] == 5
    assert stats.routed_cost_micros == 5 * routed.worst_case_cost_micros == 5 * 300
    assert stats.premium_cost_micros == 5 * 6000
