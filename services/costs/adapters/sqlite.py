"""The ledger in SQLite: WAL journal, ``synchronous=FULL``, numbered migrations.

Every call runs on one dedicated worker thread that owns the only connection
(sqlite3 connections belong to the thread that made them), so the event loop never
blocks on disk and this process's statements never interleave. Writes take
``BEGIN IMMEDIATE``, so other processes on the same file are serialised too, and
``INSERT ... ON CONFLICT DO NOTHING`` books each request id exactly once.
``synchronous=FULL`` makes an acknowledged record survive a power loss.

The path ``:memory:`` gives a private in-memory database with the same behaviour,
which is the in-memory fake of :class:`~services.costs.ports.LedgerStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog

from services.core.errors import BackendUnavailableError
from services.costs.ports import (
    Booking,
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    LedgerEntry,
    LedgerSummary,
    ReportLine,
    ReportQuery,
    ScopeKind,
)
from services.costs.pricing import TokenUsage

MEMORY = ":memory:"
_BUSY_TIMEOUT_SECONDS = 5.0
_RETRY_AFTER_SECONDS = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

# Schema versions, applied in order, each once; never edit a released migration,
# append a new one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE ledger_entries (
            request_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            service TEXT NOT NULL,
            user_id TEXT NOT NULL,
            model TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            deployment TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            batch INTEGER NOT NULL,
            cache_status TEXT NOT NULL,
            cost_micros INTEGER NOT NULL,
            cache_saved_micros INTEGER NOT NULL,
            routing_saved_micros INTEGER NOT NULL,
            batch_saved_micros INTEGER NOT NULL,
            currency_code TEXT NOT NULL,
            occurred_at_us INTEGER NOT NULL,
            day TEXT NOT NULL
        )
        """,
        "CREATE INDEX ledger_entries_by_time ON ledger_entries (occurred_at_us)",
        "CREATE INDEX ledger_entries_by_tenant_time "
        "ON ledger_entries (tenant_id, occurred_at_us)",
        """
        CREATE TABLE budgets (
            scope_kind TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            service TEXT NOT NULL,
            user_id TEXT NOT NULL,
            period TEXT NOT NULL,
            limit_micros INTEGER NOT NULL,
            hard INTEGER NOT NULL,
            alert_thresholds_percent TEXT NOT NULL,
            downgrade_model TEXT NOT NULL,
            PRIMARY KEY (scope_kind, tenant_id, service, user_id, period)
        )
        """,
    ),
)

_ENTRY_COLUMNS = (
    "request_id, tenant_id, service, user_id, model, requested_model, deployment, "
    "input_tokens, cached_input_tokens, output_tokens, batch, cache_status, "
    "cost_micros, cache_saved_micros, routing_saved_micros, batch_saved_micros, "
    "currency_code, occurred_at_us, day"
)
_ENTRY_PLACEHOLDERS = ", ".join("?" * len(_ENTRY_COLUMNS.split(",")))
_BUDGET_COLUMNS = (
    "scope_kind, tenant_id, service, user_id, period, limit_micros, hard, "
    "alert_thresholds_percent, downgrade_model"
)
# Report dimensions: line attribute name to column; the names are fixed, never input.
_DIMENSIONS = {
    "by_model": "model",
    "by_service": "service",
    "by_user": "user_id",
    "by_tenant": "tenant_id",
    "by_day": "day",
}

_log = structlog.get_logger("tollgate.costs.sqlite")

T = TypeVar("T")


class SqliteLedgerStore:
    """A :class:`~services.costs.ports.LedgerStore` in one SQLite file.

    Create it with :meth:`open`; :meth:`close` it when done.
    """

    def __init__(
        self, executor: ThreadPoolExecutor, connection: sqlite3.Connection
    ) -> None:
        self._executor = executor
        self._connection = connection

    @classmethod
    async def open(cls, path: Path | str) -> SqliteLedgerStore:
        """Open (or create, with parent directories) the database and migrate it.

        Raises:
            BackendUnavailableError: the file cannot be created, opened or migrated.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costs-sqlite")
        try:
            connection = await _in_thread(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        _log.info("ledger_opened", path=str(path))
        return cls(executor, connection)

    async def add_entry(self, entry: LedgerEntry) -> Booking:
        """Store ``entry`` unless its request id is stored; see the port."""
        return await self._run(_add_entry, entry)

    async def summarize(self, query: ReportQuery) -> LedgerSummary:
        """Aggregate the selected entries with SQL, in one read transaction."""
        return await self._run(_summarize, query)

    async def spent_micros(
        self, scope: BudgetScope, start: datetime, end: datetime
    ) -> int:
        """Cost booked in ``scope`` with ``start <= occurred_at < end``."""
        return await self._run(_spent_micros, scope, start, end)

    async def put_budget(self, budget: Budget) -> None:
        """Create or replace the budget of its scope and period."""
        await self._run(_put_budget, budget)

    async def budgets_for(self, scopes: Sequence[BudgetScope]) -> list[Budget]:
        """Every budget set on one of ``scopes``."""
        return await self._run(_budgets_for, scopes)

    async def ping(self) -> bool:
        """Run ``SELECT 1``; raises BackendUnavailableError when it fails."""
        return await self._run(_ping)

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        await self._run(sqlite3.Connection.close)
        self._executor.shutdown(wait=True)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        # Any: each work function takes its own arguments after the connection.
        return await _in_thread(self._executor, work, self._connection, *args)


async def _in_thread(
    executor: ThreadPoolExecutor, work: Callable[..., T], *args: Any
) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, work, *args)
    except (sqlite3.Error, OSError) as error:
        _log.error(
            "ledger_backend_error", error_type=type(error).__name__, error=str(error)
        )
        raise BackendUnavailableError(
            "the ledger database is unavailable", retry_after=_RETRY_AFTER_SECONDS
        ) from error


def _connect(path: str) -> sqlite3.Connection:
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: transactions are explicit, see _transaction.
    connection = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    with _transaction(connection):
        applied = {
            row[0]
            for row in connection.execute("SELECT version FROM schema_migrations")
        }
        for version, statements in enumerate(_MIGRATIONS, start=1):
            if version in applied:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, applied_at) "
                "VALUES (?, CURRENT_TIMESTAMP)",
                (version,),
            )
            _log.info("ledger_migration_applied", version=version)


@contextlib.contextmanager
def _transaction(
    connection: sqlite3.Connection, mode: str = "IMMEDIATE"
) -> Iterator[None]:
    connection.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        # SQLite rolls back by itself after some errors (disk full, I/O).
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _add_entry(connection: sqlite3.Connection, entry: LedgerEntry) -> Booking:
    with _transaction(connection):
        inserted = connection.execute(
            f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) "
            f"VALUES ({_ENTRY_PLACEHOLDERS}) ON CONFLICT (request_id) DO NOTHING",
            _encode_entry(entry),
        ).rowcount
        if inserted == 1:
            return Booking(entry=entry, created=True)
        row = connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE request_id = ?",
            (entry.request_id,),
        ).fetchone()
    return Booking(entry=_decode_entry(row), created=False)


def _summarize(connection: sqlite3.Connection, query: ReportQuery) -> LedgerSummary:
    conditions = ["occurred_at_us < ?"]
    params: list[object] = [_to_micros(query.end)]
    if query.start is not None:
        conditions.append("occurred_at_us >= ?")
        params.append(_to_micros(query.start))
    if query.tenant_id:
        conditions.append("tenant_id = ?")
        params.append(query.tenant_id)
    where = " AND ".join(conditions)
    # One read transaction: the totals and every line see the same snapshot.
    with _transaction(connection, "DEFERRED"):
        totals = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost_micros), 0), "
            "COALESCE(SUM(cache_saved_micros), 0), "
            "COALESCE(SUM(routing_saved_micros), 0), "
            "COALESCE(SUM(batch_saved_micros), 0) "
            f"FROM ledger_entries WHERE {where}",
            params,
        ).fetchone()
        lines = {
            name: tuple(
                ReportLine(*row)
                for row in connection.execute(
                    f"SELECT {column}, COUNT(*), SUM(cost_micros), "
                    "SUM(cache_saved_micros + routing_saved_micros "
                    "+ batch_saved_micros), "
                    "SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens) "
                    f"FROM ledger_entries WHERE {where} "
                    f"GROUP BY {column} ORDER BY {column}",
                    params,
                )
            )
            for name, column in _DIMENSIONS.items()
        }
    requests, cost, cache_saved, routing_saved, batch_saved = totals
    return LedgerSummary(
        requests=requests,
        cost_micros=cost,
        cache_saved_micros=cache_saved,
        routing_saved_micros=routing_saved,
        batch_saved_micros=batch_saved,
        **lines,
    )


def _spent_micros(
    connection: sqlite3.Connection,
    scope: BudgetScope,
    start: datetime,
    end: datetime,
) -> int:
    scope_condition, params = _scope_filter(scope)
    row = connection.execute(
        "SELECT COALESCE(SUM(cost_micros), 0) FROM ledger_entries "
        f"WHERE occurred_at_us >= ? AND occurred_at_us < ? AND {scope_condition}",
        (_to_micros(start), _to_micros(end), *params),
    ).fetchone()
    return int(row[0])


def _scope_filter(scope: BudgetScope) -> tuple[str, tuple[str, ...]]:
    match scope.kind:
        case ScopeKind.GLOBAL:
            return "1 = 1", ()
        case ScopeKind.TENANT:
            return "tenant_id = ?", (scope.tenant_id,)
        case ScopeKind.SERVICE:
            return "tenant_id = ? AND service = ?", (scope.tenant_id, scope.service)
        case ScopeKind.USER:
            return "tenant_id = ? AND user_id = ?", (scope.tenant_id, scope.user_id)


def _put_budget(connection: sqlite3.Connection, budget: Budget) -> None:
    scope = budget.scope
    with _transaction(connection):
        connection.execute(
            f"INSERT INTO budgets ({_BUDGET_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (scope_kind, tenant_id, service, user_id, period) DO UPDATE "
            "SET limit_micros = excluded.limit_micros, hard = excluded.hard, "
            "alert_thresholds_percent = excluded.alert_thresholds_percent, "
            "downgrade_model = excluded.downgrade_model",
            (
                scope.kind.value,
                scope.tenant_id,
                scope.service,
                scope.user_id,
                budget.period.value,
                budget.limit_micros,
                int(budget.hard),
                json.dumps(list(budget.alert_thresholds_percent)),
                budget.downgrade_model,
            ),
        )


def _budgets_for(
    connection: sqlite3.Connection, scopes: Sequence[BudgetScope]
) -> list[Budget]:
    budgets: list[Budget] = []
    for scope in scopes:
        rows = connection.execute(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope_kind = ? "
            "AND tenant_id = ? AND service = ? AND user_id = ? ORDER BY period",
            (scope.kind.value, scope.tenant_id, scope.service, scope.user_id),
        )
        budgets.extend(_decode_budget(row) for row in rows)
    return budgets


def _ping(connection: sqlite3.Connection) -> bool:
    return bool(connection.execute("SELECT 1").fetchone()[0] == 1)


def _encode_entry(entry: LedgerEntry) -> tuple[object, ...]:
    return (
        entry.request_id,
        entry.tenant_id,
        entry.service,
        entry.user_id,
        entry.model,
        entry.requested_model,
        entry.deployment,
        entry.usage.input_tokens,
        entry.usage.cached_input_tokens,
        entry.usage.output_tokens,
        int(entry.batch),
        entry.cache_status.value,
        entry.cost_micros,
        entry.cache_saved_micros,
        entry.routing_saved_micros,
        entry.batch_saved_micros,
        entry.currency_code,
        _to_micros(entry.occurred_at),
        entry.day,
    )


def _decode_entry(row: tuple[Any, ...]) -> LedgerEntry:
    (
        request_id,
        tenant_id,
        service,
        user_id,
        model,
        requested_model,
        deployment,
        input_tokens,
        cached_input_tokens,
        output_tokens,
        batch,
        cache_status,
        cost_micros,
        cache_saved_micros,
        routing_saved_micros,
        batch_saved_micros,
        currency_code,
        occurred_at_us,
        day,
    ) = row
    return LedgerEntry(
        request_id=request_id,
        tenant_id=tenant_id,
        service=service,
        user_id=user_id,
        model=model,
        requested_model=requested_model,
        deployment=deployment,
        usage=TokenUsage(input_tokens, cached_input_tokens, output_tokens),
        batch=bool(batch),
        cache_status=CacheStatus(cache_status),
        cost_micros=cost_micros,
        cache_saved_micros=cache_saved_micros,
        routing_saved_micros=routing_saved_micros,
        batch_saved_micros=batch_saved_micros,
        currency_code=currency_code,
        occurred_at=_EPOCH + occurred_at_us * _ONE_MICROSECOND,
        day=day,
    )


def _decode_budget(row: tuple[Any, ...]) -> Budget:
    (
        scope_kind,
        tenant_id,
        service,
        user_id,
        period,
        limit_micros,
        hard,
        thresholds,
        downgrade_model,
    ) = row
    return Budget(
        scope=BudgetScope(ScopeKind(scope_kind), tenant_id, service, user_id),
        period=BudgetPeriod(period),
        limit_micros=limit_micros,
        hard=bool(hard),
        alert_thresholds_percent=tuple(json.loads(thresholds)),
        downgrade_model=downgrade_model,
    )


def _to_micros(at: datetime) -> int:
    """Exact integer microseconds since the Unix epoch (no float rounding)."""
    return (at - _EPOCH) // _ONE_MICROSECOND
