from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import BackendUnavailableError
from services.costs.adapters.sqlite import SqliteLedgerStore
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    LedgerEntry,
    ReportQuery,
    ScopeKind,
)
from services.costs.pricing import TokenUsage

AT = datetime(2026, 1, 1, 12, 0, 0, 123_456, tzinfo=UTC)


def _entry(
    request_id: str, cost_micros: int = 100, tenant_id: str = "acme"
) -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id,
        tenant_id=tenant_id,
        service="chat",
        user_id="u1",
        model="gpt-4.1",
        requested_model="auto",
        deployment="blue",
        usage=TokenUsage(10, 4, 5),
        batch=True,
        cache_status=CacheStatus.SKIPPED,
        cost_micros=cost_micros,
        cache_saved_micros=1,
        routing_saved_micros=2,
        batch_saved_micros=3,
        currency_code="USD",
        occurred_at=AT,
        day="2026-01-01",
    )


def _schema_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
    connection.close()
    return [row[0] for row in rows]


async def test_records_survive_a_restart_and_migrations_run_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nested" / "dir" / "costs.sqlite3"
    store = await SqliteLedgerStore.open(path)
    first = await store.add_entry(_entry("r1"))
    await store.close()

    reopened = await SqliteLedgerStore.open(path)
    replay = await reopened.add_entry(_entry("r1", cost_micros=999))
    summary = await reopened.summarize(ReportQuery("", None, AT + timedelta(1)))
    await reopened.close()

    assert first.created
    assert not replay.created
    assert replay.entry == _entry("r1")  # every field, timestamp to the microsecond
    assert (summary.requests, summary.cost_micros) == (1, 100)
    assert _schema_versions(path) == [1]


async def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "costs.sqlite3"
    store = await SqliteLedgerStore.open(path)
    await store.close()

    with sqlite3.connect(path) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    connection.close()
    assert mode == "wal"


async def test_concurrent_duplicates_are_stored_once(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "costs.sqlite3")
    entries = [_entry(f"r{i % 20}", cost_micros=i % 20) for i in range(100)]

    bookings = await asyncio.gather(*(store.add_entry(entry) for entry in entries))
    summary = await store.summarize(ReportQuery("", None, AT + timedelta(1)))
    await store.close()

    assert sum(booking.created for booking in bookings) == 20
    assert all(
        booking.entry.cost_micros == int(booking.entry.request_id[1:])
        for booking in bookings
    )
    assert (summary.requests, summary.cost_micros) == (20, sum(range(20)))


async def test_summary_sums_savings_by_kind(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "costs.sqlite3")
    await store.add_entry(_entry("r1"))
    await store.add_entry(_entry("r2", tenant_id="globex"))

    summary = await store.summarize(ReportQuery("acme", AT, AT + timedelta(1)))
    await store.close()

    assert summary.requests == 1
    assert (
        summary.cache_saved_micros,
        summary.routing_saved_micros,
        summary.batch_saved_micros,
    ) == (1, 2, 3)
    assert summary.by_model[0].saved_micros == 6
    assert summary.by_model[0].cached_input_tokens == 4


async def test_spent_micros_follows_the_scope_and_range(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "costs.sqlite3")
    await store.add_entry(_entry("r1", cost_micros=100))
    await store.add_entry(_entry("r2", cost_micros=20, tenant_id="globex"))
    end = AT + timedelta(seconds=1)

    spent = {
        kind: await store.spent_micros(BudgetScope(kind, "acme", "chat", "u1"), AT, end)
        for kind in ScopeKind
    }
    after = await store.spent_micros(
        BudgetScope(ScopeKind.GLOBAL), end, end + timedelta(days=1)
    )
    await store.close()

    assert spent == {
        ScopeKind.GLOBAL: 120,
        ScopeKind.TENANT: 100,
        ScopeKind.SERVICE: 100,
        ScopeKind.USER: 100,
    }
    assert after == 0


async def test_budgets_are_upserted_per_scope_and_period(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "costs.sqlite3")
    scope = BudgetScope(ScopeKind.TENANT, tenant_id="acme")
    daily = Budget(scope, BudgetPeriod.DAY, 10, True, (50, 100), "")
    monthly = Budget(scope, BudgetPeriod.MONTH, 300, False, (90,), "gpt-4.1-nano")
    await store.put_budget(daily)
    await store.put_budget(monthly)
    await store.put_budget(Budget(scope, BudgetPeriod.DAY, 20, False, (75,), ""))

    budgets = await store.budgets_for([scope, BudgetScope(ScopeKind.GLOBAL)])
    await store.close()

    assert budgets == [Budget(scope, BudgetPeriod.DAY, 20, False, (75,), ""), monthly]


async def test_ping_answers(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "costs.sqlite3")

    assert await store.ping()
    await store.close()


async def test_unopenable_database_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError):
        await SqliteLedgerStore.open(tmp_path)  # a directory, not a database file
