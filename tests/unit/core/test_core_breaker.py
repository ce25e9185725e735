"""CircuitBreaker driven by a FakeClock, with the seed's parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)
from services.core.clock import FakeClock

SEED = BreakerConfig(
    failure_threshold=5,
    recovery_timeout_seconds=30.0,
    half_open_max_calls=3,
    success_threshold=2,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("upstream:gpt-4.1", SEED, clock)


def _state(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property: mypy would otherwise narrow ``breaker.state`` after
    # one assert and flag the next comparison as impossible.
    return breaker.state


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def _open(breaker: CircuitBreaker) -> None:
    _fail(breaker, SEED.failure_threshold)
    assert _state(breaker) is BreakerState.OPEN


def _half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    _open(breaker)
    clock.advance(SEED.recovery_timeout_seconds)
    assert _state(breaker) is BreakerState.HALF_OPEN


def test_defaults_are_the_seed_parameters() -> None:
    assert BreakerConfig() == SEED


@pytest.mark.parametrize(
    "field",
    [
        "failure_threshold",
        "recovery_timeout_seconds",
        "half_open_max_calls",
        "success_threshold",
    ],
)
def test_config_rejects_zero(field: str) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig.model_validate({field: 0})


def test_starts_closed_and_allows_calls(breaker: CircuitBreaker) -> None:
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.retry_after() == 0.0


def test_opens_on_the_fifth_consecutive_failure(breaker: CircuitBreaker) -> None:
    _fail(breaker, 4)
    assert _state(breaker) is BreakerState.CLOSED
    _fail(breaker, 1)
    assert _state(breaker) is BreakerState.OPEN
    assert not breaker.allow()


def test_success_resets_the_failure_count_while_closed(
    breaker: CircuitBreaker,
) -> None:
    _fail(breaker, 4)
    breaker.record_success()
    assert breaker.snapshot().failure_count == 0
    _fail(breaker, 4)
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.snapshot().failure_count == 4


def test_open_breaker_refuses_calls_until_the_recovery_timeout(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _open(breaker)
    assert breaker.retry_after() == 30.0
    clock.advance(10.0)
    assert not breaker.allow()
    assert breaker.retry_after() == 20.0
    clock.advance(19.5)
    assert _state(breaker) is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(0.5)
    clock.advance(0.5)
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert breaker.retry_after() == 0.0


def test_half_open_lets_three_probes_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _half_open(breaker, clock)
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    assert _state(breaker) is BreakerState.HALF_OPEN


def test_two_probe_successes_close_it(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _half_open(breaker, clock)
    assert breaker.allow()
    breaker.record_success()
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.snapshot().failure_count == 0
    assert all(breaker.allow() for _ in range(10))


def test_closed_again_it_needs_five_new_failures_to_open(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _half_open(breaker, clock)
    for _ in range(SEED.success_threshold):
        assert breaker.allow()
        breaker.record_success()
    _fail(breaker, 4)
    assert _state(breaker) is BreakerState.CLOSED


def test_a_probe_failure_reopens_it_for_a_full_timeout(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _half_open(breaker, clock)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow()
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 30.0
    clock.advance(30.0)
    assert _state(breaker) is BreakerState.HALF_OPEN
    # A fresh half-open period: three new probes, earlier successes forgotten.
    assert breaker.allow()
    breaker.record_success()
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert [breaker.allow() for _ in range(3)] == [True, True, False]


def test_snapshot_reports_state_failures_and_when_it_opened(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    assert breaker.snapshot() == BreakerSnapshot(
        name="upstream:gpt-4.1",
        state=BreakerState.CLOSED,
        failure_count=0,
        opened_at=None,
    )
    _fail(breaker, 2)
    assert breaker.snapshot().failure_count == 2
    clock.advance(100.0)
    opened_at = clock.now()
    _fail(breaker, 3)
    assert breaker.snapshot() == BreakerSnapshot(
        name="upstream:gpt-4.1",
        state=BreakerState.OPEN,
        failure_count=5,
        opened_at=opened_at,
    )
    clock.advance(30.0)
    assert breaker.snapshot().state is BreakerState.HALF_OPEN


def test_reopening_updates_opened_at(breaker: CircuitBreaker, clock: FakeClock) -> None:
    first_opened_at = clock.now()
    _half_open(breaker, clock)
    assert breaker.snapshot().opened_at == first_opened_at
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.snapshot().opened_at == first_opened_at + 30.0 == clock.now()


def test_custom_thresholds_are_honoured(clock: FakeClock) -> None:
    config = BreakerConfig(
        failure_threshold=1,
        recovery_timeout_seconds=5.0,
        half_open_max_calls=1,
        success_threshold=1,
    )
    breaker = CircuitBreaker("cache", config, clock)
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN
    clock.advance(5.0)
    assert [breaker.allow(), breaker.allow()] == [True, False]
    breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED


def test_unreported_probes_do_not_wedge_it_half_open(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    _half_open(breaker, clock)
    assert [breaker.allow() for _ in range(3)] == [True, True, True]
    clock.advance(SEED.recovery_timeout_seconds)
    assert breaker.allow()
