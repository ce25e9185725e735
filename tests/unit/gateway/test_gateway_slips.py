"""Bookkeeping slips of the request flow: budget releases and ladder failover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.core.breaker import BreakerState
from services.core.clock import FakeClock
from services.core.errors import (
    DeadlineExceededError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.domain import (
    BudgetVerdict,
    CacheStatus,
    DegradationLevel,
    Principal,
    RequestType,
    ResponseReply,
    StreamEnd,
    StreamEvent,
    StreamStart,
    UpstreamAnswer,
    UpstreamCall,
)
from services.gateway.fallbacks import STATIC_ANSWERS
from services.gateway.orchestrator import Orchestrator
from services.gateway.ports import DependencyUnavailableError, UpstreamThrottledError
from tests.chat_requests import chat_request
from tests.unit.gateway.gateway_fakes import (
    TEST_BREAKER,
    TEST_HOLD_SECONDS,
    FakeCache,
    FakeLedger,
    FakeRateLimiter,
    FakeRouter,
    FakeTickets,
    FakeUpstream,
    SentCall,
    fake_orchestrator,
    sync_route,
)

PRINCIPAL = Principal("acme", "chat", "key-user", "paid")
REQUEST = chat_request("What is a token bucket?", "Be brief.", model="auto")
HOLD_SECONDS = TEST_HOLD_SECONDS
BREAKER = TEST_BREAKER
MINI, NANO, OTHER = "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o-mini"
DOWN = DependencyUnavailableError("upstream", "503 after every retry")


class SlowUpstream(FakeUpstream):
    """Fails ``slow`` models only after spending ``seconds`` of the fake clock."""

    def __init__(self, clock: FakeClock, slow: dict[str, float]) -> None:
        super().__init__()
        self.clock = clock
        self.slow = slow

    async def create(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> UpstreamAnswer:
        spent = self.slow.get(call.model)
        if spent is not None:
            self.calls.append(SentCall(call, timeout_seconds))
            self.clock.advance(spent)
            raise DOWN
        return await super().create(call, timeout_seconds)


@dataclass
class Gateway:
    """An orchestrator and the fakes behind it."""

    orchestrator: Orchestrator
    clock: FakeClock
    limiter: FakeRateLimiter
    cache: FakeCache
    router: FakeRouter
    ledger: FakeLedger
    upstream: FakeUpstream

    async def ask(
        self, request_id: str = "req-1", time_remaining: float | None = None
    ) -> ResponseReply:
        try:
            return await self.orchestrator.create_response(
                PRINCIPAL, REQUEST, request_id, time_remaining
            )
        finally:
            await self.orchestrator.drain_background()

    async def stream(self, request_id: str = "req-1") -> list[StreamEvent]:
        try:
            return [
                event
                async for event in self.orchestrator.stream_response(
                    PRINCIPAL, REQUEST, request_id, None
                )
            ]
        finally:
            await self.orchestrator.drain_background()

    def breaker_state(self, model: str) -> BreakerState:
        states = {s.name: s.state for s in self.orchestrator.breakers()}
        return states[f"upstream:{model}"]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def _gateway(
    outbox: SqliteOutbox,
    *,
    upstream: FakeUpstream | None = None,
    clock: FakeClock | None = None,
    max_concurrency: int = 4,
    max_queue_depth: int = 8,
) -> Gateway:
    clock = clock or FakeClock()
    upstream = upstream or FakeUpstream()
    limiter, cache, router, ledger = (
        FakeRateLimiter(),
        FakeCache(),
        FakeRouter(),
        FakeLedger(),
    )
    orchestrator = fake_orchestrator(
        outbox,
        clock=clock,
        limiter=limiter,
        cache=cache,
        router=router,
        ledger=ledger,
        upstream=upstream,
        tickets=FakeTickets(),
        max_concurrency=max_concurrency,
        max_queue_depth=max_queue_depth,
    )
    return Gateway(orchestrator, clock, limiter, cache, router, ledger, upstream)


@pytest.fixture
def gw(outbox: SqliteOutbox) -> Gateway:
    return _gateway(outbox)


@pytest.fixture
def alone(gw: Gateway) -> Gateway:
    """A gateway whose route has no fallback model: nothing to fail over to."""
    gw.router.answer = sync_route(fallback_models=())
    return gw


# -- a budget reservation is released on every path that books nothing


async def test_an_answered_request_settles_its_reservation_by_booking(
    gw: Gateway,
) -> None:
    await gw.ask("req-1")

    assert gw.ledger.booked["req-1"].budget_reservation_id == "budget-req-1"
    assert gw.ledger.released == []


async def test_the_static_fallback_releases_the_reservation(alone: Gateway) -> None:
    alone.upstream.failures[MINI] = DOWN
    for n in range(BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await alone.ask(f"req-{n}")
    alone.ledger.released.clear()

    reply = await alone.ask("req-static")

    assert reply.output_text == STATIC_ANSWERS[RequestType.CHAT]
    assert "req-static" not in alone.ledger.booked
    assert alone.ledger.released == ["budget-req-static"]


async def test_an_upstream_failure_releases_the_reservation(alone: Gateway) -> None:
    alone.upstream.failures[MINI] = DOWN

    with pytest.raises(UnavailableError):
        await alone.ask("req-1")

    assert alone.ledger.booked == {}
    assert alone.ledger.released == ["budget-req-1"]


async def test_an_upstream_throttle_releases_the_reservation(alone: Gateway) -> None:
    alone.upstream.failures[MINI] = UpstreamThrottledError("upstream", "429", 3.0)

    with pytest.raises(ResourceExhaustedError):
        await alone.ask("req-1")

    assert alone.ledger.released == ["budget-req-1"]


async def test_a_full_queue_releases_the_reservation(outbox: SqliteOutbox) -> None:
    gw = _gateway(outbox, max_concurrency=1, max_queue_depth=0)
    gw.upstream.gate = asyncio.Event()
    busy = asyncio.create_task(gw.ask("req-busy"))
    for _ in range(5):
        await asyncio.sleep(0)

    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask("req-refused")
    gw.upstream.gate.set()
    await busy

    assert raised.value.reason == "QUEUE_FULL"
    assert gw.ledger.released == ["budget-req-refused"]


async def test_a_spent_deadline_releases_the_reservation(gw: Gateway) -> None:
    with pytest.raises(DeadlineExceededError):
        await gw.ask("req-1", time_remaining=0.0)

    assert gw.upstream.calls == []
    assert gw.ledger.released == ["budget-req-1"]


async def test_a_stream_that_never_opened_releases_the_reservation(
    alone: Gateway,
) -> None:
    alone.upstream.failures[MINI] = DOWN

    with pytest.raises(UnavailableError):
        await alone.stream("req-1")

    assert alone.ledger.booked == {}
    assert alone.ledger.released == ["budget-req-1"]


async def test_a_static_stream_releases_the_reservation(alone: Gateway) -> None:
    alone.upstream.failures[MINI] = DOWN
    for n in range(BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await alone.ask(f"req-{n}")
    alone.ledger.released.clear()

    events = await alone.stream("req-static")

    assert isinstance(events[-1], StreamEnd)
    assert alone.ledger.released == ["budget-req-static"]


async def test_a_ledger_that_cannot_release_leaves_the_request_unharmed(
    alone: Gateway,
) -> None:
    alone.upstream.failures[MINI] = DOWN
    alone.ledger.unavailable = True  # the budget check is skipped: nothing held

    with pytest.raises(UnavailableError):
        await alone.ask("req-1")

    assert alone.ledger.released == []


# -- failover along the ladder


async def test_an_unavailable_model_fails_over_to_the_next_within_the_deadline(
    gw: Gateway,
) -> None:
    gw.upstream.failures[MINI] = DOWN

    reply = await gw.ask("req-1", time_remaining=10.0)

    assert reply.model == NANO
    assert reply.output_text == f"answer from {NANO}"
    assert reply.degradation_level is DegradationLevel.REDUCED_QUALITY
    assert gw.upstream.models == [MINI, NANO]
    # The failure counts against the failing model; the fallback's success on its own.
    assert gw.router.outcomes == [("stable", MINI, True), ("stable", NANO, False)]
    assert gw.breaker_state(MINI) is BreakerState.CLOSED  # one failure of two
    # One failure is not an outage: no level is held for every replica.
    assert gw.router.holds == []
    # Booked once, under the model that answered, settling the reservation.
    assert gw.ledger.booked["req-1"].model == NANO
    assert gw.ledger.booked["req-1"].budget_reservation_id == "budget-req-1"
    assert gw.ledger.released == []
    # A fallback's answer is not cached under the routed model's key.
    assert gw.cache.stored == []


async def test_failovers_still_open_the_failing_models_breaker(gw: Gateway) -> None:
    gw.upstream.failures[MINI] = DOWN
    for n in range(BREAKER.failure_threshold):
        assert (await gw.ask(f"req-{n}")).model == NANO
    assert gw.breaker_state(MINI) is BreakerState.OPEN

    reply = await gw.ask("req-open")

    # The open breaker skips the failing model without a call, and holds the level.
    assert reply.model == NANO
    assert gw.upstream.models == [MINI, NANO, MINI, NANO, NANO]
    assert gw.router.holds == [(DegradationLevel.REDUCED_QUALITY, HOLD_SECONDS)]


async def test_no_failover_once_the_deadline_is_spent(outbox: SqliteOutbox) -> None:
    clock = FakeClock()
    gw = _gateway(outbox, clock=clock, upstream=SlowUpstream(clock, {MINI: 5.0}))

    with pytest.raises(UnavailableError):
        await gw.ask("req-1", time_remaining=5.0)

    assert gw.upstream.models == [MINI]
    assert gw.ledger.released == ["budget-req-1"]


async def test_the_fallback_gets_only_what_is_left_of_the_deadline(
    outbox: SqliteOutbox,
) -> None:
    clock = FakeClock()
    gw = _gateway(outbox, clock=clock, upstream=SlowUpstream(clock, {MINI: 3.0}))

    reply = await gw.ask("req-1", time_remaining=5.0)

    assert reply.model == NANO
    assert gw.upstream.calls[-1].timeout_seconds == pytest.approx(2.0)


async def test_a_429_is_answered_by_the_next_cheaper_model(gw: Gateway) -> None:
    gw.upstream.failures[MINI] = UpstreamThrottledError("upstream", "429", 7.0)

    reply = await gw.ask("req-1")

    assert reply.model == NANO
    assert gw.upstream.models == [MINI, NANO]
    # The throttle still feeds the limiter's backoff, and is no outage.
    assert gw.limiter.reports[0] == (MINI, True, 7.0)
    assert gw.breaker_state(MINI) is BreakerState.CLOSED
    assert gw.router.holds == []


async def test_a_429_without_a_fallback_is_resource_exhausted(alone: Gateway) -> None:
    alone.upstream.failures[MINI] = UpstreamThrottledError("upstream", "429", 7.0)

    with pytest.raises(ResourceExhaustedError) as raised:
        await alone.ask("req-1")

    assert raised.value.reason == "UPSTREAM_RATE_LIMITED"
    assert alone.upstream.models == [MINI]


async def test_every_model_failing_raises_the_last_error(gw: Gateway) -> None:
    gw.upstream.failures[MINI] = UpstreamThrottledError("upstream", "429", 7.0)
    gw.upstream.failures[NANO] = DOWN

    with pytest.raises(UnavailableError) as raised:
        await gw.ask("req-1")

    assert raised.value.reason == "UPSTREAM_UNAVAILABLE"
    assert gw.upstream.models == [MINI, NANO]
    # Both were tried, neither was open: no static level is held.
    assert gw.router.holds == []
    assert gw.ledger.released == ["budget-req-1"]


async def test_a_budget_downgrade_replaces_the_ladder_for_failover(
    gw: Gateway,
) -> None:
    gw.ledger.verdict = BudgetVerdict(
        allowed=True, reservation_id="budget-1", downgrade_model=NANO
    )
    gw.upstream.failures[NANO] = DOWN

    with pytest.raises(UnavailableError):
        await gw.ask("req-1")

    # The routed model and its fallbacks are over budget: never asked.
    assert gw.upstream.models == [NANO]
    assert gw.ledger.released == ["budget-1"]


async def test_failover_skips_a_model_whose_breaker_is_open(gw: Gateway) -> None:
    gw.router.answer = sync_route(model=NANO, fallback_models=())
    gw.upstream.failures[NANO] = DOWN
    for n in range(BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-nano-{n}")
    assert gw.breaker_state(NANO) is BreakerState.OPEN
    del gw.upstream.failures[NANO]
    gw.router.answer = sync_route(fallback_models=(NANO, OTHER))
    gw.upstream.failures[MINI] = DOWN

    reply = await gw.ask("req-1")

    assert reply.model == OTHER
    assert gw.upstream.models[-2:] == [MINI, OTHER]
    # Passing over an open breaker is what holds a level.
    assert gw.router.holds == [(DegradationLevel.REDUCED_QUALITY, HOLD_SECONDS)]


async def test_a_refused_request_does_not_fail_over(outbox: SqliteOutbox) -> None:
    gw = _gateway(outbox, max_concurrency=1, max_queue_depth=0)
    gw.upstream.gate = asyncio.Event()
    busy = asyncio.create_task(gw.ask("req-busy"))
    for _ in range(5):
        await asyncio.sleep(0)

    with pytest.raises(ResourceExhaustedError):
        await gw.ask("req-refused")
    gw.upstream.gate.set()
    await busy

    # The full queue is the gateway's own refusal, not the model's: no other model.
    assert gw.upstream.models == [MINI]


# -- streams fail over only before their first event


async def test_a_stream_fails_over_before_its_first_delta(gw: Gateway) -> None:
    gw.upstream.failures[MINI] = DOWN

    events = await gw.stream("req-1")

    start = events[0]
    assert isinstance(start, StreamStart)
    assert start.model == NANO
    assert start.degradation_level is DegradationLevel.REDUCED_QUALITY
    assert isinstance(events[-1], StreamEnd)
    assert gw.upstream.models == [MINI, NANO]
    assert gw.ledger.booked["req-1"].model == NANO
    assert gw.router.outcomes == [("stable", MINI, True), ("stable", NANO, False)]


async def test_a_stream_broken_after_a_delta_does_not_fail_over(
    gw: Gateway,
) -> None:
    gw.upstream.stream_breaks_after = 1

    with pytest.raises(UnavailableError) as raised:
        await gw.stream("req-1")

    assert raised.value.reason == "UPSTREAM_STREAM_BROKEN"
    assert gw.upstream.models == [MINI]
    # What was delivered is booked, which settles the reservation.
    assert gw.ledger.booked["req-1"].budget_reservation_id == "budget-req-1"
    assert gw.ledger.released == []


async def test_a_streamed_429_is_answered_by_the_next_cheaper_model(
    gw: Gateway,
) -> None:
    gw.upstream.failures[MINI] = UpstreamThrottledError("upstream", "429", 2.0)

    events = await gw.stream("req-1")

    assert isinstance(events[0], StreamStart)
    assert events[0].model == NANO
    assert events[0].cache_status is CacheStatus.MISS
