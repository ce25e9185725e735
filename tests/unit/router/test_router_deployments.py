from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from services.core.clock import FakeClock
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import (
    COHORT_BUCKETS,
    Router,
    RouteRequest,
    TrafficAllocation,
    cohort_bucket,
    pick_deployment,
)
from services.router.enums import DegradationLevel, Lane, Priority, RequestType
from services.router.ports import Outcome
from services.router.table import RoutingTable, TableWatcher, load_routing_table
from tests.unit.router.router_tables import blue_green_table, default_table_data

GUARD_MIN = 50  # blue_green_table's canary guard: 50 outcomes, +5 points, 1.5 x p95


def _router(
    table: RoutingTable | None = None,
    clock: FakeClock | None = None,
    control: InMemoryControlStore | None = None,
) -> Router:
    return Router(
        table or blue_green_table(),
        control or InMemoryControlStore(),
        InMemoryMetricsStore(),
        load_complexity_model(),
        clock or FakeClock(),
    )


def _request(user_id: str = "u", **changes: Any) -> RouteRequest:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "user_id": user_id,
        "priority": Priority.STANDARD,
        "request_type": RequestType.CHAT,
        "requested_model": "",
        "input": "",
        "input_tokens": 100,
        "max_output_tokens": 0,
    }
    fields.update(changes)
    return RouteRequest(**fields)


async def _feed(
    router: Router, deployment: str, count: int, *, errors: int = 0, ms: float = 100
) -> list[bool]:
    """Record ``count`` outcomes, the first ``errors`` failed; return rolled_back."""
    rolled = []
    for index in range(count):
        result = await router.record_outcome(
            deployment, Outcome(latency_ms=ms, error=index < errors)
        )
        rolled.append(result.rollback is not None)
    return rolled


@pytest.mark.parametrize("canary_percent", [1, 10, 25, 50])
def test_the_split_over_100000_users_is_within_one_point(canary_percent: int) -> None:
    split = {"canary": canary_percent, "stable": 100 - canary_percent}

    counts = Counter(
        pick_deployment(split, cohort_bucket("acme", f"user-{n}"))
        for n in range(100_000)
    )

    assert abs(counts["canary"] / 1000 - canary_percent) <= 1.0


async def test_cohorts_are_the_same_in_a_new_router_instance() -> None:
    users = [f"user-{n}" for n in range(500)]
    router = _router()
    first = [(await router.route(_request(u))).deployment for u in users]

    # A restart: new stores, new router, same table.
    restarted = _router()
    second = [(await restarted.route(_request(u))).deployment for u in users]

    assert first == second
    assert set(first) == {"blue", "green"}


async def test_a_regressed_canary_is_rolled_back_to_zero_and_shown() -> None:
    clock = FakeClock()
    router = _router(clock=clock)
    await _feed(router, "blue", GUARD_MIN, errors=1)  # 2% errors

    with capture_logs() as logs:
        rolled = await _feed(router, "green", GUARD_MIN, errors=10)  # 20% errors

    assert rolled == [False] * (GUARD_MIN - 1) + [True]
    blue, green = await router.deployment_statuses()
    assert (blue.traffic_percent, green.traffic_percent) == (100, 0)
    assert green.rollback is not None
    assert green.rollback.at == clock.now()
    assert green.rollback.reason == (
        "error rate 20.0% over 50 calls exceeds baseline 2.0% + 5.0%"
    )
    assert [e for e in logs if e["event"] == "canary_rolled_back"] == [
        {
            "event": "canary_rolled_back",
            "log_level": "warning",
            "deployment": "green",
            "baseline": "blue",
            "reason": green.rollback.reason,
            "traffic_percent": 10,
        }
    ]
    # Every user of the canary is back on the baseline.
    decision = await router.route(_request("user_0005"))  # bucket 9449: was green
    assert decision.deployment == "blue"


async def test_a_slow_canary_is_rolled_back_on_p95_latency() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN, ms=200)

    rolled = await _feed(router, "green", GUARD_MIN, ms=301)

    assert rolled[-1]
    _, green = await router.deployment_statuses()
    assert green.rollback is not None
    assert green.rollback.reason.startswith("p95 latency 301 ms over 50 calls")


async def test_a_canary_within_its_guard_stays() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN, errors=2, ms=200)

    # 4 points more errors (5 allowed) and exactly 1.5 x the p95 (not over it).
    rolled = await _feed(router, "green", GUARD_MIN, errors=4, ms=300)

    assert not any(rolled)
    _, green = await router.deployment_statuses()
    assert (green.traffic_percent, green.rollback) == (10, None)


async def test_noise_below_the_minimum_sample_does_not_roll_back() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN)

    # Every call failed, but there are too few to judge.
    rolled = await _feed(router, "green", GUARD_MIN - 1, errors=GUARD_MIN - 1)

    assert not any(rolled)
    _, green = await router.deployment_statuses()
    assert green.traffic_percent == 10


async def test_the_guard_waits_for_the_baselines_sample_too() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN - 1)

    rolled = await _feed(router, "green", 2 * GUARD_MIN, errors=2 * GUARD_MIN)

    assert not any(rolled)


async def test_a_rollback_happens_once_across_replicas() -> None:
    control = InMemoryControlStore()
    first, second = _router(control=control), _router(control=control)
    for replica in (first, second):
        await _feed(replica, "blue", GUARD_MIN)
        await _feed(replica, "green", GUARD_MIN - 1, errors=GUARD_MIN - 1)

    assert (await first.record_outcome("green", Outcome(1.0, True))).rollback
    # The second replica's window breaks the guard too, but it is already done.
    assert not (await second.record_outcome("green", Outcome(1.0, True))).rollback


async def test_giving_a_rolled_back_canary_traffic_again_starts_it_over() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN)
    await _feed(router, "green", GUARD_MIN, errors=GUARD_MIN)

    await router.set_traffic_split(
        [TrafficAllocation("blue", 80), TrafficAllocation("green", 20)]
    )
    rolled = await _feed(router, "green", 1)

    _, green = await router.deployment_statuses()
    assert (green.traffic_percent, green.rollback, green.requests) == (20, None, 1)
    assert rolled == [False]


async def test_a_rolled_back_canary_is_not_judged_again() -> None:
    router = _router()
    await _feed(router, "blue", GUARD_MIN)
    await _feed(router, "green", GUARD_MIN, errors=GUARD_MIN)

    rolled = await _feed(router, "green", 5, errors=5)

    assert not any(rolled)


def _table(**deployment: Any) -> RoutingTable:
    data = default_table_data()
    data["deployments"] = {"stable": {"version": "v1", "traffic_percent": 100}}
    data["deployments"]["stable"].update(deployment)
    return RoutingTable.model_validate(data)


async def test_a_deployment_pins_its_model_and_caps_the_output_budget() -> None:
    router = _router(_table(model="gpt-4.1", max_output_tokens=120))

    routed = await router.route(_request())
    named = await router.route(_request(requested_model="gpt-4.1-nano"))

    assert (routed.model, routed.max_output_tokens) == ("gpt-4.1", 120)
    assert routed.reason.endswith("; deployment stable pins gpt-4.1")
    assert (named.model, named.max_output_tokens) == ("gpt-4.1-nano", 120)


async def test_the_worst_case_cost_counts_only_input_up_to_the_cap() -> None:
    router = _router(load_routing_table(None))

    decision = await router.route(
        _request(requested_model="gpt-4.1", input_tokens=5000)
    )

    assert (decision.input_token_cap, decision.truncated_input_tokens) == (2000, 3000)
    # 2000 x $2/1M + 500 x $8/1M.
    assert decision.worst_case_cost_micros == 4000 + 4000


@pytest.mark.parametrize(
    ("level", "lane", "cost"),
    [
        (DegradationLevel.FULL_SERVICE, Lane.SYNC, 6000),
        (DegradationLevel.REDUCED_QUALITY, Lane.SYNC, 400 + 400),
        (DegradationLevel.CACHED_ONLY, Lane.CACHE_ONLY, 0),
        (DegradationLevel.STATIC_FALLBACK, Lane.STATIC, 0),
        (DegradationLevel.MAINTENANCE, Lane.QUEUE, 6000),
    ],
)
async def test_every_level_sets_the_lane_and_what_the_call_may_cost(
    level: DegradationLevel, lane: Lane, cost: int
) -> None:
    router = _router(load_routing_table(None))
    await router.set_degradation_level(level, "test")

    decision = await router.route(
        _request(priority=Priority.REALTIME, input_tokens=1000)
    )

    assert (decision.lane, decision.worst_case_cost_micros) == (lane, cost)
    assert decision.degradation_level is level


async def test_raise_only_never_lowers_the_level() -> None:
    router = _router()
    await router.set_degradation_level(DegradationLevel.STATIC_FALLBACK, "operator")

    lower = await router.set_degradation_level(
        DegradationLevel.REDUCED_QUALITY, "gateway", raise_only=True
    )
    higher = await router.set_degradation_level(
        DegradationLevel.MAINTENANCE, "gateway", raise_only=True
    )

    assert (lower.applied, lower.level) == (False, DegradationLevel.STATIC_FALLBACK)
    assert (higher.applied, higher.level) == (True, DegradationLevel.MAINTENANCE)
    assert higher.previous_level is DegradationLevel.STATIC_FALLBACK


async def test_stats_count_complexities_of_auto_requests() -> None:
    router = _router(load_routing_table(None))
    for prompt in (
        "hi",
        "What is 7 times 8?",
        "Prove that there are infinitely many primes, then derive a bound on the "
        "gap between consecutive primes and analyze its complexity.",
    ):
        await router.route(_request(requested_model="auto", input=prompt))

    stats = await router.routing_stats()

    assert dict(stats.by_tier) == {"premium": 1, "standard": 0, "economy": 2}
    assert {c.value: n for c, n in stats.by_complexity if n} == {
        "trivial": 2,
        "complex": 1,
    }
    assert stats.premium_cost_micros > stats.routed_cost_micros


def _write(path: Path, data: dict[str, Any], mtime_ns: int) -> None:
    path.write_text(yaml.safe_dump(data))
    # Explicit mtimes: a rewrite within the filesystem's timestamp granularity
    # must still be seen.
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_a_changed_routing_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    data = default_table_data()
    _write(path, data, 1_000_000_000)
    router = _router(load_routing_table(path))
    watcher = TableWatcher(path, router.replace_table)
    assert not watcher.check()

    data["priorities"]["standard"] = {"tier": "economy"}
    _write(path, data, 2_000_000_000)
    with capture_logs() as logs:
        assert watcher.check()

    assert (await router.route(_request())).model == "gpt-4.1-nano"
    assert logs[0]["event"] == "routing_table_reloaded"


async def test_an_invalid_routing_file_keeps_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    _write(path, default_table_data(), 1_000_000_000)
    router = _router(load_routing_table(path))
    watcher = TableWatcher(path, router.replace_table)

    path.write_text("tiers: [unclosed")
    with capture_logs() as logs:
        assert not watcher.check()

    assert (await router.route(_request())).model == "gpt-4.1-mini"
    assert logs[0]["event"] == "routing_table_reload_failed"
    assert logs[0]["log_level"] == "error"
    assert "invalid routing table" in logs[0]["error"]
    # Unchanged since the failure: not retried until the file changes again.
    assert not watcher.check()


async def test_a_deleted_routing_file_keeps_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    _write(path, default_table_data(), 1_000_000_000)
    router = _router(load_routing_table(path))
    watcher = TableWatcher(path, router.replace_table)

    path.unlink()
    with capture_logs() as logs:
        assert not watcher.check()

    assert logs[0]["event"] == "routing_table_reload_failed"
    assert (await router.route(_request())).model == "gpt-4.1-mini"


def test_cohort_buckets_cover_the_range() -> None:
    buckets = {cohort_bucket("t", f"u{n}") for n in range(50_000)}

    assert min(buckets) == 0
    assert max(buckets) == COHORT_BUCKETS - 1
