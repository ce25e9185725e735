from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import BackendUnavailableError
from services.core.pricing import TokenUsage
from services.costs.adapters.sql import MIGRATION_1, _book, _migrate
from services.costs.adapters.sqlite import SQLITE, _connect, open_sqlite_store
from services.costs.domain import thresholds_to_fire
from services.costs.ports import (
    BudgetScope,
    CacheStatus,
    LedgerEntry,
    PendingEntry,
    ReportQuery,
    ScopeKind,
)

AT = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


async def test_database_is_durable_wal_and_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "costs.sqlite3"
    store = await open_sqlite_store(path)
    await store.close()
    reopened = await open_sqlite_store(path)
    await reopened.close()

    assert _query(path, "PRAGMA journal_mode") == [("wal",)]
    assert _query(path, "SELECT version FROM schema_migrations") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
    ]


async def test_connection_commits_with_full_sync(tmp_path: Path) -> None:
    store = await open_sqlite_store(tmp_path / "costs.sqlite3")

    # synchronous=FULL (2): every commit is fsynced before it is acknowledged.
    assert (
        await store._run(lambda c, _: c.execute("PRAGMA synchronous").fetchone()[0])
        == 2
    )
    await store.close()


async def test_a_version_1_ledger_is_upgraded_with_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "costs.sqlite3"
    connection = sqlite3.connect(path)
    for statement in MIGRATION_1:
        connection.execute(statement)
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at TEXT NOT NULL)"
    )
    connection.execute("INSERT INTO schema_migrations VALUES (1, 'then')")
    connection.execute(
        "INSERT INTO ledger_entries VALUES ('r1', 'acme', 'chat', 'u1', 'gpt-4.1', "
        "'', 'blue', 1000, 0, 500, 0, 'miss', 6000, 0, 0, 0, 'USD', ?, '2026-01-01')",
        ((AT - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),),
    )
    connection.commit()
    connection.close()

    store = await open_sqlite_store(path)
    summary = await store.summarize(ReportQuery("", None, AT + timedelta(days=1)))
    spent = await store.spent_micros(
        BudgetScope(ScopeKind.USER, "acme", user_id="u1"),
        (AT, AT + timedelta(seconds=1)),
    )
    await store.close()

    assert (summary.requests, summary.cost_micros, spent) == (1, 6000, 6000)
    assert _query(path, "SELECT version FROM schema_migrations") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
    ]


async def test_ping_answers(tmp_path: Path) -> None:
    store = await open_sqlite_store(tmp_path / "costs.sqlite3")

    assert await store.ping()
    await store.close()


async def test_unopenable_database_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError):
        await open_sqlite_store(tmp_path)  # a directory, not a database file


class _BlindToKnownIds:
    """A connection whose read of known ids sees none, as if another replica had
    stored them between that read and the insert."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: object = ()) -> object:
        if sql.startswith("SELECT request_id,") and "IN (" in sql:
            return iter(())
        return self._connection.execute(sql, params)  # type: ignore[arg-type]

    def cursor(self) -> sqlite3.Cursor:
        return self._connection.cursor()

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction


def _pending(request_id: str, cost_micros: int) -> PendingEntry:
    entry = LedgerEntry(
        request_id=request_id,
        tenant_id="acme",
        service="chat",
        user_id="u1",
        model="gpt-4.1",
        requested_model="",
        deployment="blue",
        usage=TokenUsage(1, 0, 1),
        batch=False,
        cache_status=CacheStatus.MISS,
        cost_micros=cost_micros,
        cache_saved_micros=0,
        routing_saved_micros=0,
        batch_saved_micros=0,
        currency_code="USD",
        occurred_at=AT,
        day="2026-01-01",
    )
    return PendingEntry(entry, "", (), {})


def test_a_batch_racing_another_writer_books_row_by_row(tmp_path: Path) -> None:
    connection = _connect(str(tmp_path / "costs.sqlite3"))
    _migrate(connection, SQLITE)
    _book(connection, SQLITE, [_pending("r1", 100)], thresholds_to_fire, AT)

    batch = _book(
        _BlindToKnownIds(connection),
        SQLITE,
        [_pending("r0", 5), _pending("r1", 999), _pending("r2", 7)],
        thresholds_to_fire,
        AT,
    )
    connection.close()

    assert [(b.entry.cost_micros, b.created) for b in batch.bookings] == [
        (5, True),
        (100, False),  # the first booking of r1 wins
        (7, True),
    ]
