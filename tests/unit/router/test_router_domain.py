from __future__ import annotations

import pytest

from services.core.clock import FakeClock
from services.core.errors import FieldViolation, InvalidArgumentError
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import (
    COHORT_BUCKETS,
    Router,
    RouteRequest,
    TrafficAllocation,
    cohort_bucket,
    percentile,
    pick_deployment,
    worst_case_cost_micros,
)
from services.router.enums import (
    Complexity,
    DegradationLevel,
    Lane,
    Priority,
    RequestType,
)
from services.router.ports import Outcome
from services.router.table import RoutingTable, load_routing_table
from tests.unit.router.router_tables import blue_green_table

DEFAULT_TABLE = load_routing_table(None)


def _request(
    *,
    priority: Priority = Priority.STANDARD,
    request_type: RequestType = RequestType.CHAT,
    requested_model: str = "",
    input: str = "",
    input_tokens: int = 1000,
    max_output_tokens: int = 0,
    tenant_id: str = "acme",
    user_id: str = "user_0001",
) -> RouteRequest:
    return RouteRequest(
        tenant_id=tenant_id,
        user_id=user_id,
        priority=priority,
        request_type=request_type,
        requested_model=requested_model,
        input=input,
        input_tokens=input_tokens,
        max_output_tokens=max_output_tokens,
    )


def _router(
    table: RoutingTable = DEFAULT_TABLE,
    control: InMemoryControlStore | None = None,
) -> Router:
    return Router(
        table,
        control or InMemoryControlStore(),
        InMemoryMetricsStore(),
        load_complexity_model(),
        FakeClock(),
    )


def _fields(error: InvalidArgumentError) -> set[str]:
    return {violation.field for violation in error.violations}


@pytest.mark.parametrize(
    ("priority", "model", "tier", "lane"),
    [
        (Priority.CRITICAL, "gpt-4.1", "premium", Lane.SYNC),
        (Priority.REALTIME, "gpt-4.1", "premium", Lane.SYNC),
        (Priority.STANDARD, "gpt-4.1-mini", "standard", Lane.SYNC),
        (Priority.BATCH, "gpt-4.1-mini", "standard", Lane.BATCH),
        (Priority.LOW, "gpt-4.1-nano", "economy", Lane.SYNC),
    ],
)
async def test_auto_routes_each_priority_to_its_tier(
    priority: Priority, model: str, tier: str, lane: Lane
) -> None:
    decision = await _router().route(_request(priority=priority))

    assert (decision.model, decision.tier, decision.lane) == (model, tier, lane)
    source = (
        "request type CHAT"  # standard and batch take the request type's preset
        if priority in (Priority.STANDARD, Priority.BATCH)
        else f"priority {priority.name}"
    )
    assert decision.reason.startswith(f"{source} → {tier} tier {model}")
    assert decision.complexity is Complexity.UNSPECIFIED
    assert decision.degradation_level is DegradationLevel.FULL_SERVICE
    assert (decision.deployment, decision.deployment_version) == ("stable", "v1")
    assert decision.deployment_instructions == ""
    assert decision.temperature is None
    assert decision.fallback_text == ""


async def test_the_reason_names_priority_tier_and_model() -> None:
    decision = await _router().route(_request(priority=Priority.REALTIME))

    assert decision.reason == "priority REALTIME → premium tier gpt-4.1"


async def test_batch_priority_says_it_goes_through_the_batch_lane() -> None:
    decision = await _router().route(_request(priority=Priority.BATCH))

    assert decision.reason.endswith("via the batch lane")


@pytest.mark.parametrize(
    ("request_type", "model"),
    [
        (RequestType.CHAT, "gpt-4.1-mini"),
        (RequestType.SUMMARIZE, "gpt-4.1-mini"),
        (RequestType.ANALYZE, "gpt-4.1"),
        (RequestType.CLASSIFY, "gpt-4.1-nano"),
        (RequestType.GENERATE, "gpt-4.1"),
    ],
)
async def test_a_priority_without_a_tier_takes_the_request_types_preset(
    request_type: RequestType, model: str
) -> None:
    decision = await _router().route(_request(request_type=request_type))

    assert decision.model == model
    assert decision.reason.startswith(f"request type {request_type.name} → ")


@pytest.mark.parametrize(
    ("prompt", "complexity", "model"),
    [
        # The router of these tests has no encoder: the student decides.
        ("What is the capital of Peru?", Complexity.TRIVIAL, "gpt-4.1-nano"),
        (
            "Prove that there are infinitely many primes, then derive a bound on "
            "the gap between consecutive primes and analyze its complexity.",
            Complexity.COMPLEX,
            "gpt-4.1",
        ),
    ],
)
async def test_auto_classifies_the_prompt_and_picks_the_cheapest_capable_tier(
    prompt: str, complexity: Complexity, model: str
) -> None:
    # Realtime alone would pin the premium tier; "auto" asks for complexity routing.
    decision = await _router().route(
        _request(priority=Priority.REALTIME, requested_model="auto", input=prompt)
    )

    assert decision.complexity is complexity
    assert decision.model == model
    assert decision.reason.startswith(f"auto: {complexity.value} prompt → ")
    assert "cheapest capable tier" in decision.reason


async def test_auto_keeps_the_priority_lane() -> None:
    decision = await _router().route(
        _request(priority=Priority.BATCH, requested_model="auto", input="hi")
    )

    assert (decision.model, decision.lane) == ("gpt-4.1-nano", Lane.BATCH)


async def test_a_known_requested_model_wins_over_the_priority() -> None:
    decision = await _router().route(
        _request(priority=Priority.CRITICAL, requested_model="gpt-4.1-nano")
    )

    assert (decision.model, decision.tier) == ("gpt-4.1-nano", "economy")
    assert decision.reason == "requested model gpt-4.1-nano"
    assert decision.lane is Lane.SYNC


async def test_an_unknown_requested_model_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError) as error:
        await _router().route(_request(requested_model="gpt-9"))

    assert _fields(error.value) == {"requested_model"}


@pytest.mark.parametrize(
    ("request_type", "input_cap", "max_output"),
    [
        (RequestType.CHAT, 2000, 500),
        (RequestType.SUMMARIZE, 8000, 300),
        (RequestType.ANALYZE, 4000, 2000),
        (RequestType.CLASSIFY, 500, 50),
        (RequestType.GENERATE, 1000, 4000),
    ],
)
async def test_the_request_type_sets_the_budget_and_input_cap(
    request_type: RequestType, input_cap: int, max_output: int
) -> None:
    decision = await _router().route(_request(request_type=request_type))

    assert decision.input_token_cap == input_cap
    assert decision.max_output_tokens == max_output


@pytest.mark.parametrize(
    ("requested", "granted"), [(100, 100), (500, 500), (9000, 500)]
)
async def test_the_callers_max_output_is_capped_by_the_budget(
    requested: int, granted: int
) -> None:
    decision = await _router().route(_request(max_output_tokens=requested))

    assert decision.max_output_tokens == granted


async def test_worst_case_cost_is_exact_in_micro_dollars() -> None:
    decision = await _router().route(
        _request(requested_model="gpt-4.1", input_tokens=1000, max_output_tokens=500)
    )

    # 1000 x $2/1M + 500 x $8/1M = 2000 + 4000 micro-dollars.
    assert decision.worst_case_cost_micros == 6000


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "micros"),
    [(0, 0, 0), (1, 0, 1), (10, 0, 1), (11, 0, 2), (0, 3, 2), (1000, 500, 300)],
)
def test_worst_case_cost_rounds_up_to_the_next_micro(
    input_tokens: int, output_tokens: int, micros: int
) -> None:
    nano = DEFAULT_TABLE.tiers["economy"]  # 0.1 µ$ per input, 0.4 µ$ per output

    assert worst_case_cost_micros(nano, input_tokens, output_tokens) == micros


@pytest.mark.parametrize(
    ("model", "fallbacks"),
    [
        ("gpt-4.1", ("gpt-4.1-mini", "gpt-4.1-nano")),
        ("gpt-4.1-mini", ("gpt-4.1-nano",)),
        ("gpt-4.1-nano", ()),
    ],
)
async def test_fallback_models_are_the_cheaper_ones_in_order(
    model: str, fallbacks: tuple[str, ...]
) -> None:
    decision = await _router().route(_request(requested_model=model))

    assert decision.fallback_models == fallbacks


async def _degraded_router(level: DegradationLevel) -> Router:
    router = _router()
    await router.set_degradation_level(level, "test")
    return router


async def test_reduced_quality_takes_the_next_cheaper_model_and_halves_output() -> None:
    router = await _degraded_router(DegradationLevel.REDUCED_QUALITY)

    decision = await router.route(
        _request(priority=Priority.REALTIME, input_tokens=1000)
    )

    assert (decision.model, decision.tier) == ("gpt-4.1-mini", "standard")
    assert decision.max_output_tokens == 250
    assert decision.fallback_models == ("gpt-4.1-nano",)
    assert decision.lane is Lane.SYNC
    assert decision.degradation_level is DegradationLevel.REDUCED_QUALITY
    assert "REDUCED_QUALITY" in decision.reason
    # 1000 x 0.4 + 250 x 1.6 micro-dollars, at the degraded model's price.
    assert decision.worst_case_cost_micros == 800


async def test_reduced_quality_rounds_an_odd_budget_up_and_keeps_the_cheapest() -> None:
    router = await _degraded_router(DegradationLevel.REDUCED_QUALITY)

    decision = await router.route(_request(priority=Priority.LOW, max_output_tokens=5))

    assert decision.model == "gpt-4.1-nano"
    assert decision.max_output_tokens == 3


async def test_cached_only_serves_the_cache_lane_with_the_busy_message() -> None:
    router = await _degraded_router(DegradationLevel.CACHED_ONLY)

    decision = await router.route(_request(priority=Priority.REALTIME))

    assert decision.lane is Lane.CACHE_ONLY
    assert decision.fallback_text == DEFAULT_TABLE.busy_message
    assert decision.model == "gpt-4.1"  # the cache is keyed by the normal model
    assert "CACHED_ONLY" in decision.reason


@pytest.mark.parametrize("request_type", list(RequestType))
async def test_static_fallback_answers_with_the_request_types_text(
    request_type: RequestType,
) -> None:
    router = await _degraded_router(DegradationLevel.STATIC_FALLBACK)

    decision = await router.route(_request(request_type=request_type))

    assert decision.lane is Lane.STATIC
    expected = DEFAULT_TABLE.request_types[request_type].static_fallback
    assert decision.fallback_text == expected
    assert "STATIC_FALLBACK" in decision.reason


async def test_maintenance_queues_the_request() -> None:
    router = await _degraded_router(DegradationLevel.MAINTENANCE)

    decision = await router.route(_request(priority=Priority.BATCH))

    assert decision.lane is Lane.QUEUE
    assert decision.degradation_level is DegradationLevel.MAINTENANCE
    assert "MAINTENANCE" in decision.reason


async def test_setting_the_level_returns_the_previous_one() -> None:
    router = _router()

    first = await router.set_degradation_level(DegradationLevel.CACHED_ONLY, "outage")
    second = await router.set_degradation_level(DegradationLevel.FULL_SERVICE, "ok")

    assert first.previous_level is DegradationLevel.FULL_SERVICE
    assert first.level is DegradationLevel.CACHED_ONLY
    assert second.previous_level is DegradationLevel.CACHED_ONLY
    decision = await router.route(_request())
    assert decision.lane is Lane.SYNC


async def test_the_level_is_shared_through_the_control_store() -> None:
    control = InMemoryControlStore()
    await _router(control=control).set_degradation_level(
        DegradationLevel.STATIC_FALLBACK, "outage"
    )

    decision = await _router(control=control).route(_request())

    assert decision.lane is Lane.STATIC


def test_cohort_bucket_is_a_fixed_sha256_bucket() -> None:
    # Fixed values: any process, replica or restart (whatever its hash seed) agrees.
    assert cohort_bucket("acme", "user_0001") == 8550
    assert cohort_bucket("acme", "user_0005") == 9449
    assert cohort_bucket("other", "user_0001") != cohort_bucket("acme", "user_0001")


@pytest.mark.parametrize(
    ("bucket", "deployment"),
    [(0, "blue"), (8999, "blue"), (9000, "green"), (COHORT_BUCKETS - 1, "green")],
)
def test_buckets_are_cumulative_over_deployments_sorted_by_name(
    bucket: int, deployment: str
) -> None:
    assert pick_deployment({"green": 10, "blue": 90}, bucket) == deployment


def test_a_deployment_at_zero_percent_gets_no_bucket() -> None:
    split = {"a-canary": 0, "stable": 100}

    assert {pick_deployment(split, b) for b in range(COHORT_BUCKETS)} == {"stable"}


def test_a_split_short_of_100_percent_is_a_bug() -> None:
    with pytest.raises(ValueError, match="100 percent"):
        pick_deployment({"stable": 50}, 9999)


async def test_users_stick_to_their_cohorts_deployment() -> None:
    router = _router(blue_green_table())

    blue = await router.route(_request(user_id="user_0001"))  # bucket 8550
    green = await router.route(_request(user_id="user_0005"))  # bucket 9449
    green_again = await router.route(_request(user_id="user_0005"))

    assert (blue.deployment, blue.deployment_version) == ("blue", "v2.3-stable")
    assert blue.temperature is None
    assert green == green_again
    assert (green.deployment, green.deployment_version) == ("green", "v2.4-canary")
    assert green.deployment_instructions == "Be concise and empathetic."
    assert green.temperature == 0.6


async def test_a_new_split_moves_the_cohorts() -> None:
    router = _router(blue_green_table())

    split = await router.set_traffic_split([TrafficAllocation("green", 100)])
    decision = await router.route(_request(user_id="user_0001"))

    assert split == [TrafficAllocation("blue", 0), TrafficAllocation("green", 100)]
    assert decision.deployment == "green"


@pytest.mark.parametrize(
    ("allocations", "violations"),
    [
        (
            [TrafficAllocation("blue", 60), TrafficAllocation("green", 30)],
            [FieldViolation("allocations", "percentages add up to 90, not 100")],
        ),
        (
            [],
            [FieldViolation("allocations", "percentages add up to 0, not 100")],
        ),
        (
            [TrafficAllocation("blue", 90), TrafficAllocation("purple", 10)],
            [
                FieldViolation(
                    "allocations[1].deployment", "unknown deployment 'purple'"
                )
            ],
        ),
        (
            [TrafficAllocation("blue", 50), TrafficAllocation("blue", 50)],
            [FieldViolation("allocations[1].deployment", "listed more than once")],
        ),
        (
            [TrafficAllocation("blue", 200), TrafficAllocation("green", 0)],
            [
                FieldViolation("allocations[0].percent", "must be between 0 and 100"),
                FieldViolation("allocations", "percentages add up to 200, not 100"),
            ],
        ),
    ],
)
async def test_an_invalid_split_is_refused_and_not_stored(
    allocations: list[TrafficAllocation], violations: list[FieldViolation]
) -> None:
    router = _router(blue_green_table())

    with pytest.raises(InvalidArgumentError) as error:
        await router.set_traffic_split(allocations)

    assert error.value.violations == violations
    statuses = await router.deployment_statuses()
    assert [(s.name, s.traffic_percent) for s in statuses] == [
        ("blue", 90),
        ("green", 10),
    ]


async def test_a_stored_split_this_table_cannot_use_is_unhealthy() -> None:
    control = InMemoryControlStore()
    router = _router(blue_green_table(), control)
    assert await router.routing_table_healthy()

    # From a replica running another table.
    await control.set_traffic_split({"stable": 100}, clear_rollbacks=frozenset())

    assert not await router.routing_table_healthy()
    decision = await router.route(_request(user_id="user_0001"))
    assert decision.deployment == "blue"


async def test_outcomes_feed_the_deployment_status() -> None:
    router = _router(blue_green_table())
    for latency_ms, error in [(100.0, False), (400.0, True), (200.0, False)]:
        await router.record_outcome("green", Outcome(latency_ms, error))
    await router.record_outcome("green", Outcome(300.0, False))

    blue, green = await router.deployment_statuses()

    assert (blue.name, blue.requests, blue.window.error_rate) == ("blue", 0, 0.0)
    assert (blue.window.p50_latency_ms, blue.window.p95_latency_ms) == (0.0, 0.0)
    assert (green.name, green.version, green.traffic_percent) == (
        "green",
        "v2.4-canary",
        10,
    )
    assert (green.requests, green.errors, green.window.error_rate) == (4, 1, 0.25)
    assert (green.window.p50_latency_ms, green.window.p95_latency_ms) == (200.0, 400.0)
    assert green.baseline == "blue"
    assert green.rollback is None


async def test_an_outcome_for_an_unknown_deployment_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as error:
        await _router().record_outcome("purple", Outcome(10.0, False))

    assert _fields(error.value) == {"deployment"}


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]

    assert percentile(samples, 0.50) == 50.0
    assert percentile(samples, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) == 0.0


async def test_stats_count_by_tier_and_compare_with_premium() -> None:
    router = _router()
    await router.route(_request(priority=Priority.REALTIME, input_tokens=1000))
    await router.route(_request(priority=Priority.LOW, input_tokens=1000))
    await router.route(_request(priority=Priority.LOW, input_tokens=1000))

    stats = await router.routing_stats()

    assert stats.by_tier == (("premium", 1), ("standard", 0), ("economy", 2))
    assert dict(stats.by_complexity)[Complexity.UNSPECIFIED] == 3
    # premium: 2000 + 4000; economy: 100 + 200 each (chat budget of 500 output).
    assert stats.routed_cost_micros == 6000 + 2 * 300
    assert stats.premium_cost_micros == 3 * 6000
    assert stats.degradation_level is DegradationLevel.FULL_SERVICE


async def test_a_refused_route_is_not_counted() -> None:
    router = _router()
    with pytest.raises(InvalidArgumentError):
        await router.route(_request(requested_model="gpt-9"))

    stats = await router.routing_stats()

    assert sum(count for _, count in stats.by_tier) == 0
