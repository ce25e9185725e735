from __future__ import annotations

import pytest

from services.simulator.faults import (
    Fault,
    FaultKind,
    FaultPlan,
    UnknownFaultError,
    parse_fault_kind,
)


def _plan(rate: float = 0.0, seed: int = 7) -> FaultPlan:
    return FaultPlan(
        rate=rate, kind=FaultKind.UNAVAILABLE, retry_after_seconds=3, seed=seed
    )


def test_no_fault_by_default() -> None:
    plan = _plan()
    assert [plan.pick(None) for _ in range(100)] == [None] * 100


def test_requested_fault_wins_and_keeps_the_schedule() -> None:
    plan = _plan(rate=1.0)
    plan.schedule(FaultKind.SERVER_ERROR, 1)
    assert plan.pick(FaultKind.HANG) == Fault(FaultKind.HANG, 3)
    assert plan.pending == 1


def test_schedule_is_consumed_in_order() -> None:
    plan = _plan()
    plan.schedule(FaultKind.RATE_LIMIT, 2, retry_after_seconds=9)
    plan.schedule(FaultKind.SERVER_ERROR, 1)
    assert plan.pending == 3
    picks = [plan.pick(None) for _ in range(4)]
    assert picks == [
        Fault(FaultKind.RATE_LIMIT, 9),
        Fault(FaultKind.RATE_LIMIT, 9),
        Fault(FaultKind.SERVER_ERROR, 3),
        None,
    ]
    assert plan.pending == 0


def test_clear_drops_the_schedule() -> None:
    plan = _plan()
    plan.schedule(FaultKind.RATE_LIMIT, 5)
    plan.clear()
    assert plan.pending == 0
    assert plan.pick(None) is None


def test_rate_one_always_faults_with_the_configured_kind() -> None:
    plan = _plan(rate=1.0)
    assert {plan.pick(None) for _ in range(20)} == {Fault(FaultKind.UNAVAILABLE, 3)}


def test_rate_draws_are_seeded_and_reset_restarts_them() -> None:
    first = _plan(rate=0.3)
    draws = [first.pick(None) is not None for _ in range(200)]
    second = _plan(rate=0.3)
    assert [second.pick(None) is not None for _ in range(200)] == draws
    first.reset()
    assert [first.pick(None) is not None for _ in range(200)] == draws
    assert 30 < sum(draws) < 90


def test_other_seed_gives_other_draws() -> None:
    a, b = _plan(rate=0.5, seed=1), _plan(rate=0.5, seed=2)
    assert [a.pick(None) for _ in range(64)] != [b.pick(None) for _ in range(64)]


@pytest.mark.parametrize("name", ["rate_limit", " Server_Error ", "HANG"])
def test_parse_fault_kind_is_lenient_on_case_and_spaces(name: str) -> None:
    assert parse_fault_kind(name).value == name.strip().lower()


def test_parse_fault_kind_rejects_unknown_names() -> None:
    with pytest.raises(UnknownFaultError, match="broken_stream"):
        parse_fault_kind("explode")


def test_a_fault_for_one_model_waits_for_a_request_for_that_model() -> None:
    plan = _plan()
    plan.schedule(FaultKind.SERVER_ERROR, 1, model="gpt-4.1-mini")
    assert plan.pick(None, "gpt-4.1-nano") is None
    assert plan.pending == 1
    fault = plan.pick(None, "gpt-4.1-mini")
    assert fault is not None
    assert fault.kind is FaultKind.SERVER_ERROR
    assert plan.pending == 0
