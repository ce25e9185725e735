"""What the gateway does alone: the local route table and the local limiter."""

from __future__ import annotations

import pytest

from services.core.clock import FakeClock
from services.gateway.domain import DegradationLevel, Lane, Priority, RequestType
from services.gateway.fallbacks import LOCAL_BUDGETS, LocalLimiter, local_route

# -- local route


@pytest.mark.parametrize(
    ("priority", "model", "fallbacks"),
    [
        (Priority.CRITICAL, "gpt-4.1", ("gpt-4.1-mini", "gpt-4.1-nano")),
        (Priority.REALTIME, "gpt-4.1", ("gpt-4.1-mini", "gpt-4.1-nano")),
        (Priority.STANDARD, "gpt-4.1-mini", ("gpt-4.1-nano",)),
        (Priority.BATCH, "gpt-4.1-mini", ("gpt-4.1-nano",)),
        (Priority.LOW, "gpt-4.1-nano", ()),
    ],
)
@pytest.mark.parametrize("requested", ["", "auto"])
def test_priority_picks_the_model_and_cheaper_fallbacks(
    priority: Priority, model: str, fallbacks: tuple[str, ...], requested: str
) -> None:
    route = local_route(priority, RequestType.CHAT, requested, 0)

    assert route.model == model
    assert route.fallback_models == fallbacks
    assert route.deployment == "local-default"
    assert route.lane is Lane.SYNC
    assert route.degradation_level is DegradationLevel.FULL_SERVICE


@pytest.mark.parametrize(
    ("request_type", "input_cap", "output_budget"),
    [
        (RequestType.CHAT, 2000, 500),
        (RequestType.SUMMARIZE, 8000, 300),
        (RequestType.ANALYZE, 4000, 2000),
        (RequestType.CLASSIFY, 500, 50),
        (RequestType.GENERATE, 1000, 4000),
    ],
)
def test_request_type_sets_the_token_budgets(
    request_type: RequestType, input_cap: int, output_budget: int
) -> None:
    route = local_route(Priority.STANDARD, request_type, "auto", 0)

    assert (route.input_token_cap, route.max_output_tokens) == (
        input_cap,
        output_budget,
    )


def test_every_request_type_has_a_budget() -> None:
    assert set(LOCAL_BUDGETS) == set(RequestType)


@pytest.mark.parametrize(("asked", "granted"), [(100, 100), (500, 500), (9000, 500)])
def test_a_requested_output_limit_is_capped_by_the_budget(
    asked: int, granted: int
) -> None:
    route = local_route(Priority.STANDARD, RequestType.CHAT, "auto", asked)

    assert route.max_output_tokens == granted


def test_a_requested_model_is_kept_with_its_cheaper_fallbacks() -> None:
    route = local_route(Priority.LOW, RequestType.CHAT, "gpt-4.1", 0)

    assert route.model == "gpt-4.1"
    assert route.fallback_models == ("gpt-4.1-mini", "gpt-4.1-nano")


def test_a_model_outside_the_ladder_has_no_fallback() -> None:
    route = local_route(Priority.STANDARD, RequestType.CHAT, "o3-mini", 0)

    assert (route.model, route.fallback_models) == ("o3-mini", ())


# -- local limiter


def test_admits_up_to_the_rpm_then_says_when_to_retry() -> None:
    limiter = LocalLimiter(rpm_per_user=3, clock=FakeClock())

    decisions = [limiter.acquire("acme:alice") for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    denied = decisions[-1]
    assert denied.retry_after_seconds == pytest.approx(20.0)
    assert denied.denied_subject == "user:acme:alice"
    assert "3 requests per minute" in denied.denied_description
    assert denied.reservation_id == ""


def test_refills_at_the_rpm_rate() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(rpm_per_user=3, clock=clock)
    for _ in range(3):
        assert limiter.acquire("acme:alice").allowed

    clock.advance(19.9)
    assert not limiter.acquire("acme:alice").allowed
    clock.advance(0.1)
    assert limiter.acquire("acme:alice").allowed
    assert not limiter.acquire("acme:alice").allowed


def test_refill_never_exceeds_the_capacity() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(rpm_per_user=2, clock=clock)
    limiter.acquire("k")

    clock.advance(3600.0)

    assert [limiter.acquire("k").allowed for _ in range(3)] == [True, True, False]


def test_users_have_separate_buckets() -> None:
    limiter = LocalLimiter(rpm_per_user=1, clock=FakeClock())

    assert limiter.acquire("acme:alice").allowed
    assert not limiter.acquire("acme:alice").allowed
    assert limiter.acquire("acme:bob").allowed


def test_keys_are_bounded_by_forgetting_the_oldest() -> None:
    limiter = LocalLimiter(rpm_per_user=1, clock=FakeClock(), max_keys=2)
    assert limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed

    # A third key evicts "a", whose exhausted bucket is forgotten.
    assert limiter.acquire("c").allowed

    assert not limiter.acquire("b").allowed
    assert not limiter.acquire("c").allowed
    assert limiter.acquire("a").allowed
