"""The gateway reuses a leased routing decision, fitted to each request, and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.core.clock import FakeClock
from services.core.conversation import Prompt
from services.core.prompt_tokens import count_prompt
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.domain import (
    DegradationLevel,
    Lane,
    Principal,
    Priority,
    RequestType,
    ResponseRequest,
    RouteLease,
)
from services.gateway.orchestrator import Orchestrator
from services.gateway.ports import DependencyUnavailableError, ReusedRoutes
from tests.unit.gateway.gateway_fakes import (
    TEST_BREAKER,
    FakeCache,
    FakeLedger,
    FakeRateLimiter,
    FakeRouter,
    FakeTickets,
    FakeUpstream,
    fake_orchestrator,
    sync_route,
)

PRINCIPAL = Principal(tenant_id="acme", service="chat", user_id="u", user_tier="paid")
LEASE = RouteLease(
    duration_seconds=1.0,
    max_output_tokens_cap=500,
    tier="standard",
    prices=(400_000, 1_600_000),
    premium_prices=(2_000_000, 8_000_000),
)


def _request(text: str = "What is a token bucket?", **changes: Any) -> ResponseRequest:
    fields: dict[str, Any] = {
        "prompt": Prompt.of_text(text),
        "model": "gpt-4.1-mini",
        "priority": Priority.STANDARD,
        "request_type": RequestType.CHAT,
        "max_output_tokens": 0,
        "temperature": None,
        "user_id": "",
        "metadata": {},
        "cache_bypass": True,
    }
    fields.update(changes)
    return ResponseRequest(**fields)


class Suite:
    def __init__(self, outbox: SqliteOutbox) -> None:
        self.clock = FakeClock()
        self.router = FakeRouter()
        self.router.answer = sync_route(lease=LEASE, worst_case_cost_micros=840)
        self.upstream = FakeUpstream()
        self.orchestrator: Orchestrator = fake_orchestrator(
            outbox,
            clock=self.clock,
            limiter=FakeRateLimiter(),
            cache=FakeCache(),
            router=self.router,
            ledger=FakeLedger(),
            upstream=self.upstream,
            tickets=FakeTickets(),
        )
        self._ids = 0

    async def ask(self, request: ResponseRequest | None = None) -> str:
        self._ids += 1
        reply = await self.orchestrator.create_response(
            PRINCIPAL, request or _request(), f"req-{self._ids}", None
        )
        return reply.model


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return Suite(SqliteOutbox(tmp_path / "outbox.sqlite3"))


async def test_requests_like_a_leased_one_are_routed_without_the_router(
    suite: Suite,
) -> None:
    for _ in range(3):
        assert await suite.ask() == "gpt-4.1-mini"

    assert len(suite.router.calls) == 1
    assert len(suite.upstream.calls) == 3


async def test_a_reused_decision_is_fitted_to_each_requests_output_limit(
    suite: Suite,
) -> None:
    await suite.ask()
    await suite.ask(_request(max_output_tokens=64))
    await suite.ask(_request(max_output_tokens=5000))  # over the cap

    assert [call.max_output_tokens for call in suite.upstream.calls] == [500, 64, 500]
    assert len(suite.router.calls) == 1


async def test_reused_decisions_are_reported_with_their_worst_case_costs(
    suite: Suite,
) -> None:
    await suite.ask()
    text = "Explain the leaky bucket in three sentences, please."
    await suite.ask(_request(text, max_output_tokens=100))
    await suite.ask()
    await suite.orchestrator.drain_background()

    def cost(prices: tuple[int, int], output: int, text: str) -> int:
        tokens = count_prompt(Prompt.of_text(text)).conversation
        return -(-(tokens * prices[0] + output * prices[1]) // 1_000_000)

    default = "What is a token bucket?"
    assert suite.router.reused == [
        ReusedRoutes(
            tier="standard",
            lane=Lane.SYNC,
            decisions=2,
            routed_cost_micros=cost(LEASE.prices, 100, text)
            + cost(LEASE.prices, 500, default),
            premium_cost_micros=cost(LEASE.premium_prices, 100, text)
            + cost(LEASE.premium_prices, 500, default),
        )
    ]
    # And the routed calls' own outcomes went in the same report.
    assert len(suite.router.outcomes) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4.1"},
        {"priority": Priority.REALTIME},
        {"request_type": RequestType.SUMMARIZE},
    ],
)
async def test_a_request_of_another_model_priority_or_type_asks_the_router(
    suite: Suite, change: dict[str, Any]
) -> None:
    await suite.ask()
    await suite.ask(_request(**change))

    assert len(suite.router.calls) == 2


async def test_the_router_is_asked_again_once_the_lease_ends(suite: Suite) -> None:
    await suite.ask()
    suite.clock.advance(LEASE.duration_seconds - 0.01)
    await suite.ask()
    assert len(suite.router.calls) == 1

    suite.router.answer = sync_route(
        degradation_level=DegradationLevel.CACHED_ONLY, lane=Lane.CACHE_ONLY
    )
    suite.clock.advance(0.01)
    await suite.ask(_request(cache_bypass=False))
    await suite.ask(_request(cache_bypass=False))

    # The level binds from the first request after the lease; it leases nothing.
    assert len(suite.router.calls) == 3
    assert len(suite.upstream.calls) == 2


async def test_an_unleased_decision_is_not_reused(suite: Suite) -> None:
    suite.router.answer = sync_route()
    await suite.ask()
    await suite.ask()

    assert len(suite.router.calls) == 2
    await suite.orchestrator.drain_background()
    assert suite.router.reused == []


async def test_a_level_held_by_this_gateway_drops_its_leases(suite: Suite) -> None:
    await suite.ask()
    suite.upstream.failures["gpt-4.1-mini"] = DependencyUnavailableError("up", "503")
    for _ in range(TEST_BREAKER.failure_threshold):
        await suite.ask()  # failed over to gpt-4.1-nano, under the lease
    assert len(suite.router.calls) == 1

    await suite.ask()  # the breaker is open: this gateway holds a level
    await suite.orchestrator.drain_background()
    assert suite.router.holds == [(DegradationLevel.REDUCED_QUALITY, 30.0)]

    await suite.ask()
    assert len(suite.router.calls) == 2
