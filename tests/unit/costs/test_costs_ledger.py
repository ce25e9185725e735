from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.core.clock import FakeClock
from services.core.errors import BackendUnavailableError
from services.core.pricing import TokenUsage, UnknownModelError, load_pricing
from services.costs.adapters.sql import SqlLedgerStore
from services.costs.adapters.sqlite import MEMORY, open_sqlite_store
from services.costs.domain import (
    DEFAULT_ALERT_THRESHOLDS_PERCENT,
    BudgetDecision,
    BudgetRequest,
    BudgetVerdict,
    Caller,
    CostLedger,
    UsageRecord,
    divide_half_up,
    period_bounds,
    thresholds_to_fire,
)
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    ReportLine,
    ScopeKind,
)

# FakeClock's default start.
START = datetime(2026, 1, 1, tzinfo=UTC)
LATER = START + timedelta(days=1)
ACME = Caller(tenant_id="acme", service="chat", user_id="u1")


TTL = timedelta(minutes=15)


@pytest.fixture
async def store() -> AsyncIterator[SqlLedgerStore]:
    store = await open_sqlite_store(MEMORY)
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ledger(store: SqlLedgerStore, clock: FakeClock) -> AsyncIterator[CostLedger]:
    ledger = CostLedger(
        store, load_pricing(), clock, ZoneInfo("UTC"), reservation_ttl=TTL
    )
    yield ledger
    await ledger.close()


async def _check(
    ledger: CostLedger,
    input_tokens: int = 1000,
    max_output_tokens: int = 500,
    *,
    model: str = "gpt-4.1",
    caller: Caller = ACME,
    request_id: str = "check",
) -> BudgetVerdict:
    return await ledger.check_budget(
        BudgetRequest(request_id, caller, model, input_tokens, max_output_tokens)
    )


def _record(
    request_id: str,
    *,
    model: str = "gpt-4.1",
    input_tokens: int = 1000,
    cached_input_tokens: int = 0,
    output_tokens: int = 500,
    caller: Caller = ACME,
    requested_model: str = "",
    batch: bool = False,
    cache_status: CacheStatus = CacheStatus.MISS,
    occurred_at: datetime | None = None,
    reservation_id: str = "",
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        caller=caller,
        model=model,
        requested_model=requested_model,
        deployment="blue",
        usage=TokenUsage(input_tokens, cached_input_tokens, output_tokens),
        batch=batch,
        cache_status=cache_status,
        occurred_at=occurred_at,
        reservation_id=reservation_id,
    )


async def test_record_books_the_cost(ledger: CostLedger) -> None:
    result = await ledger.record(_record("r1"))

    assert (result.cost_micros, result.saved_micros) == (6000, 0)
    assert result.currency_code == "USD"
    assert not result.duplicate


async def test_replay_returns_the_original_and_books_nothing(
    ledger: CostLedger,
) -> None:
    first = await ledger.record(_record("r1"))
    replay = await ledger.record(
        _record("r1", output_tokens=9999, model="gpt-4.1-nano")
    )

    assert replay == dataclasses.replace(first, duplicate=True)
    report = await ledger.report("", None, LATER)
    assert (report.summary.requests, report.summary.cost_micros) == (1, 6000)


async def test_cache_hit_costs_nothing_and_saves_the_call(ledger: CostLedger) -> None:
    exact = await ledger.record(_record("r1", cache_status=CacheStatus.EXACT))
    semantic = await ledger.record(_record("r2", cache_status=CacheStatus.SEMANTIC))

    assert (exact.cost_micros, exact.saved_micros) == (0, 6000)
    assert (semantic.cost_micros, semantic.saved_micros) == (0, 6000)
    report = await ledger.report("", None, LATER)
    assert report.summary.cache_saved_micros == 12_000
    assert report.summary.batch_saved_micros == 0


async def test_batch_saves_the_discount(ledger: CostLedger) -> None:
    result = await ledger.record(_record("r1", batch=True))

    assert (result.cost_micros, result.saved_micros) == (3000, 3000)
    report = await ledger.report("", None, LATER)
    assert report.summary.batch_saved_micros == 3000


async def test_routing_to_a_cheaper_model_saves_the_difference(
    ledger: CostLedger,
) -> None:
    result = await ledger.record(
        _record("r1", model="gpt-4.1-mini", requested_model="gpt-4.1")
    )

    # gpt-4.1-mini: 1000 x 0.4 + 500 x 1.6 = 1200; gpt-4.1 would cost 6000.
    assert (result.cost_micros, result.saved_micros) == (1200, 4800)
    report = await ledger.report("", None, LATER)
    assert report.summary.routing_saved_micros == 4800


@pytest.mark.parametrize("requested", ["auto", "gpt-4.1-nano", "gpt-4.1-mini", ""])
async def test_no_routing_saving_without_a_dearer_known_request(
    ledger: CostLedger, requested: str
) -> None:
    result = await ledger.record(
        _record("r1", model="gpt-4.1-mini", requested_model=requested)
    )

    assert (result.cost_micros, result.saved_micros) == (1200, 0)


async def test_unknown_model_books_nothing(ledger: CostLedger) -> None:
    with pytest.raises(UnknownModelError):
        await ledger.record(_record("r1", model="gpt-9"))

    report = await ledger.report("", None, LATER)
    assert report.summary.requests == 0


async def test_report_aggregates_by_label(ledger: CostLedger) -> None:
    day_one = START + timedelta(hours=10)
    day_two = START + timedelta(days=1, hours=10)
    globex = Caller(tenant_id="globex", service="batch", user_id="")
    await ledger.record(_record("a", occurred_at=day_one))  # 6000
    await ledger.record(
        _record(
            "b",
            model="gpt-4.1-nano",
            input_tokens=1,
            output_tokens=0,
            occurred_at=day_two,
        )
    )  # 1
    await ledger.record(
        _record("c", caller=globex, cache_status=CacheStatus.EXACT, occurred_at=day_two)
    )  # 0, saves 6000

    report = await ledger.report("", START, START + timedelta(days=2))

    summary = report.summary
    assert (summary.requests, summary.cost_micros) == (3, 6001)
    assert report.average_cost_micros == 2000  # 6001 / 3 = 2000.33
    assert summary.by_model == (
        ReportLine("gpt-4.1", 2, 6000, 6000, 2000, 0, 1000),
        ReportLine("gpt-4.1-nano", 1, 1, 0, 1, 0, 0),
    )
    assert summary.by_tenant == (
        ReportLine("acme", 2, 6001, 0, 1001, 0, 500),
        ReportLine("globex", 1, 0, 6000, 1000, 0, 500),
    )
    assert [(line.key, line.requests) for line in summary.by_service] == [
        ("batch", 1),
        ("chat", 2),
    ]
    assert [(line.key, line.requests) for line in summary.by_user] == [
        ("", 1),
        ("u1", 2),
    ]
    assert [(line.key, line.cost_micros) for line in summary.by_day] == [
        ("2026-01-01", 6000),
        ("2026-01-02", 1),
    ]


async def test_report_filters_by_tenant_and_half_open_range(
    ledger: CostLedger, clock: FakeClock
) -> None:
    await ledger.record(_record("at-start"))  # occurred_at from the clock: START
    clock.advance(3600)
    await ledger.record(_record("an-hour-later"))
    await ledger.record(_record("other-tenant", caller=Caller("globex", "chat", "u2")))
    clock.advance(1)

    first_hour = await ledger.report("acme", START, START + timedelta(hours=1))
    acme_all = await ledger.report("acme", None, None)
    everyone = await ledger.report("", None, None)

    assert first_hour.summary.requests == 1
    assert acme_all.summary.requests == 2
    assert everyone.summary.requests == 3
    assert [line.key for line in everyone.summary.by_tenant] == ["acme", "globex"]


async def test_report_end_defaults_to_now(ledger: CostLedger) -> None:
    await ledger.record(_record("future", occurred_at=START + timedelta(seconds=1)))

    assert (await ledger.report("", None, None)).summary.requests == 0
    assert (
        await ledger.report("", None, START + timedelta(seconds=2))
    ).summary.requests == 1


async def test_empty_report(ledger: CostLedger) -> None:
    report = await ledger.report("", None, None)

    assert (report.summary.requests, report.average_cost_micros) == (0, 0)
    assert report.summary.by_model == ()
    assert report.currency_code == "USD"


async def test_report_days_are_in_the_ledger_zone(
    store: SqlLedgerStore, clock: FakeClock
) -> None:
    ledger = CostLedger(store, load_pricing(), clock, ZoneInfo("America/New_York"))
    await ledger.record(_record("r1", occurred_at=START + timedelta(hours=3)))

    report = await ledger.report("", None, START + timedelta(days=1))

    assert [line.key for line in report.summary.by_day] == ["2025-12-31"]


@pytest.mark.parametrize(
    ("total", "count", "average"),
    [(0, 0, 0), (3, 2, 2), (5, 2, 3), (4, 3, 1), (5, 3, 2), (7, 1, 7)],
)
def test_average_rounds_half_up(total: int, count: int, average: int) -> None:
    assert divide_half_up(total, count) == average


def test_periods_are_calendar_days_and_months_in_the_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    at = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)  # 2026-01-01 00:30 in Paris

    day = period_bounds(BudgetPeriod.DAY, at, paris)
    month = period_bounds(BudgetPeriod.MONTH, at, paris)

    assert day == (
        datetime(2025, 12, 31, 23, tzinfo=UTC),
        datetime(2026, 1, 1, 23, tzinfo=UTC),
    )
    assert month == (
        datetime(2025, 12, 31, 23, tzinfo=UTC),
        datetime(2026, 1, 31, 23, tzinfo=UTC),
    )


def test_a_day_across_a_clock_change_is_23_hours() -> None:
    paris = ZoneInfo("Europe/Paris")
    start, end = period_bounds(
        BudgetPeriod.DAY, datetime(2026, 3, 29, 12, tzinfo=UTC), paris
    )

    assert end - start == timedelta(hours=23)


def _budget(
    kind: ScopeKind = ScopeKind.TENANT,
    *,
    limit_micros: int = 10_000,
    hard: bool = True,
    period: BudgetPeriod = BudgetPeriod.DAY,
    thresholds: tuple[int, ...] = (),
    downgrade_model: str = "",
) -> Budget:
    scopes = {
        ScopeKind.GLOBAL: BudgetScope(ScopeKind.GLOBAL),
        ScopeKind.TENANT: BudgetScope(ScopeKind.TENANT, tenant_id="acme"),
        ScopeKind.SERVICE: BudgetScope(ScopeKind.SERVICE, "acme", service="chat"),
        ScopeKind.USER: BudgetScope(ScopeKind.USER, "acme", user_id="u1"),
    }
    return Budget(
        scope=scopes[kind],
        period=period,
        limit_micros=limit_micros,
        hard=hard,
        alert_thresholds_percent=thresholds,
        downgrade_model=downgrade_model,
    )


async def test_check_without_budgets_allows_and_reserves_nothing(
    ledger: CostLedger,
) -> None:
    verdict = await _check(ledger)

    assert verdict.decision is BudgetDecision.ALLOW
    assert verdict.worst_case_cost_micros == 6000
    assert verdict.remaining_micros == 0
    assert verdict.reservation_id == ""


@pytest.fixture
async def on_file(
    tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Path, CostLedger]]:
    """A ledger on a SQLite file, so that a test can break the file under it."""
    path = tmp_path / "costs.sqlite3"
    store = await open_sqlite_store(path)
    ledger = CostLedger(store, load_pricing(), clock, ZoneInfo("UTC"))
    yield path, ledger
    await ledger.close()
    await store.close()


async def test_once_budgeted_scopes_are_read_a_caller_without_one_skips_the_store(
    on_file: tuple[Path, CostLedger],
) -> None:
    path, ledger = on_file
    await ledger.set_budget(_budget(ScopeKind.USER))  # u1's, not u2's
    before_read = await _check(ledger, caller=dataclasses.replace(ACME, user_id="u2"))
    await ledger.refresh_budgeted_scopes()
    # Without the ledger tables, any check that reads the store fails.
    with sqlite3.connect(path) as outside:
        outside.execute("DROP TABLE budget_reservations")

    unbudgeted = await _check(ledger, caller=dataclasses.replace(ACME, user_id="u2"))

    assert before_read.store_checked
    assert not unbudgeted.store_checked
    assert unbudgeted == dataclasses.replace(before_read, store_checked=False)
    with pytest.raises(BackendUnavailableError):
        await _check(ledger)  # u1 holds a budget: the store decides


async def test_only_a_tenant_no_budget_covers_is_declared_unbudgeted(
    store: SqlLedgerStore, clock: FakeClock
) -> None:
    refresh = timedelta(seconds=7)
    ledger = CostLedger(
        store, load_pricing(), clock, ZoneInfo("UTC"), budget_refresh=refresh
    )
    await ledger.set_budget(_budget(ScopeKind.USER))  # acme's u1
    await ledger.refresh_budgeted_scopes()
    other_user = dataclasses.replace(ACME, user_id="u2")
    other_tenant = Caller(tenant_id="globex", service="chat", user_id="u1")

    in_acme = await _check(ledger, caller=other_user)
    elsewhere = await _check(ledger, caller=other_tenant)
    await ledger.set_budget(_budget(ScopeKind.GLOBAL))
    after_a_global_budget = await _check(ledger, caller=other_tenant)

    assert (in_acme.store_checked, in_acme.tenant_unbudgeted_for) == (False, None)
    assert (elsewhere.store_checked, elsewhere.tenant_unbudgeted_for) == (
        False,
        refresh,
    )
    assert after_a_global_budget.store_checked
    assert after_a_global_budget.tenant_unbudgeted_for is None
    await ledger.close()


async def test_a_budget_set_here_is_enforced_at_once(ledger: CostLedger) -> None:
    await ledger.refresh_budgeted_scopes()
    allowed = await _check(ledger)
    await ledger.set_budget(_budget(ScopeKind.TENANT, limit_micros=1000))

    denied = await _check(ledger)

    assert not allowed.store_checked
    assert denied.decision is BudgetDecision.DENY
    assert denied.store_checked


async def test_a_budget_set_through_another_replica_is_enforced_from_the_next_read(
    store: SqlLedgerStore, clock: FakeClock
) -> None:
    here, there = (
        CostLedger(store, load_pricing(), clock, ZoneInfo("UTC")) for _ in range(2)
    )
    await here.refresh_budgeted_scopes()
    await there.set_budget(_budget(ScopeKind.SERVICE, limit_micros=1000))

    unaware = await _check(here)
    await here.refresh_budgeted_scopes()
    denied = await _check(here)

    assert (unaware.decision, unaware.store_checked) == (BudgetDecision.ALLOW, False)
    assert (denied.decision, denied.store_checked) == (BudgetDecision.DENY, True)
    assert here.budgeted_scope_count == 1
    await here.close()
    await there.close()


async def test_after_a_failed_read_every_check_goes_to_the_store(
    on_file: tuple[Path, CostLedger],
) -> None:
    path, ledger = on_file
    await ledger.refresh_budgeted_scopes()
    with sqlite3.connect(path) as outside:
        outside.execute("DROP TABLE budgets")

    await ledger.refresh_budgeted_scopes()

    with pytest.raises(BackendUnavailableError):
        await _check(ledger)


@pytest.mark.parametrize(
    "kind", [ScopeKind.GLOBAL, ScopeKind.TENANT, ScopeKind.SERVICE, ScopeKind.USER]
)
async def test_reservations_of_any_caller_scope_count_until_the_limit(
    ledger: CostLedger, clock: FakeClock, kind: ScopeKind
) -> None:
    await ledger.set_budget(_budget(kind))
    await ledger.record(_record("spent"))  # 6000 of 10 000

    first = await _check(ledger, 500, 250)  # 3000: 9000 with the spend
    second = await _check(ledger, 500, 250)  # 3000 more would be 12 000
    small = await _check(ledger, 100, 100)  # 1000: exactly 10 000

    assert first.decision is BudgetDecision.ALLOW
    assert first.reservation_id.startswith("rsv_")
    assert first.reservation_expires_at == START + TTL
    assert first.remaining_micros == 1000
    assert second.decision is BudgetDecision.DENY
    assert second.reservation_id == ""
    assert second.exceeded_budget is not None
    assert second.exceeded_budget.scope.kind is kind
    assert second.remaining_micros == 1000
    assert second.resets_at == START + timedelta(days=1)
    assert (small.decision, small.remaining_micros) == (BudgetDecision.ALLOW, 0)


async def test_record_settles_the_reservation_at_actual_cost(
    ledger: CostLedger,
) -> None:
    await ledger.set_budget(_budget())
    reserved = await _check(ledger, 1000, 500)  # 6000 reserved of 10 000
    denied = await _check(ledger, 1000, 500)

    result = await ledger.record(
        _record("r1", output_tokens=100, reservation_id=reserved.reservation_id)
    )  # actual 2800
    replay = await ledger.record(
        _record("r1", output_tokens=100, reservation_id=reserved.reservation_id)
    )
    after = await _check(ledger, 1000, 500)

    assert denied.decision is BudgetDecision.DENY
    assert (result.cost_micros, result.reservation_settled) == (2800, True)
    assert (replay.duplicate, replay.reservation_settled) == (True, False)
    assert after.decision is BudgetDecision.ALLOW  # 2800 + 6000 fit
    assert after.remaining_micros == 1200


async def test_unsettled_reservations_expire(
    ledger: CostLedger, clock: FakeClock
) -> None:
    await ledger.set_budget(_budget())
    reserved = await _check(ledger)
    clock.advance(TTL.total_seconds() - 1)
    still = await _check(ledger)
    clock.advance(1)
    expired = await _check(ledger)
    late = await ledger.record(_record("r1", reservation_id=reserved.reservation_id))

    assert still.decision is BudgetDecision.DENY
    assert expired.decision is BudgetDecision.ALLOW
    assert expired.remaining_micros == 4000  # only the new reservation counts
    assert not late.reservation_settled


async def test_over_budget_downgrades_to_a_cheaper_model_that_fits(
    ledger: CostLedger,
) -> None:
    await ledger.set_budget(_budget(limit_micros=8000, downgrade_model="gpt-4.1-mini"))
    await ledger.record(_record("spent"))  # 6000 of 8000

    verdict = await _check(ledger)  # 6000 at gpt-4.1, 1200 at gpt-4.1-mini
    too_big = await _check(ledger, 10_000, 5000)  # 12 000 at gpt-4.1-mini

    assert verdict.decision is BudgetDecision.DOWNGRADE
    assert verdict.model == "gpt-4.1-mini"
    assert verdict.worst_case_cost_micros == 1200
    assert verdict.reservation_id
    assert verdict.remaining_micros == 800
    assert too_big.decision is BudgetDecision.DENY


async def test_soft_budget_and_other_scopes_do_not_deny(ledger: CostLedger) -> None:
    await ledger.set_budget(_budget(limit_micros=1, hard=False))
    await ledger.set_budget(
        dataclasses.replace(
            _budget(),
            scope=BudgetScope(ScopeKind.TENANT, tenant_id="globex"),
            limit_micros=1,
        )
    )

    verdict = await _check(ledger)

    assert verdict.decision is BudgetDecision.ALLOW
    assert verdict.remaining_micros == 0
    assert verdict.reservation_id == ""  # no hard budget: nothing to hold


async def test_spend_of_a_past_period_does_not_count(
    ledger: CostLedger, clock: FakeClock
) -> None:
    await ledger.set_budget(_budget())
    await ledger.record(_record("yesterday"))
    clock.advance(86_400)

    verdict = await _check(ledger)

    assert verdict.decision is BudgetDecision.ALLOW
    assert verdict.remaining_micros == 4000


async def test_day_rolls_over_at_local_midnight(
    store: SqlLedgerStore, clock: FakeClock
) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9: START is 09:00 there
    ledger = CostLedger(store, load_pricing(), clock, tokyo)
    await ledger.set_budget(_budget())
    clock.advance(14.5 * 3600)  # 23:30 in Tokyo
    await ledger.record(_record("late"))

    before = await _check(ledger)
    clock.advance(1800)  # 00:00 in Tokyo, 15:00 UTC
    after = await _check(ledger)
    await ledger.close()

    assert before.decision is BudgetDecision.DENY
    assert before.resets_at == START + timedelta(hours=15)
    assert after.decision is BudgetDecision.ALLOW


@pytest.mark.parametrize(
    ("spent", "fired", "expected"),
    [
        (4999, frozenset(), []),
        (5000, frozenset(), [50]),
        (9000, frozenset({50}), [75, 90]),
        (20_000, frozenset({50, 75, 90, 100}), []),
    ],
)
def test_thresholds_fire_once_reached(
    spent: int, fired: frozenset[int], expected: list[int]
) -> None:
    budget = _budget(thresholds=DEFAULT_ALERT_THRESHOLDS_PERCENT)

    assert thresholds_to_fire(budget, spent, fired) == expected


async def test_alerts_fire_once_per_threshold_and_period(
    ledger: CostLedger, clock: FakeClock
) -> None:
    await ledger.set_budget(_budget(hard=False))  # 10 000 a day
    with ledger.watch_alerts("acme") as watch, ledger.watch_alerts("globex") as other:
        await ledger.record(_record("a", output_tokens=250))  # 4000: none
        await ledger.record(_record("b", output_tokens=250))  # 8000: 50, 75
        await ledger.record(_record("c", output_tokens=0))  # 10 000: 90, 100
        await ledger.record(_record("d"))  # 16 000: nothing new
        clock.advance(86_400)
        await ledger.record(_record("e"))  # a new day: 50 again
        live = [await watch.next() for _ in range(5)]
        with pytest.raises(TimeoutError):  # nothing queued for another tenant
            await asyncio.wait_for(other.next(), timeout=0)

    listed = await ledger.list_alerts("", None)
    assert [(a.threshold_percent, a.spent_micros) for a in listed] == [
        (50, 8000),
        (75, 8000),
        (90, 10_000),
        (100, 10_000),
        (50, 6000),
    ]
    assert live == listed
    assert listed[-1].period_start == START + timedelta(days=1)
    assert listed[0].fired_at == START
    assert await ledger.list_alerts("", START + timedelta(days=1)) == listed[-1:]
    assert await ledger.list_alerts("globex", None) == []


async def test_set_budget_replaces_and_reports_spend(ledger: CostLedger) -> None:
    await ledger.record(_record("spent"))
    await ledger.set_budget(_budget(limit_micros=1))

    status = await ledger.set_budget(
        _budget(limit_micros=50_000, period=BudgetPeriod.DAY, thresholds=(90, 50, 90))
    )
    verdict = await _check(ledger)

    assert status.spent_micros == 6000
    assert status.budget.limit_micros == 50_000
    assert status.budget.alert_thresholds_percent == (50, 90)
    assert verdict.decision is BudgetDecision.ALLOW
    assert verdict.remaining_micros == 38_000


async def test_set_budget_defaults_thresholds_and_checks_downgrade_model(
    ledger: CostLedger,
) -> None:
    status = await ledger.set_budget(_budget())

    assert status.budget.alert_thresholds_percent == DEFAULT_ALERT_THRESHOLDS_PERCENT
    with pytest.raises(UnknownModelError):
        await ledger.set_budget(dataclasses.replace(_budget(), downgrade_model="gpt-9"))
