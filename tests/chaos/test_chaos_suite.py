"""Kill -9 each part of a running suite under steady load, and watch it keep its word.

One suite runs as ``tollgate dev`` starts it (services/devsuite.py), with ratelimit
and the exact cache tier on a private redis-server. A bounded load of unique
CreateResponse calls, each with a deadline, runs throughout each scenario: warm
up, kill -9 one part, hold the outage, respawn it (same command line, environment
and port), recover. DESIGN.md section 2's policies are the assertions:

| killed    | while it is down                                 | after it is back      |
|-----------|--------------------------------------------------|-----------------------|
| ratelimit | answered through the local limiter; breaker OPEN | breaker CLOSED        |
| cache     | answered, cache_status SKIPPED; breaker OPEN     | MISS again; CLOSED    |
| router    | answered from the local route table; OPEN        | CLOSED                |
| costs     | answered; records wait in the outbox; OPEN       | outbox replayed       |
| gateway   | callers see UNAVAILABLE                          | answered again        |
| redis     | ratelimit decides locally (degraded)             | shared store again    |

And in every scenario: no request outlives its deadline, every failure is
UNAVAILABLE, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED (never UNKNOWN or INTERNAL),
and the ledger books every answered request: its request count and tokens grow by
exactly what the answers say (a request whose answer was lost with a killed
gateway may be booked too, and is counted as such).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis
import yaml
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.devsuite import DEV_TENANT, Suite
from tests.backends import RedisServer
from tests.chaos.chaos_tools import (
    PROPER_FAILURES,
    LedgerTotals,
    Load,
    Outcome,
    answered,
    breaker_state,
    gateway_status,
    kill9,
    ledger_totals,
    respawn,
)
from tests.e2e.conftest import start_test_suite

pytestmark = pytest.mark.e2e

WARM_UP_SECONDS = 1.5
OUTAGE_SECONDS = 3.0
RECOVERY_SECONDS = 2.0
# Client-side slack over a deadline: the call ends on the deadline's timer, and the
# load generator shares its event loop with the probes.
DEADLINE_SLACK_SECONDS = 0.3
BREAKER_ENV = {
    "TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__FAILURE_THRESHOLD": "3",
    "TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__RECOVERY_TIMEOUT_SECONDS": "1",
    "TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__SUCCESS_THRESHOLD": "1",
    "TOLLGATE_GATEWAY_OUTBOX_REPLAY_INTERVAL_SECONDS": "0.5",
}
OPEN = gateway_pb.BREAKER_STATE_OPEN
CLOSED = gateway_pb.BREAKER_STATE_CLOSED


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Suite]:
    state = tmp_path_factory.mktemp("chaos")
    cache_redis = redis_server.url.rsplit("/", 1)[0] + "/1"
    for url in (redis_server.url, cache_redis):
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    limits = state / "limits.yaml"
    # Generous limits: the shared limiter must not be what refuses the load.
    limits.write_text(
        yaml.safe_dump({"tiers": {"paid": {"rpm": 10_000}, "free": {"rpm": 10_000}}}),
        encoding="utf-8",
    )
    running = start_test_suite(
        state / "suite",
        {
            **BREAKER_ENV,
            "TOLLGATE_RATELIMIT_REDIS_URL": redis_server.url,
            "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
            "TOLLGATE_CACHE_EXACT_BACKEND": "redis",
            "TOLLGATE_CACHE_REDIS_URL": cache_redis,
            "TOLLGATE_CACHE_STATE_DIR": str(state / "cache"),
            "TOLLGATE_GATEWAY_BATCH_STORE_PATH": str(state / "batches.sqlite3"),
        },
    )
    yield running
    running.stop()


@dataclass
class Scenario:
    """What one kill -9 and respawn under load showed."""

    load: Load
    # When the kill was sent, and when the victim was dead.
    kill_sent_at: float
    killed_at: float
    # When the respawn began, and when the victim answered its health check again.
    revive_sent_at: float
    back_at: float
    # The killed service's gateway breaker, polled every 0.1 s while it was down.
    breaker_while_down: list[int]
    breaker_at_end: int | None
    outbox_depths: list[int]
    probes_while_down: list[Any]
    probes_at_end: Any
    before: LedgerTotals
    after: LedgerTotals

    @property
    def outage(self) -> list[Outcome]:
        """Requests sent after the victim died and before its respawn began."""
        return self.load.between(self.killed_at, self.revive_sent_at)

    @property
    def last_second(self) -> list[Outcome]:
        """Requests of the last second of the recovery."""
        end = max(o.sent_at for o in self.load.outcomes)
        return self.load.between(end - 1.0, end + 1.0)


Probe = Callable[[], Awaitable[Any]]


async def _run(
    suite: Suite,
    *,
    kill: Callable[[], object],
    revive: Callable[[object], None],
    breaker: str | None,
    label: str,
    probe: Probe | None = None,
    before: LedgerTotals | None = None,
) -> Scenario:
    if before is None:
        before = await ledger_totals(suite, DEV_TENANT)
    down_states: list[int] = []
    depths: list[int] = []
    probes: list[Any] = []
    async with Load(suite.gateway_address, suite.api_key, label=label) as load:
        await asyncio.sleep(WARM_UP_SECONDS)
        kill_sent_at = time.monotonic()
        corpse = await asyncio.to_thread(kill)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < OUTAGE_SECONDS:
            status = await gateway_status(suite)
            if status is not None:
                depths.append(status.outbox_depth)
                if breaker is not None:
                    down_states.append(breaker_state(status, breaker))
            if probe is not None:
                probes.append(await probe())
            await asyncio.sleep(0.1)
        revive_sent_at = time.monotonic()
        await asyncio.to_thread(revive, corpse)
        back_at = time.monotonic()
        # Recover: hold the load until the breaker closed, then a little longer.
        state_at_end: int | None = None
        while time.monotonic() - back_at < 15:
            status = await gateway_status(suite)
            if status is not None:
                depths.append(status.outbox_depth)
                if breaker is None or breaker_state(status, breaker) == CLOSED:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(RECOVERY_SECONDS)
        final = await gateway_status(suite)
        if final is not None and breaker is not None:
            state_at_end = breaker_state(final, breaker)
        probe_at_end = await probe() if probe is not None else None
    after = await _settled_ledger(suite, before, load)
    return Scenario(
        load,
        kill_sent_at,
        killed_at,
        revive_sent_at,
        back_at,
        down_states,
        state_at_end,
        depths,
        probes,
        probe_at_end,
        before,
        after,
    )


async def _settled_ledger(
    suite: Suite, before: LedgerTotals, load: Load
) -> LedgerTotals:
    """The ledger once the outbox is empty and every answer can have been booked."""
    answers = len(answered(load.outcomes))
    deadline = time.monotonic() + 20
    while True:
        status = await gateway_status(suite)
        totals = await ledger_totals(suite, DEV_TENANT)
        settled = status is not None and status.outbox_depth == 0
        if settled and totals.requests - before.requests >= answers:
            return totals
        if time.monotonic() > deadline:
            return totals
        await asyncio.sleep(0.2)


def _assert_every_request_kept_the_rules(scenario: Scenario) -> None:
    outcomes = scenario.load.outcomes
    assert len(outcomes) > 100, "the load ran"
    # Time the load generator itself lost (its event loop starved of CPU while
    # services restart on two cores) is not the suite's lateness.
    lag = scenario.load.max_loop_lag
    assert lag < 1.0, f"the load generator stalled {lag:.2f}s: the run says nothing"
    slack = DEADLINE_SLACK_SECONDS + lag
    late = [o for o in outcomes if o.elapsed > o.deadline + slack]
    assert not late, (
        f"{len(late)} requests outlived their deadline: {late[:3]}; "
        f"killed at {scenario.killed_at}, back at {scenario.back_at}"
    )
    improper = {o.code for o in outcomes if o.code is not grpc.StatusCode.OK} - (
        PROPER_FAILURES
    )
    assert not improper, f"improper statuses: {improper}"


def _assert_the_ledger_booked_every_answer(scenario: Scenario) -> None:
    replies = answered(scenario.load.outcomes)
    for reply in replies:
        assert reply.degradation_level < common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, (
            "a static answer is not booked; none was expected here"
        )
    # A request cut off by a deadline or a dying gateway may have been booked
    # before its answer was lost.
    unknown_fate = sum(
        o.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        for o in scenario.load.outcomes
    )
    booked = scenario.after.requests - scenario.before.requests
    assert len(replies) <= booked <= len(replies) + unknown_fate, (
        f"{len(replies)} answered, {booked} booked, {unknown_fate} of unknown fate"
    )
    tokens = (
        sum(r.usage.input_tokens for r in replies),
        sum(r.usage.cached_input_tokens for r in replies),
        sum(r.usage.output_tokens for r in replies),
    )
    ledger_tokens = (
        scenario.after.input_tokens - scenario.before.input_tokens,
        scenario.after.cached_input_tokens - scenario.before.cached_input_tokens,
        scenario.after.output_tokens - scenario.before.output_tokens,
    )
    if booked == len(replies):
        assert ledger_tokens == tokens
    else:
        assert all(lt >= t for lt, t in zip(ledger_tokens, tokens, strict=True)), (
            ledger_tokens,
            tokens,
        )


def _assert_the_breaker_opened_and_closed(scenario: Scenario) -> None:
    assert OPEN in scenario.breaker_while_down, scenario.breaker_while_down
    assert scenario.breaker_at_end == CLOSED


def _assert_answered_throughout(
    scenario: Scenario,
) -> list[gateway_pb.CreateResponseResponse]:
    outage = scenario.outage
    assert len(outage) > 40, "the load kept running through the outage"
    refused = [o.code for o in outage if o.code is not grpc.StatusCode.OK]
    assert not refused, f"refused while a dependency was down: {refused[:5]}"
    assert all(o.code is grpc.StatusCode.OK for o in scenario.last_second)
    return answered(outage)


def _kill(suite: Suite, name: str) -> Callable[[], object]:
    return lambda: kill9(suite, name)


def _revive(suite: Suite) -> Callable[[object], None]:
    return lambda corpse: respawn(suite, corpse)  # type: ignore[arg-type]


async def test_ratelimit_killed_answers_through_the_local_limiter(suite: Suite) -> None:
    scenario = await _run(
        suite,
        kill=_kill(suite, "ratelimit"),
        revive=_revive(suite),
        breaker="ratelimit",
        label="ratelimit",
    )
    _assert_every_request_kept_the_rules(scenario)
    _assert_answered_throughout(scenario)
    _assert_the_breaker_opened_and_closed(scenario)
    _assert_the_ledger_booked_every_answer(scenario)


async def test_cache_killed_answers_with_the_cache_skipped(suite: Suite) -> None:
    scenario = await _run(
        suite,
        kill=_kill(suite, "cache"),
        revive=_revive(suite),
        breaker="cache",
        label="cache",
    )
    _assert_every_request_kept_the_rules(scenario)
    replies = _assert_answered_throughout(scenario)
    assert {r.cache_status for r in replies} == {common_pb.CACHE_STATUS_SKIPPED}
    assert {r.cache_status for r in answered(scenario.last_second)} == {
        common_pb.CACHE_STATUS_MISS
    }
    _assert_the_breaker_opened_and_closed(scenario)
    _assert_the_ledger_booked_every_answer(scenario)


async def test_router_killed_answers_from_the_local_route_table(suite: Suite) -> None:
    scenario = await _run(
        suite,
        kill=_kill(suite, "router"),
        revive=_revive(suite),
        breaker="router",
        label="router",
    )
    _assert_every_request_kept_the_rules(scenario)
    replies = _assert_answered_throughout(scenario)
    assert all(r.model and r.output_text for r in replies)
    _assert_the_breaker_opened_and_closed(scenario)
    _assert_the_ledger_booked_every_answer(scenario)


_COSTS_SCENARIOS: dict[int, Scenario] = {}


async def _costs_outage(suite: Suite) -> Scenario:
    """The costs scenario, run once and shared by the tests that read it."""
    if id(suite) not in _COSTS_SCENARIOS:
        _COSTS_SCENARIOS[id(suite)] = await _run(
            suite,
            kill=_kill(suite, "costs"),
            revive=_revive(suite),
            breaker="costs",
            label="costs",
        )
    return _COSTS_SCENARIOS[id(suite)]


async def test_costs_killed_records_wait_in_the_outbox_and_are_all_booked(
    suite: Suite,
) -> None:
    scenario = await _costs_outage(suite)
    _assert_every_request_kept_the_rules(scenario)
    _assert_answered_throughout(scenario)
    assert max(scenario.outbox_depths) > 0, "answers went to the outbox"
    _assert_the_breaker_opened_and_closed(scenario)
    _assert_the_ledger_booked_every_answer(scenario)


async def test_costs_killed_answers_state_the_cost_the_ledger_books(
    suite: Suite,
) -> None:
    scenario = await _costs_outage(suite)
    replies = answered(scenario.load.outcomes)
    booked = scenario.after.requests - scenario.before.requests
    assert booked == len(replies)
    stated = sum(r.cost_micros for r in replies)
    assert stated == scenario.after.cost_micros - scenario.before.cost_micros


async def test_gateway_killed_callers_see_unavailable_and_no_record_is_lost(
    suite: Suite,
) -> None:
    # The ledger goes down first, so that answers wait in the gateway's outbox
    # when the gateway itself is killed: they must survive it.
    before = await ledger_totals(suite, DEV_TENANT)
    costs = await asyncio.to_thread(kill9, suite, "costs")
    outbox_after_restart: list[int] = []

    def revive(gateway: object) -> None:
        respawn(suite, gateway)  # type: ignore[arg-type]
        outbox_after_restart.append(_outbox_depth(suite))
        respawn(suite, costs)

    try:
        scenario = await _run(
            suite,
            kill=_kill(suite, "gateway"),
            revive=revive,
            breaker=None,
            label="gateway",
            before=before,
        )
    finally:
        if suite.processes["costs"].process.poll() is not None:
            await asyncio.to_thread(respawn, suite, costs)
    _assert_every_request_kept_the_rules(scenario)
    answered_before_kill = [
        o
        for o in scenario.load.outcomes
        if o.sent_at + o.elapsed < scenario.kill_sent_at
    ]
    assert len(answered_before_kill) > 5
    refused = [o for o in answered_before_kill if o.code is not grpc.StatusCode.OK]
    assert not refused, refused[:5]
    assert outbox_after_restart[0] > 0, "the outbox survived the kill"
    # Requests sent while it was down were refused, UNAVAILABLE.
    outage = [o for o in scenario.outage if o.sent_at > scenario.killed_at + 0.05]
    assert len(outage) > 40
    assert {o.code for o in outage} == {grpc.StatusCode.UNAVAILABLE}
    assert all(o.code is grpc.StatusCode.OK for o in scenario.last_second)
    _assert_the_ledger_booked_every_answer(scenario)


def _outbox_depth(suite: Suite) -> int:
    with grpc.insecure_channel(suite.gateway_address) as channel:
        status = gateway_pb2_grpc.GatewayServiceStub(channel).GetStatus(
            gateway_pb.GetStatusRequest(),
            metadata=(("authorization", f"Bearer {suite.api_key}"),),
            timeout=5,
        )
    return int(status.outbox_depth)


async def test_redis_killed_ratelimit_decides_locally_and_recovers(
    suite: Suite, redis_server: RedisServer
) -> None:
    address = f"127.0.0.1:{suite.ports['ratelimit']}"

    async def degraded() -> bool:
        async with grpc.aio.insecure_channel(address) as channel:
            status = await ratelimit_pb2_grpc.RateLimitServiceStub(channel).GetStatus(
                ratelimit_pb.GetStatusRequest(model="gpt-4.1-mini"), timeout=2
            )
        return bool(status.degraded)

    assert not await degraded()
    scenario = await _run(
        suite,
        kill=redis_server.stop,
        revive=lambda _: redis_server.start(),
        breaker="ratelimit",
        label="redis",
        probe=degraded,
    )
    _assert_every_request_kept_the_rules(scenario)
    _assert_answered_throughout(scenario)
    # Ratelimit itself stayed up and answered: its breaker never opened.
    assert OPEN not in scenario.breaker_while_down
    assert True in scenario.probes_while_down, "ratelimit said it decided locally"
    assert scenario.probes_at_end is False, "back on the shared store"
    _assert_the_ledger_booked_every_answer(scenario)
