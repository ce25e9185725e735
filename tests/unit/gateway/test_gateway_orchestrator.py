"""The gateway's request flow with in-memory ports, a real outbox and a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest

from services.core.breaker import BreakerState
from services.core.clock import FakeClock
from services.core.conversation import (
    FinishReason,
    Message,
    Prompt,
    Role,
    Tool,
    ToolCall,
)
from services.core.errors import (
    FieldViolation,
    InvalidArgumentError,
    PermissionDeniedError,
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from services.core.prompt_tokens import count_prompt
from services.core.tokens import count_tokens, truncate_tokens
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    Priority,
    RateDecision,
    RequestType,
    ResponseReply,
    ResponseRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamStart,
    ToolCallDelta,
    Usage,
    UsageRecord,
)
from services.gateway.fallbacks import STATIC_ANSWERS
from services.gateway.orchestrator import Orchestrator
from services.gateway.ports import (
    DependencyUnavailableError,
    UpstreamThrottledError,
)
from tests.chat_requests import chat_request
from tests.unit.gateway.gateway_fakes import (
    TEST_BREAKER,
    TEST_HOLD_SECONDS,
    TEST_TIMEOUT_SECONDS,
    UPSTREAM_USAGE,
    FakeCache,
    FakeLedger,
    FakeRateLimiter,
    FakeRouter,
    FakeTickets,
    FakeUpstream,
    fake_orchestrator,
    sync_route,
)

PRINCIPAL = Principal(
    tenant_id="acme", service="chat", user_id="key-user", user_tier="paid"
)
HOLD_SECONDS = TEST_HOLD_SECONDS
INPUT = "What is a token bucket?"
INSTRUCTIONS = "Be brief."
UPSTREAM_TIMEOUT = TEST_TIMEOUT_SECONDS
LOCAL_RPM = 2
# Two failures open a breaker for 30 s; one successful probe closes it again.
UPSTREAM_BREAKER = TEST_BREAKER
BASE_REQUEST = chat_request(INPUT, INSTRUCTIONS, model="auto")


def _request(
    *, input: str = INPUT, instructions: str = INSTRUCTIONS, **overrides: Any
) -> ResponseRequest:
    """The base request with other fields; ``input`` is its one user message."""
    return dataclasses.replace(
        BASE_REQUEST, prompt=Prompt.of_text(input, instructions), **overrides
    )


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
    outbox: SqliteOutbox
    tickets: FakeTickets

    async def ask(
        self,
        request_id: str = "req-1",
        request: ResponseRequest = BASE_REQUEST,
        time_remaining: float | None = None,
    ) -> ResponseReply:
        return await self.orchestrator.create_response(
            PRINCIPAL, request, request_id, time_remaining
        )

    def upstream_breaker_state(self, model: str) -> BreakerState:
        states = {s.name: s.state for s in self.orchestrator.breakers()}
        return states[f"upstream:{model}"]


def _gateway(
    outbox: SqliteOutbox,
    *,
    fail_open: bool = True,
    max_concurrency: int = 4,
    max_queue_depth: int = 8,
) -> Gateway:
    clock = FakeClock()
    limiter, cache, router = FakeRateLimiter(), FakeCache(), FakeRouter()
    ledger, upstream, tickets = FakeLedger(), FakeUpstream(), FakeTickets()
    orchestrator = fake_orchestrator(
        outbox,
        clock=clock,
        limiter=limiter,
        cache=cache,
        router=router,
        ledger=ledger,
        upstream=upstream,
        tickets=tickets,
        fail_open=fail_open,
        local_rpm=LOCAL_RPM,
        max_concurrency=max_concurrency,
        max_queue_depth=max_queue_depth,
    )
    return Gateway(
        orchestrator, clock, limiter, cache, router, ledger, upstream, outbox, tickets
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def gw(outbox: SqliteOutbox) -> Gateway:
    return _gateway(outbox)


# -- happy path and cache


async def test_answers_from_the_upstream_and_settles_every_account(
    gw: Gateway,
) -> None:
    reply = await gw.ask("req-1", time_remaining=5.0)
    await gw.orchestrator.drain_background()

    assert reply == ResponseReply(
        output_text="answer from gpt-4.1-mini",
        model="gpt-4.1-mini",
        deployment="stable",
        cache_status=CacheStatus.MISS,
        similarity=0.0,
        usage=UPSTREAM_USAGE,
        cost_micros=1234,
        request_id="req-1",
        degradation_level=DegradationLevel.FULL_SERVICE,
        input_truncated=False,
        input_tokens_dropped=0,
        output_truncated=False,
        latency_seconds=0.0,
        finish_reason=FinishReason.STOP,
    )
    [call] = gw.upstream.calls
    assert (call.model, call.instructions, call.input_text) == (
        "gpt-4.1-mini",
        INSTRUCTIONS,
        INPUT,
    )
    assert call.max_output_tokens == 500
    # The caller's deadline is shorter than the configured upstream timeout.
    assert call.timeout_seconds == 5.0
    [acquired] = gw.limiter.acquired
    assert acquired.model == "gpt-4.1-mini"
    assert acquired.tokens == count_prompt(BASE_REQUEST.prompt).total + 500
    assert gw.limiter.reconciled == [("res-req-1", UPSTREAM_USAGE.total_tokens)]
    [(key, stored)] = gw.cache.stored
    assert (key.tenant_id, key.model, key.input) == ("acme", "gpt-4.1-mini", INPUT)
    assert stored.output_text == "answer from gpt-4.1-mini"
    assert gw.ledger.booked["req-1"] == UsageRecord(
        request_id="req-1",
        principal=PRINCIPAL,
        model="gpt-4.1-mini",
        requested_model="",
        deployment="stable",
        usage=UPSTREAM_USAGE,
        cache_status=CacheStatus.MISS,
        occurred_at=gw.clock.now(),
        budget_reservation_id="budget-req-1",
    )
    assert await gw.outbox.depth() == 0
    assert gw.ledger.budget_checks == [
        ("gpt-4.1-mini", count_prompt(BASE_REQUEST.prompt).total, 500)
    ]
    assert gw.router.outcomes == [("stable", "gpt-4.1-mini", False)]


async def test_the_prompt_cache_key_groups_a_tenants_shared_instructions(
    gw: Gateway,
) -> None:
    await gw.ask("req-1", _request(input="first question"))
    await gw.ask("req-2", _request(input="second question"))
    await gw.ask("req-3", _request(input="first question", instructions="Other."))

    keys = [call.prompt_cache_key for call in gw.upstream.calls]
    assert keys[0] == keys[1] != keys[2]
    assert all(keys)


async def test_upstream_timeout_is_the_configured_one_without_a_caller_deadline(
    gw: Gateway,
) -> None:
    await gw.ask(time_remaining=None)

    assert gw.upstream.calls[0].timeout_seconds == UPSTREAM_TIMEOUT


async def test_deployment_instructions_and_temperature_apply(gw: Gateway) -> None:
    gw.router.answer = sync_route(
        deployment_instructions="Answer in French.", temperature=0.3
    )

    await gw.ask()

    [call] = gw.upstream.calls
    assert call.instructions == f"Answer in French.\n\n{INSTRUCTIONS}"
    assert call.temperature == 0.3


async def test_a_truncated_answer_is_not_cached(gw: Gateway) -> None:
    gw.upstream.truncated = True

    reply = await gw.ask()
    await gw.orchestrator.drain_background()

    assert reply.output_truncated is True
    assert gw.cache.stored == []
    assert gw.limiter.reconciled == [("res-req-1", UPSTREAM_USAGE.total_tokens)]


async def test_cache_hit_skips_the_upstream_and_refunds_the_reservation(
    gw: Gateway,
) -> None:
    await gw.ask("req-1")
    await gw.orchestrator.drain_background()

    reply = await gw.ask("req-2")
    await gw.orchestrator.drain_background()

    assert reply.cache_status is CacheStatus.EXACT
    assert reply.similarity == 1.0
    assert reply.output_text == "answer from gpt-4.1-mini"
    assert reply.cost_micros == 0
    assert reply.request_id == "req-2"
    assert gw.upstream.models == ["gpt-4.1-mini"]
    assert ("res-req-2", 0) in gw.limiter.reconciled
    booked = gw.ledger.booked["req-2"]
    assert booked.cache_status is CacheStatus.EXACT
    assert booked.usage == UPSTREAM_USAGE
    assert len(gw.cache.stored) == 1


async def test_a_semantic_hit_carries_its_similarity_and_age(gw: Gateway) -> None:
    await gw.ask("req-1")
    await gw.orchestrator.drain_background()
    key, stored = gw.cache.stored[0]
    gw.cache.entries[key] = CachedAnswer(
        output_text=stored.output_text,
        model=stored.model,
        usage=stored.usage,
        status=CacheStatus.SEMANTIC,
        similarity=0.93,
        age_seconds=42.5,
    )

    reply = await gw.ask("req-2")
    events = await _stream(gw, "req-3")

    assert (reply.cache_status, reply.similarity) == (CacheStatus.SEMANTIC, 0.93)
    assert reply.cache_age_seconds == 42.5
    start = events[0]
    assert isinstance(start, StreamStart)
    assert (start.similarity, start.cache_age_seconds) == (0.93, 42.5)


async def test_cache_bypass_skips_lookup_and_store(gw: Gateway) -> None:
    reply = await gw.ask(request=_request(cache_bypass=True))
    await gw.orchestrator.drain_background()

    assert reply.cache_status is CacheStatus.SKIPPED
    assert gw.cache.lookups == []
    assert gw.cache.stored == []


async def test_cache_unavailable_answers_with_cache_skipped(gw: Gateway) -> None:
    gw.cache.unavailable = True

    reply = await gw.ask()
    await gw.orchestrator.drain_background()

    assert reply.output_text == "answer from gpt-4.1-mini"
    assert reply.cache_status is CacheStatus.SKIPPED
    assert gw.cache.stored == []
    assert gw.ledger.booked["req-1"].cache_status is CacheStatus.SKIPPED


# -- rate limiting


async def test_rate_limit_denial_is_resource_exhausted_with_a_quota_violation(
    gw: Gateway,
) -> None:
    gw.limiter.decision = RateDecision(
        allowed=False,
        retry_after_seconds=12.5,
        denied_subject="user:key-user",
        denied_description="user limit of 20 requests per minute exceeded",
    )

    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask()

    assert raised.value.reason == "RATE_LIMITED"
    assert raised.value.retry_after == 12.5
    assert raised.value.violations == [
        QuotaViolation("user:key-user", "user limit of 20 requests per minute exceeded")
    ]
    assert gw.upstream.calls == []
    assert gw.ledger.booked == {}


async def test_ratelimit_down_fails_open_to_the_local_limiter(gw: Gateway) -> None:
    gw.limiter.unavailable = True
    uncached = _request(cache_bypass=True)

    for n in range(LOCAL_RPM):
        reply = await gw.ask(f"req-{n}", uncached)
        assert reply.output_text == "answer from gpt-4.1-mini"
    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask("req-over", uncached)

    assert raised.value.reason == "RATE_LIMITED"
    # One request comes back every 60 / LOCAL_RPM seconds.
    assert raised.value.retry_after == pytest.approx(60.0 / LOCAL_RPM)
    assert raised.value.violations[0].subject == "user:acme:key-user"
    assert len(gw.upstream.calls) == LOCAL_RPM

    gw.clock.advance(60.0 / LOCAL_RPM)
    assert (await gw.ask("req-later", uncached)).model == "gpt-4.1-mini"
    await gw.orchestrator.drain_background()
    # Local decisions hold no reservation, so nothing is reconciled.
    assert gw.limiter.reconciled == []


async def test_ratelimit_down_fails_closed_when_configured(
    outbox: SqliteOutbox,
) -> None:
    gw = _gateway(outbox, fail_open=False)
    gw.limiter.unavailable = True

    with pytest.raises(UnavailableError) as raised:
        await gw.ask()

    assert raised.value.reason == "RATELIMIT_UNAVAILABLE"
    assert raised.value.retry_after == 2.0
    assert gw.upstream.calls == []


async def test_request_user_id_overrides_the_keys_user(gw: Gateway) -> None:
    await gw.ask(request=_request(user_id="end-user-7"))

    [acquired] = gw.limiter.acquired
    assert acquired.principal == Principal("acme", "chat", "end-user-7", "paid")
    assert gw.router.calls[0][0].user_id == "end-user-7"
    assert gw.ledger.booked["req-1"].principal.user_id == "end-user-7"


async def test_local_limiter_counts_each_end_user_apart(gw: Gateway) -> None:
    gw.limiter.unavailable = True
    for n in range(LOCAL_RPM):
        await gw.ask(f"req-{n}", request=_request(user_id="alice"))

    reply = await gw.ask("req-bob", request=_request(user_id="bob"))

    assert reply.output_text == "answer from gpt-4.1-mini"


# -- router


@pytest.mark.parametrize(
    ("priority", "model"),
    [
        (Priority.CRITICAL, "gpt-4.1"),
        (Priority.REALTIME, "gpt-4.1"),
        (Priority.STANDARD, "gpt-4.1-mini"),
        (Priority.LOW, "gpt-4.1-nano"),
    ],
)
async def test_router_down_uses_the_local_route(
    gw: Gateway, priority: Priority, model: str
) -> None:
    gw.router.answer = DependencyUnavailableError("router", "down")

    reply = await gw.ask(
        request=_request(priority=priority, request_type=RequestType.CLASSIFY)
    )

    assert reply.model == model
    assert reply.deployment == "local-default"
    [call] = gw.upstream.calls
    assert (call.model, call.max_output_tokens) == (model, 50)


async def test_router_rejection_reaches_the_caller(gw: Gateway) -> None:
    gw.router.answer = InvalidArgumentError([FieldViolation("model", "unknown")])

    with pytest.raises(InvalidArgumentError) as raised:
        await gw.ask(request=_request(model="gpt-99"))

    assert raised.value.violations == [FieldViolation("model", "unknown")]
    assert gw.upstream.calls == []


# -- ledger and outbox


async def test_ledger_down_outboxes_the_record_and_replay_delivers_it(
    gw: Gateway,
) -> None:
    gw.ledger.unavailable = True

    reply = await gw.ask("req-1")

    assert reply.output_text == "answer from gpt-4.1-mini"
    # The reply states what the ledger will book: gpt-4.1-mini at $0.40 / $1.60
    # per 1M tokens, 12 in and 30 out: ceil(52.8) micro-dollars.
    assert reply.cost_micros == 53
    assert await gw.orchestrator.outbox_depth() == 1
    assert await gw.orchestrator.replay_outbox() == 0
    assert await gw.orchestrator.outbox_depth() == 1

    gw.ledger.unavailable = False
    assert await gw.orchestrator.replay_outbox() == 1
    assert await gw.orchestrator.replay_outbox() == 0

    assert await gw.orchestrator.outbox_depth() == 0
    assert gw.ledger.calls == ["req-1"]
    record = gw.ledger.booked["req-1"]
    assert (record.model, record.usage, record.principal) == (
        "gpt-4.1-mini",
        UPSTREAM_USAGE,
        PRINCIPAL,
    )


async def test_outbox_replays_oldest_first(gw: Gateway) -> None:
    gw.ledger.unavailable = True
    for request_id in ("req-a", "req-b", "req-c"):
        await gw.ask(request_id, request=_request(cache_bypass=True))

    gw.ledger.unavailable = False
    assert await gw.orchestrator.replay_outbox() == 3

    assert gw.ledger.calls == ["req-a", "req-b", "req-c"]


async def test_a_replayed_record_is_booked_once(gw: Gateway) -> None:
    gw.ledger.unavailable = True
    await gw.ask("req-1")
    gw.ledger.unavailable = False

    # Two replays racing over the same pending record: the ledger is idempotent
    # on the request id, so the usage is booked once.
    await asyncio.gather(
        gw.orchestrator.replay_outbox(), gw.orchestrator.replay_outbox()
    )

    assert list(gw.ledger.booked) == ["req-1"]
    assert await gw.orchestrator.outbox_depth() == 0
    assert await gw.orchestrator.replay_outbox() == 0


async def test_a_ledger_rejection_does_not_fail_an_answered_request(
    gw: Gateway,
) -> None:
    gw.ledger.error = InvalidArgumentError([FieldViolation("model", "no price")])

    reply = await gw.ask()

    assert reply.output_text == "answer from gpt-4.1-mini"


# -- upstream


async def test_open_circuits_hold_a_degradation_level_on_the_router(
    gw: Gateway,
) -> None:
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "503")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        assert (await gw.ask(f"req-{n}")).model == "gpt-4.1-nano"  # failed over
    await gw.orchestrator.drain_background()
    assert gw.router.holds == []

    await gw.ask("req-fallback-1")
    await gw.ask("req-fallback-2")  # within half a hold: not sent again
    await gw.orchestrator.drain_background()
    assert gw.router.holds == [(DegradationLevel.REDUCED_QUALITY, HOLD_SECONDS)]

    gw.clock.advance(HOLD_SECONDS / 2)
    gw.upstream.failures["gpt-4.1-nano"] = DependencyUnavailableError("upstream", "")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-nano-{n}")
    static = await gw.ask("req-static")
    await gw.orchestrator.drain_background()

    assert static.degradation_level is DegradationLevel.STATIC_FALLBACK
    assert (DegradationLevel.STATIC_FALLBACK, HOLD_SECONDS) in gw.router.holds


async def test_failing_model_opens_its_breaker_then_the_fallback_answers(
    gw: Gateway,
) -> None:
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "503")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        assert (await gw.ask(f"req-{n}")).model == "gpt-4.1-nano"  # failed over
    assert gw.upstream_breaker_state("gpt-4.1-mini") is BreakerState.OPEN

    reply = await gw.ask("req-fallback")

    assert reply.model == "gpt-4.1-nano"
    assert reply.output_text == "answer from gpt-4.1-nano"
    assert reply.degradation_level is DegradationLevel.REDUCED_QUALITY
    assert gw.upstream.models == ["gpt-4.1-mini", "gpt-4.1-nano"] * 2 + ["gpt-4.1-nano"]
    await gw.orchestrator.drain_background()
    assert gw.router.outcomes == [
        ("stable", "gpt-4.1-mini", True),
        ("stable", "gpt-4.1-nano", False),
        ("stable", "gpt-4.1-mini", True),
        ("stable", "gpt-4.1-nano", False),
        ("stable", "gpt-4.1-nano", False),
    ]


async def test_a_recovered_model_is_probed_and_serves_again(gw: Gateway) -> None:
    gw.router.answer = sync_route(fallback_models=())
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "503")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-{n}")
    del gw.upstream.failures["gpt-4.1-mini"]
    gw.clock.advance(UPSTREAM_BREAKER.recovery_timeout_seconds)

    reply = await gw.ask("req-probe")

    assert reply.model == "gpt-4.1-mini"
    assert reply.degradation_level is DegradationLevel.FULL_SERVICE
    assert gw.upstream_breaker_state("gpt-4.1-mini") is BreakerState.CLOSED


async def test_every_breaker_open_serves_the_static_answer(gw: Gateway) -> None:
    down = DependencyUnavailableError("upstream", "503")
    gw.upstream.failures.update({"gpt-4.1-mini": down, "gpt-4.1-nano": down})
    # Each request fails on gpt-4.1-mini, then over on gpt-4.1-nano: two open both.
    for n in range(2):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-{n}")
    assert gw.upstream.models == ["gpt-4.1-mini", "gpt-4.1-nano"] * 2

    reply = await gw.ask("req-static")
    await gw.orchestrator.drain_background()

    assert reply.output_text == STATIC_ANSWERS[RequestType.CHAT]
    assert reply.degradation_level is DegradationLevel.STATIC_FALLBACK
    assert (reply.usage, reply.cost_micros) == (Usage(), 0)
    assert len(gw.upstream.calls) == 4
    assert ("res-req-static", 0) in gw.limiter.reconciled
    assert "req-static" not in gw.ledger.booked
    states = {s.name: s.state for s in gw.orchestrator.breakers()}
    assert states == {
        "upstream:gpt-4.1-mini": BreakerState.OPEN,
        "upstream:gpt-4.1-nano": BreakerState.OPEN,
    }


async def test_the_routes_fallback_text_wins_over_the_built_in_static_answer(
    gw: Gateway,
) -> None:
    gw.router.answer = sync_route(fallback_models=(), fallback_text="Come back soon.")
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-{n}")

    reply = await gw.ask("req-static")

    assert reply.output_text == "Come back soon."
    assert reply.degradation_level is DegradationLevel.STATIC_FALLBACK


async def test_upstream_throttling_is_reported_and_resource_exhausted(
    gw: Gateway,
) -> None:
    gw.router.answer = sync_route(fallback_models=())
    gw.upstream.failures["gpt-4.1-mini"] = UpstreamThrottledError(
        "upstream", "429", 7.0
    )

    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask("req-1")
    await gw.orchestrator.drain_background()

    assert raised.value.reason == "UPSTREAM_RATE_LIMITED"
    assert raised.value.retry_after == 7.0
    assert gw.limiter.reports == [("gpt-4.1-mini", True, 7.0)]
    # A 429 says the upstream is alive: the breaker does not count it.
    assert gw.upstream_breaker_state("gpt-4.1-mini") is BreakerState.CLOSED

    del gw.upstream.failures["gpt-4.1-mini"]
    await gw.ask("req-2")
    await gw.orchestrator.drain_background()

    # After a throttle, successes feed the adaptive backoff back down.
    assert gw.limiter.reports[-1] == ("gpt-4.1-mini", False, 0.0)


async def test_a_throttled_probe_does_not_wedge_the_breaker(gw: Gateway) -> None:
    gw.router.answer = sync_route(fallback_models=())
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "503")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        with pytest.raises(UnavailableError):
            await gw.ask(f"req-{n}")
    gw.clock.advance(UPSTREAM_BREAKER.recovery_timeout_seconds)
    gw.upstream.failures["gpt-4.1-mini"] = UpstreamThrottledError(
        "upstream", "429", 1.0
    )
    with pytest.raises(ResourceExhaustedError):
        await gw.ask("req-probe")
    del gw.upstream.failures["gpt-4.1-mini"]

    reply = await gw.ask("req-after")

    assert reply.output_text == "answer from gpt-4.1-mini"


async def test_a_failed_upstream_call_refunds_the_reservation(gw: Gateway) -> None:
    gw.router.answer = sync_route(fallback_models=())
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "503")

    with pytest.raises(UnavailableError):
        await gw.ask("req-1")
    await gw.orchestrator.drain_background()

    assert gw.limiter.reconciled == [("res-req-1", 0)]


async def test_a_fallback_answer_is_not_cached_as_the_routed_models(
    gw: Gateway,
) -> None:
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "")
    for n in range(UPSTREAM_BREAKER.failure_threshold):
        await gw.ask(f"req-{n}")  # failed over to gpt-4.1-nano
    assert (await gw.ask("req-fallback")).model == "gpt-4.1-nano"
    await gw.orchestrator.drain_background()
    del gw.upstream.failures["gpt-4.1-mini"]
    gw.clock.advance(UPSTREAM_BREAKER.recovery_timeout_seconds)

    reply = await gw.ask("req-recovered")

    assert reply.model == "gpt-4.1-mini"


# -- budgets


async def test_a_budget_denial_is_resource_exhausted_and_refunds_the_tokens(
    gw: Gateway,
) -> None:
    description = "tenant day budget of 1000000 micro-dollars"
    gw.ledger.verdict = BudgetVerdict(
        allowed=False, resets_at=gw.clock.now() + 3600.0, description=description
    )

    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask("req-1")
    await gw.orchestrator.drain_background()

    assert raised.value.reason == "BUDGET_EXCEEDED"
    assert raised.value.retry_after == pytest.approx(3600.0)
    assert raised.value.violations == [QuotaViolation("budget", description)]
    assert gw.upstream.calls == []
    assert gw.limiter.reconciled == [("res-req-1", 0)]


async def test_a_budget_downgrade_answers_with_the_cheaper_model(
    gw: Gateway,
) -> None:
    gw.ledger.verdict = BudgetVerdict(
        allowed=True, reservation_id="budget-1", downgrade_model="gpt-4.1-nano"
    )

    reply = await gw.ask("req-1")

    assert reply.model == "gpt-4.1-nano"
    assert reply.degradation_level is DegradationLevel.REDUCED_QUALITY
    assert gw.upstream.models == ["gpt-4.1-nano"]
    assert gw.ledger.booked["req-1"].budget_reservation_id == "budget-1"


async def test_an_unreachable_ledger_skips_the_budget_check(gw: Gateway) -> None:
    gw.ledger.unavailable = True
    gw.ledger.verdict = BudgetVerdict(allowed=False, description="never asked")

    reply = await gw.ask()

    assert reply.output_text == "answer from gpt-4.1-mini"


# -- single flight and queue


async def _spin() -> None:
    """Let every ready task run until it blocks (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_identical_requests_in_flight_share_one_upstream_call(
    gw: Gateway,
) -> None:
    gw.upstream.gate = asyncio.Event()
    deterministic = _request(temperature=0.0)
    first = asyncio.create_task(gw.ask("req-1", deterministic))
    second = asyncio.create_task(gw.ask("req-2", deterministic))
    await _spin()

    gw.upstream.gate.set()
    replies = {reply.request_id: reply for reply in await asyncio.gather(first, second)}
    await gw.orchestrator.drain_background()

    assert gw.upstream.models == ["gpt-4.1-mini"]
    leader, follower = replies["req-1"], replies["req-2"]
    assert leader.cache_status is CacheStatus.MISS
    assert leader.cost_micros == 1234
    assert follower.cache_status is CacheStatus.EXACT
    assert follower.cost_micros == 0
    assert follower.output_text == leader.output_text
    assert gw.ledger.booked["req-2"].cache_status is CacheStatus.EXACT
    assert sorted(gw.limiter.reconciled) == [
        ("res-req-1", UPSTREAM_USAGE.total_tokens),
        ("res-req-2", 0),
    ]


async def test_a_followers_budget_reservation_is_settled(gw: Gateway) -> None:
    gw.upstream.gate = asyncio.Event()
    tasks = [asyncio.create_task(gw.ask(f"req-{n}")) for n in range(2)]
    await _spin()
    gw.upstream.gate.set()
    await asyncio.gather(*tasks)

    assert gw.ledger.booked["req-1"].budget_reservation_id == "budget-req-1"


async def test_cache_bypass_requests_do_not_share_a_call(gw: Gateway) -> None:
    gw.upstream.gate = asyncio.Event()
    bypass = _request(cache_bypass=True)
    tasks = [asyncio.create_task(gw.ask(f"req-{n}", bypass)) for n in range(2)]
    await _spin()

    gw.upstream.gate.set()
    await asyncio.gather(*tasks)

    assert gw.upstream.models == ["gpt-4.1-mini", "gpt-4.1-mini"]


async def test_a_full_queue_refuses_at_once(outbox: SqliteOutbox) -> None:
    gw = _gateway(outbox, max_concurrency=1, max_queue_depth=0)
    gw.upstream.gate = asyncio.Event()
    busy = asyncio.create_task(gw.ask("req-1"))
    await _spin()

    with pytest.raises(ResourceExhaustedError) as raised:
        await gw.ask("req-2", _request(input="a different question"))

    assert raised.value.reason == "QUEUE_FULL"
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 0
    gw.upstream.gate.set()
    assert (await busy).output_text == "answer from gpt-4.1-mini"
    assert len(gw.upstream.calls) == 1


# -- token budget and lanes


async def test_input_over_the_cap_is_truncated_by_tokens(gw: Gateway) -> None:
    text = " ".join(f"word{n}" for n in range(300))
    cap = 50
    gw.router.answer = sync_route(input_token_cap=cap)
    request = _request(input=text)
    # The cap bounds the conversation, its per-message overhead included.
    overhead = count_prompt(Prompt.of_text("")).conversation
    kept = truncate_tokens(text, cap - overhead).text

    reply = await gw.ask(request=request)

    [call] = gw.upstream.calls
    assert call.input_text == kept
    assert count_prompt(call.prompt).conversation == cap
    assert reply.input_truncated is True
    assert reply.input_tokens_dropped == (
        count_prompt(request.prompt).total - count_prompt(call.prompt).total
    )
    assert reply.input_tokens_dropped == count_tokens(text) - count_tokens(kept)
    assert gw.limiter.acquired[0].tokens == count_prompt(call.prompt).total + 500


async def test_input_within_the_cap_is_untouched(gw: Gateway) -> None:
    gw.router.answer = sync_route(
        input_token_cap=count_prompt(BASE_REQUEST.prompt).conversation
    )

    reply = await gw.ask()

    assert (reply.input_truncated, reply.input_tokens_dropped) == (False, 0)
    assert gw.upstream.calls[0].input_text == INPUT


@pytest.mark.parametrize(
    ("lane", "level"),
    [
        (Lane.CACHE_ONLY, DegradationLevel.CACHED_ONLY),
        (Lane.STATIC, DegradationLevel.STATIC_FALLBACK),
    ],
)
async def test_degraded_lanes_answer_the_fallback_text_without_the_upstream(
    gw: Gateway, lane: Lane, level: DegradationLevel
) -> None:
    gw.router.answer = sync_route(
        lane=lane, degradation_level=level, fallback_text="Please try again later."
    )

    reply = await gw.ask()
    await gw.orchestrator.drain_background()

    assert reply.output_text == "Please try again later."
    assert reply.degradation_level is level
    assert reply.cost_micros == 0
    assert gw.upstream.calls == []
    assert gw.limiter.reconciled == [("res-req-1", 0)]
    assert gw.orchestrator.degradation_level is level


async def test_cache_only_lane_still_serves_a_cache_hit(gw: Gateway) -> None:
    await gw.ask("req-1")
    await gw.orchestrator.drain_background()
    gw.router.answer = sync_route(
        lane=Lane.CACHE_ONLY,
        degradation_level=DegradationLevel.CACHED_ONLY,
        fallback_text="busy",
    )

    reply = await gw.ask("req-2")

    assert reply.output_text == "answer from gpt-4.1-mini"
    assert reply.cache_status is CacheStatus.EXACT


async def test_maintenance_accepts_the_request_and_answers_with_a_ticket(
    gw: Gateway,
) -> None:
    gw.router.answer = sync_route(
        lane=Lane.QUEUE, degradation_level=DegradationLevel.MAINTENANCE
    )

    reply = await gw.ask()
    await gw.orchestrator.drain_background()

    assert reply.ticket_id == "ticket-1"
    assert reply.output_text == ""
    assert reply.degradation_level is DegradationLevel.MAINTENANCE
    assert gw.upstream.calls == []
    principal, accepted = gw.tickets.accepted[0]
    assert principal == PRINCIPAL
    assert accepted.prompt == BASE_REQUEST.prompt
    assert accepted.model == "gpt-4.1-mini"  # the routed model, not "auto"
    assert gw.limiter.reconciled == [("res-req-1", 0)]


async def test_an_asynchronous_request_is_answered_later_by_ticket(gw: Gateway) -> None:
    reply = await gw.ask(request=replace(BASE_REQUEST, asynchronous=True))

    assert reply.ticket_id == "ticket-1"
    assert gw.upstream.calls == []
    assert gw.ledger.booked == {}


async def test_streams_in_maintenance_are_unavailable(gw: Gateway) -> None:
    gw.router.answer = sync_route(
        lane=Lane.QUEUE, degradation_level=DegradationLevel.MAINTENANCE
    )

    with pytest.raises(UnavailableError) as raised:
        await _stream(gw)

    assert raised.value.reason == "MAINTENANCE"
    assert gw.upstream.calls == []


# -- streaming


async def _stream(
    gw: Gateway, request_id: str = "req-1", request: ResponseRequest = BASE_REQUEST
) -> list[StreamEvent]:
    return [
        event
        async for event in gw.orchestrator.stream_response(
            PRINCIPAL, request, request_id, None
        )
    ]


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, StreamDelta))


async def test_a_stream_starts_delivers_deltas_and_ends_with_usage_and_cost(
    gw: Gateway,
) -> None:
    events = await _stream(gw)
    await gw.orchestrator.drain_background()

    assert events[0] == StreamStart(
        request_id="req-1",
        model="gpt-4.1-mini",
        deployment="stable",
        cache_status=CacheStatus.MISS,
        degradation_level=DegradationLevel.FULL_SERVICE,
        input_truncated=False,
    )
    assert _text(events) == "answer from gpt-4.1-mini"
    assert len(events) == 5
    assert events[-1] == StreamEnd(
        UPSTREAM_USAGE, 1234, output_truncated=False, finish_reason=FinishReason.STOP
    )
    assert gw.limiter.reconciled == [("res-req-1", UPSTREAM_USAGE.total_tokens)]
    assert len(gw.cache.stored) == 1
    assert gw.ledger.booked["req-1"].usage == UPSTREAM_USAGE


async def test_a_streamed_cache_hit_is_one_delta_at_no_cost(gw: Gateway) -> None:
    await gw.ask("req-1")
    await gw.orchestrator.drain_background()

    events = await _stream(gw, "req-2")

    assert isinstance(events[0], StreamStart)
    assert events[0].cache_status is CacheStatus.EXACT
    assert events[1:] == [
        StreamDelta("answer from gpt-4.1-mini"),
        StreamEnd(
            UPSTREAM_USAGE, 0, output_truncated=False, finish_reason=FinishReason.STOP
        ),
    ]
    assert gw.upstream.models == ["gpt-4.1-mini"]


async def test_a_broken_stream_fails_after_its_deltas_and_books_what_was_consumed(
    gw: Gateway,
) -> None:
    gw.upstream.stream_breaks_after = 2
    events: list[StreamEvent] = []

    with pytest.raises(UnavailableError) as raised:
        async for event in gw.orchestrator.stream_response(
            PRINCIPAL, BASE_REQUEST, "req-1", None
        ):
            events.append(event)
    await gw.orchestrator.drain_background()

    assert raised.value.reason == "UPSTREAM_STREAM_BROKEN"
    assert raised.value.metadata["partialOutput"] == "true"
    assert _text(events) == "answer from"
    assert not any(isinstance(e, StreamEnd) for e in events)
    partial = Usage(
        input_tokens=count_prompt(BASE_REQUEST.prompt).total,
        output_tokens=count_tokens("answer from"),
    )
    assert gw.ledger.booked["req-1"].usage == partial
    assert gw.limiter.reconciled == [("res-req-1", partial.total_tokens)]
    assert gw.cache.stored == []
    snapshot = {s.name: s for s in gw.orchestrator.breakers()}
    assert snapshot["upstream:gpt-4.1-mini"].failure_count == 1


async def test_an_abandoned_stream_books_what_was_consumed(gw: Gateway) -> None:
    # stream_response is an async generator; the client going away closes it.
    stream = cast(
        AsyncGenerator[StreamEvent, None],
        gw.orchestrator.stream_response(PRINCIPAL, BASE_REQUEST, "req-1", None),
    )
    assert isinstance(await anext(stream), StreamStart)
    assert await anext(stream) == StreamDelta("answer")

    await stream.aclose()
    await gw.orchestrator.drain_background()

    booked = gw.ledger.booked["req-1"]
    assert booked.usage.output_tokens == count_tokens("answer")
    assert gw.cache.stored == []


async def test_a_budget_downgrade_applies_to_streams(gw: Gateway) -> None:
    gw.ledger.verdict = BudgetVerdict(
        allowed=True, reservation_id="budget-1", downgrade_model="gpt-4.1-nano"
    )

    events = await _stream(gw)

    assert isinstance(events[0], StreamStart)
    assert events[0].model == "gpt-4.1-nano"


async def test_a_stream_that_never_opened_books_nothing(gw: Gateway) -> None:
    gw.router.answer = sync_route(fallback_models=())
    gw.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("upstream", "")

    with pytest.raises(UnavailableError):
        await _stream(gw)
    await gw.orchestrator.drain_background()

    assert "req-1" not in gw.ledger.booked


# -- conversations and tools

WEATHER = Tool("get_weather", "The forecast.", {"type": "object"})
CALL = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')


async def test_requests_that_are_not_deterministic_never_share_a_call(
    gw: Gateway,
) -> None:
    gw.upstream.gate = asyncio.Event()
    for temperature in (None, 0.7):
        sampled = _request(temperature=temperature)
        first = asyncio.create_task(gw.ask("req-1", sampled))
        second = asyncio.create_task(gw.ask("req-2", sampled))
        await _spin()
        gw.upstream.gate.set()
        replies = await asyncio.gather(first, second)
        gw.upstream.gate.clear()
        assert [reply.cache_status for reply in replies] == [CacheStatus.MISS] * 2
    assert len(gw.upstream.calls) == 4


async def test_a_tool_call_answer_is_returned_and_cached(gw: Gateway) -> None:
    gw.upstream.tool_calls = (CALL,)
    asked = Prompt(messages=(Message(Role.USER, ("Weather?",)),), tools=(WEATHER,))
    request = replace(BASE_REQUEST, prompt=asked)

    reply = await gw.ask(request=request)
    await gw.orchestrator.drain_background()

    assert reply.tool_calls == (CALL,)
    assert reply.finish_reason is FinishReason.TOOL_CALLS
    [(key, stored)] = gw.cache.stored
    assert stored.tool_calls == (CALL,)
    assert key.tools_json  # the tools are part of the key
    [call] = gw.upstream.calls
    assert call.prompt.tools == (WEATHER,)


async def test_a_streamed_tool_call_is_delivered_in_pieces_then_whole(
    gw: Gateway,
) -> None:
    gw.upstream.tool_calls = (CALL,)

    events = await _stream(gw)

    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert pieces[0] == ToolCallDelta(0, CALL.id, CALL.name, "")
    assert "".join(p.arguments_delta for p in pieces) == CALL.arguments
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert (end.finish_reason, end.tool_calls) == (FinishReason.TOOL_CALLS, (CALL,))


async def test_an_over_long_conversation_loses_its_oldest_turns_whole(
    gw: Gateway,
) -> None:
    old = " ".join(f"old{n}" for n in range(200))
    conversation = (
        Message(Role.USER, (old,)),
        Message(Role.ASSISTANT, ("An answer to the old question.",)),
        Message(Role.USER, ("Weather in Oslo?",)),
        Message(Role.ASSISTANT, tool_calls=(CALL,)),
        Message(Role.TOOL, ("12 C, rain",), tool_call_id=CALL.id),
        Message(Role.USER, ("And tomorrow?",)),
    )
    request = replace(
        BASE_REQUEST, prompt=Prompt(messages=conversation, tools=(WEATHER,))
    )
    full = count_prompt(request.prompt)
    # Room for everything but the first question and its answer.
    cap = full.conversation - full.messages[0] - full.messages[1]
    gw.router.answer = sync_route(input_token_cap=cap)

    reply = await gw.ask(request=request)

    [call] = gw.upstream.calls
    assert call.prompt.messages == conversation[2:]
    assert reply.input_tokens_dropped == full.messages[0] + full.messages[1]
    assert reply.input_truncated is True


async def test_a_model_the_key_may_not_use_is_refused_before_anything_is_spent(
    gw: Gateway,
) -> None:
    nano_only = replace(PRINCIPAL, allowed_models=("gpt-4.1-nano",))
    for model in ("gpt-4.1", "auto", ""):
        with pytest.raises(PermissionDeniedError) as refused:
            await gw.orchestrator.create_response(
                nano_only, _request(model=model), "req-1", None
            )
        assert refused.value.reason == "MODEL_NOT_ALLOWED"
    assert gw.limiter.acquired == []
    assert gw.upstream.calls == []

    gw.router.answer = sync_route(model="gpt-4.1-nano")
    reply = await gw.orchestrator.create_response(
        nano_only, _request(model="gpt-4.1-nano"), "req-2", None
    )
    assert reply.model == "gpt-4.1-nano"
