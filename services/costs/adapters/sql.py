"""The ledger in SQL, shared by the SQLite and Postgres adapters.

One schema, one set of statements and one implementation of every transaction,
written against the DB-API connection both ``sqlite3`` and ``psycopg`` (sync)
provide; a :class:`Dialect` holds the few differences (how a write transaction
begins, how budget rows are locked, placeholders, migrations, errors).

Each connection belongs to one worker thread: the event loop never blocks on the
database, and one connection's statements never interleave. Statements are
written with ``?`` placeholders; the Postgres dialect turns them into ``%s``.

Alert deliveries form an outbox: the transaction that fires an alert queues it for
each webhook endpoint that wants it, so a committed alert is never without its
deliveries. Dispatchers claim due deliveries with a lease, in a write transaction
(``BEGIN IMMEDIATE`` in SQLite; ``FOR UPDATE SKIP LOCKED`` in Postgres, so that
replicas claim disjoint rows without waiting on each other), post them with no
transaction open, then log the attempt only if they still hold the lease.

Atomicity of budgets: a reservation and an alert evaluation both read the budget
rows of their scopes first, locked (``BEGIN IMMEDIATE`` in SQLite locks the whole
database; ``SELECT ... FOR UPDATE`` in Postgres, in a fixed order so that two
transactions never wait on each other), then read spend and reservations in one
statement. Two decisions on a shared budget therefore never overlap, and each sees
every reservation and booking committed before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from services.core.errors import BackendUnavailableError
from services.core.pricing import TokenUsage
from services.costs.ports import (
    Alert,
    AlertDelivery,
    AlertRoutes,
    AlertRule,
    AttemptOutcome,
    Booking,
    BookingBatch,
    Budget,
    BudgetPeriod,
    BudgetScope,
    BudgetUsage,
    CacheStatus,
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryQuery,
    DeliveryState,
    LedgerEntry,
    LedgerSummary,
    PendingEntry,
    Period,
    PlanT,
    ReportLine,
    ReportQuery,
    ReservationRequest,
    ScopeKind,
    alert_id,
    no_routes,
)

# Any: a DB-API connection, sqlite3.Connection or psycopg.Connection, whose
# libraries type execute() differently.
Connection = Any

T = TypeVar("T")

_RETRY_AFTER_SECONDS = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

# Schema version 1, as released for SQLite (INTEGER is 64-bit there). Never edit a
# released migration: append a new one.
MIGRATION_1 = (
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
)

# Schema version 2: reservations, alerts, and indexes for service and user spend.
MIGRATION_2 = (
    "CREATE INDEX ledger_entries_by_service_time "
    "ON ledger_entries (tenant_id, service, occurred_at_us)",
    "CREATE INDEX ledger_entries_by_user_time "
    "ON ledger_entries (tenant_id, user_id, occurred_at_us)",
    """
    CREATE TABLE budget_reservations (
        reservation_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        service TEXT NOT NULL,
        user_id TEXT NOT NULL,
        model TEXT NOT NULL,
        amount_micros BIGINT NOT NULL,
        reserved_at_us BIGINT NOT NULL,
        expires_at_us BIGINT NOT NULL
    )
    """,
    "CREATE INDEX budget_reservations_by_tenant_time "
    "ON budget_reservations (tenant_id, reserved_at_us)",
    "CREATE INDEX budget_reservations_by_expiry ON budget_reservations (expires_at_us)",
    """
    CREATE TABLE budget_alerts (
        alert_id TEXT PRIMARY KEY,
        scope_kind TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        service TEXT NOT NULL,
        user_id TEXT NOT NULL,
        period TEXT NOT NULL,
        limit_micros BIGINT NOT NULL,
        hard INTEGER NOT NULL,
        alert_thresholds_percent TEXT NOT NULL,
        downgrade_model TEXT NOT NULL,
        period_start_us BIGINT NOT NULL,
        threshold_percent INTEGER NOT NULL,
        spent_micros BIGINT NOT NULL,
        fired_at_us BIGINT NOT NULL
    )
    """,
    "CREATE INDEX budget_alerts_by_budget ON budget_alerts "
    "(scope_kind, tenant_id, service, user_id, period, period_start_us)",
    "CREATE INDEX budget_alerts_by_time ON budget_alerts (fired_at_us)",
)

# Schema version 3: the webhook outbox (one row per alert and endpoint, leased by
# the dispatcher that attempts it) and the log of every attempt.
MIGRATION_3 = (
    """
    CREATE TABLE alert_deliveries (
        alert_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at_us BIGINT NOT NULL,
        next_attempt_at_us BIGINT NOT NULL,
        lease_owner TEXT NOT NULL,
        lease_until_us BIGINT NOT NULL,
        finished_at_us BIGINT NOT NULL,
        PRIMARY KEY (alert_id, endpoint)
    )
    """,
    "CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_at_us)",
    """
    CREATE TABLE alert_delivery_attempts (
        alert_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        attempted_at_us BIGINT NOT NULL,
        http_status INTEGER NOT NULL,
        error TEXT NOT NULL,
        latency_us BIGINT NOT NULL,
        PRIMARY KEY (alert_id, endpoint, attempt)
    )
    """,
)

# Schema version 4: the API key each entry was booked under ('' for older entries),
# for a key's own usage and reports by key.
MIGRATION_4 = (
    "ALTER TABLE ledger_entries ADD COLUMN api_key_id TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX ledger_entries_by_key_time "
    "ON ledger_entries (tenant_id, api_key_id, occurred_at_us)",
)

# Schema version 5: budgets of one API key (scope kind 'key'). The reservations
# record their key, so a key's budget counts what is in flight under it. The budget
# and alert tables keep their columns: a key scope stores its key id in user_id,
# which a key scope does not otherwise use (see _scope_columns).
MIGRATION_5 = (
    "ALTER TABLE budget_reservations ADD COLUMN api_key_id TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX budget_reservations_by_key_time "
    "ON budget_reservations (tenant_id, api_key_id, reserved_at_us)",
)


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL backends.

    Attributes:
        begin_write: starts a transaction that serialises with other writers.
        begin_read: starts a read transaction on one consistent snapshot.
        lock_rows: appended to the budget SELECT of a decision ("" when
            ``begin_write`` locks already).
        migration_lock: run first in the migration transaction, so that
            concurrent starters migrate one at a time ("" for none).
        errors: the library's exceptions that mean "the database failed".
        placeholder: the driver's parameter marker.
        in_transaction: whether a connection has a transaction open.
        is_broken: whether a connection must be replaced before its next use.
        skip_locked: appended to the SELECT that claims due deliveries, so that
            concurrent claimers skip each other's rows ("" when ``begin_write``
            serialises claimers already).
    """

    name: str
    begin_write: str
    begin_read: str
    lock_rows: str
    migrations: tuple[tuple[str, ...], ...]
    migration_lock: str
    errors: tuple[type[Exception], ...]
    placeholder: str
    in_transaction: Callable[[Connection], bool]
    is_broken: Callable[[Connection], bool]
    skip_locked: str = ""

    def sql(self, statement: str) -> str:
        """``statement`` with this driver's placeholders."""
        if self.placeholder == "?":
            return statement
        return statement.replace("?", self.placeholder)


_ENTRY_COLUMNS = (
    "request_id, tenant_id, service, user_id, model, requested_model, deployment, "
    "input_tokens, cached_input_tokens, output_tokens, batch, cache_status, "
    "cost_micros, cache_saved_micros, routing_saved_micros, batch_saved_micros, "
    "currency_code, occurred_at_us, day, api_key_id"
)
_BUDGET_COLUMNS = (
    "scope_kind, tenant_id, service, user_id, period, limit_micros, hard, "
    "alert_thresholds_percent, downgrade_model"
)
_ALERT_COLUMNS = (
    f"alert_id, {_BUDGET_COLUMNS}, period_start_us, threshold_percent, "
    "spent_micros, fired_at_us"
)
_DELIVERY_COLUMNS = (
    "d.alert_id, d.endpoint, d.state, d.attempts, d.created_at_us, "
    "d.next_attempt_at_us, d.finished_at_us"
)
_ATTEMPT_COLUMNS = (
    "t.alert_id, t.endpoint, t.attempt, t.attempted_at_us, t.http_status, t.error, "
    "t.latency_us"
)
_RESERVATION_COLUMNS = (
    "reservation_id, request_id, tenant_id, service, user_id, model, "
    "amount_micros, reserved_at_us, expires_at_us, api_key_id"
)


def _placeholders(columns: str) -> str:
    return ", ".join("?" * len(columns.split(",")))


_INSERT_ENTRY = (
    f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) "
    f"VALUES ({_placeholders(_ENTRY_COLUMNS)}) ON CONFLICT (request_id) DO NOTHING"
)
_SELECT_ENTRY = f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries WHERE request_id = ?"
_SETTLE = (
    "DELETE FROM budget_reservations WHERE reservation_id = ? AND expires_at_us > ?"
)
_INSERT_RESERVATION = (
    f"INSERT INTO budget_reservations ({_RESERVATION_COLUMNS}) "
    f"VALUES ({_placeholders(_RESERVATION_COLUMNS)})"
)
_INSERT_ALERT = (
    f"INSERT INTO budget_alerts ({_ALERT_COLUMNS}) "
    f"VALUES ({_placeholders(_ALERT_COLUMNS)}) ON CONFLICT (alert_id) DO NOTHING"
)
_QUEUE_DELIVERY = (
    "INSERT INTO alert_deliveries (alert_id, endpoint, state, attempts, "
    "created_at_us, next_attempt_at_us, lease_owner, lease_until_us, finished_at_us) "
    "VALUES (?, ?, ?, 0, ?, ?, '', 0, 0) ON CONFLICT (alert_id, endpoint) DO NOTHING"
)
_FIRED_THRESHOLDS = (
    "SELECT threshold_percent FROM budget_alerts WHERE scope_kind = ? "
    "AND tenant_id = ? AND service = ? AND user_id = ? AND period = ? "
    "AND period_start_us = ?"
)
_UPSERT_BUDGET = (
    f"INSERT INTO budgets ({_BUDGET_COLUMNS}) "
    f"VALUES ({_placeholders(_BUDGET_COLUMNS)}) "
    "ON CONFLICT (scope_kind, tenant_id, service, user_id, period) DO UPDATE "
    "SET limit_micros = excluded.limit_micros, hard = excluded.hard, "
    "alert_thresholds_percent = excluded.alert_thresholds_percent, "
    "downgrade_model = excluded.downgrade_model"
)
# Report dimensions: line attribute name to column; the names are fixed, never input.
_DIMENSIONS = {
    "by_model": "model",
    "by_service": "service",
    "by_user": "user_id",
    "by_tenant": "tenant_id",
    "by_day": "day",
    "by_api_key": "api_key_id",
}

_log = structlog.get_logger("tollgate.costs.sql")


class _Worker:
    """One thread owning one connection, reconnecting when it breaks."""

    def __init__(
        self, dialect: Dialect, connect: Callable[[], Connection], name: str
    ) -> None:
        self._dialect = dialect
        self._connect = connect
        self._connection: Connection | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def call(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        # Any: each work function takes its own arguments after the connection.
        if self._connection is not None and self._dialect.is_broken(self._connection):
            with contextlib.suppress(*self._dialect.errors):
                self._connection.close()
            self._connection = None
        if self._connection is None:
            self._connection = self._connect()
        return work(self._connection, self._dialect, *args)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SqlLedgerStore:
    """A :class:`~services.costs.ports.LedgerStore` on SQL connections.

    Build it with the ``open`` functions of the SQLite and Postgres adapters.
    Calls go to the first idle worker; SQLite has one, Postgres a small pool.
    """

    def __init__(self, dialect: Dialect, workers: list[_Worker]) -> None:
        self._dialect = dialect
        self._failures: tuple[type[Exception], ...] = (*dialect.errors, OSError)
        self._workers = workers
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in workers:
            self._idle.put_nowait(worker)

    @classmethod
    async def open(
        cls, dialect: Dialect, connect: Callable[[], Connection], size: int
    ) -> SqlLedgerStore:
        """Start ``size`` workers and migrate the schema on the first.

        Raises:
            BackendUnavailableError: the database cannot be reached or migrated.
        """
        workers = [
            _Worker(dialect, connect, f"costs-{dialect.name}-{index}")
            for index in range(size)
        ]
        store = cls(dialect, workers)
        try:
            await store._run(_migrate)
        except BaseException:
            await store.close()
            raise
        return store

    async def book(
        self,
        pending: Sequence[PendingEntry],
        rule: AlertRule,
        now: datetime,
        routes: AlertRoutes = no_routes,
    ) -> BookingBatch:
        """Book a batch in one transaction; see the port."""
        return await self._run(_book, pending, rule, now, routes)

    async def reserve(
        self, requests: Sequence[ReservationRequest[PlanT]]
    ) -> list[PlanT]:
        """Decide on and reserve a batch in one transaction; see the port."""
        return await self._run(_reserve, requests)

    async def purge_expired(self, now: datetime) -> int:
        """Delete reservations expired at ``now``."""
        return await self._run(_purge_expired, now)

    async def release(self, reservation_id: str, now: datetime) -> bool:
        """Delete one live reservation, booking nothing; see the port."""
        return await self._run(_release, reservation_id, now)

    async def summarize(self, query: ReportQuery) -> LedgerSummary:
        """Aggregate the selected entries with SQL, on one snapshot."""
        return await self._run(_summarize, query)

    async def spent_micros(self, scope: BudgetScope, period: Period) -> int:
        """Cost booked in ``scope`` within ``period``."""
        return await self._run(_spent_micros, scope, period)

    async def budget_usages(
        self,
        scopes: Sequence[BudgetScope],
        periods: Mapping[BudgetPeriod, Period],
        now: datetime,
    ) -> list[BudgetUsage]:
        """The budgets of ``scopes`` with their usage, on one snapshot; see the port."""
        return await self._run(_budget_usages, scopes, periods, now)

    async def put_budget(self, budget: Budget) -> None:
        """Create or replace the budget of its scope and period."""
        await self._run(_put_budget, budget)

    async def budgeted_scopes(self) -> frozenset[BudgetScope]:
        """Every scope that holds a budget; see the port."""
        return await self._run(_budgeted_scopes)

    async def alerts(self, tenant_id: str, since: datetime | None) -> list[Alert]:
        """Alerts fired at or after ``since``, oldest first."""
        return await self._run(_alerts, tenant_id, since)

    async def claim_deliveries(
        self,
        endpoints: Sequence[str],
        now: datetime,
        lease_until: datetime,
        owner: str,
        limit: int,
    ) -> list[ClaimedDelivery]:
        """Lease due deliveries to ``owner``; see the port."""
        if not endpoints or limit <= 0:
            return []
        return await self._run(_claim, endpoints, now, lease_until, owner, limit)

    async def finish_attempt(
        self, claimed: ClaimedDelivery, owner: str, outcome: AttemptOutcome
    ) -> bool:
        """Log an attempt and move its delivery on if still leased; see the port."""
        return await self._run(_finish_attempt, claimed, owner, outcome)

    async def deliveries(self, query: DeliveryQuery) -> list[AlertDelivery]:
        """The selected deliveries with their attempts, on one snapshot."""
        return await self._run(_deliveries, query)

    async def ping(self) -> bool:
        """Run ``SELECT 1``; raises BackendUnavailableError when it fails."""
        return await self._run(_ping)

    async def close(self) -> None:
        """Close every connection and stop the worker threads."""
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            with contextlib.suppress(*self._dialect.errors):
                await loop.run_in_executor(worker.executor, worker.close)
            worker.executor.shutdown(wait=True)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        try:
            return await loop.run_in_executor(worker.executor, worker.call, work, args)
        except self._failures as error:
            _log.error(
                "ledger_backend_error",
                backend=self._dialect.name,
                error_type=type(error).__name__,
                error=str(error),
            )
            raise BackendUnavailableError(
                "the ledger database is unavailable", retry_after=_RETRY_AFTER_SECONDS
            ) from error
        finally:
            self._idle.put_nowait(worker)


@contextlib.contextmanager
def _transaction(
    connection: Connection, dialect: Dialect, *, write: bool
) -> Iterator[None]:
    connection.execute(dialect.begin_write if write else dialect.begin_read)
    try:
        yield
    except BaseException:
        # The database may have rolled back by itself (disk full, lost connection).
        if dialect.in_transaction(connection):
            with contextlib.suppress(*dialect.errors):
                connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _migrate(connection: Connection, dialect: Dialect) -> None:
    with _transaction(connection, dialect, write=True):
        if dialect.migration_lock:
            connection.execute(dialect.migration_lock)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {
            row[0]
            for row in connection.execute("SELECT version FROM schema_migrations")
        }
        for version, statements in enumerate(dialect.migrations, start=1):
            if version in applied:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                dialect.sql(
                    "INSERT INTO schema_migrations (version, applied_at) "
                    "VALUES (?, CURRENT_TIMESTAMP)"
                ),
                (version,),
            )
            _log.info("ledger_migration_applied", backend=dialect.name, version=version)


def _book(
    connection: Connection,
    dialect: Dialect,
    pending: Sequence[PendingEntry],
    rule: AlertRule,
    now: datetime,
    routes: AlertRoutes = no_routes,
) -> BookingBatch:
    with _transaction(connection, dialect, write=True):
        # Fast path: one read of the known ids, one multi-row insert of the rest.
        connection.execute("SAVEPOINT book")
        bookings = _book_known_first(connection, dialect, pending, now)
        if bookings is None:
            # A concurrent writer (another Postgres replica) stored one of these
            # ids since the read: undo, and book row by row.
            connection.execute("ROLLBACK TO SAVEPOINT book")
            bookings = [_book_one(connection, dialect, item, now) for item in pending]
        connection.execute("RELEASE SAVEPOINT book")
        new = [item for item, b in zip(pending, bookings, strict=True) if b.created]
        alerts = (
            _fire_alerts(connection, dialect, new, rule, now, routes) if new else []
        )
    return BookingBatch(bookings=bookings, alerts=alerts)


def _book_known_first(
    connection: Connection,
    dialect: Dialect,
    pending: Sequence[PendingEntry],
    now: datetime,
) -> list[Booking] | None:
    ids = list({item.entry.request_id for item in pending})
    stored = {
        row[0]: _decode_entry(row)
        for row in connection.execute(
            dialect.sql(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                f"WHERE request_id IN ({', '.join('?' * len(ids))})"
            ),
            ids,
        )
    }
    known = set(stored)
    rows: list[tuple[object, ...]] = []
    for item in pending:
        entry = item.entry
        if entry.request_id not in stored:
            stored[entry.request_id] = entry
            rows.append(_encode_entry(entry))
    if rows:
        cursor = connection.cursor()
        cursor.executemany(dialect.sql(_INSERT_ENTRY), rows)
        inserted = cursor.rowcount  # the total over every row, in both drivers
        if inserted != len(rows):
            return None
    bookings: list[Booking] = []
    created: set[str] = set()
    for item in pending:
        request_id = item.entry.request_id
        is_new = request_id not in known and request_id not in created
        if is_new:
            created.add(request_id)
        bookings.append(
            Booking(
                stored[request_id],
                is_new,
                _settle(connection, dialect, item.reservation_id, now),
            )
        )
    return bookings


def _book_one(
    connection: Connection, dialect: Dialect, item: PendingEntry, now: datetime
) -> Booking:
    entry = item.entry
    created = (
        connection.execute(dialect.sql(_INSERT_ENTRY), _encode_entry(entry)).rowcount
        == 1
    )
    if not created:
        row = connection.execute(
            dialect.sql(_SELECT_ENTRY), (entry.request_id,)
        ).fetchone()
        entry = _decode_entry(row)
    return Booking(
        entry, created, _settle(connection, dialect, item.reservation_id, now)
    )


def _settle(
    connection: Connection, dialect: Dialect, reservation_id: str, now: datetime
) -> bool:
    if not reservation_id:
        return False
    released: int = connection.execute(
        dialect.sql(_SETTLE), (reservation_id, _to_micros(now))
    ).rowcount
    return released == 1


def _fire_alerts(
    connection: Connection,
    dialect: Dialect,
    new: Sequence[PendingEntry],
    rule: AlertRule,
    now: datetime,
    routes: AlertRoutes,
) -> list[Alert]:
    budgets = _budgets_of_tenants(
        connection, dialect, {item.entry.tenant_id for item in new}
    )
    if not budgets:
        return []
    budgets_by_scope: dict[BudgetScope, list[Budget]] = {}
    for budget in budgets:
        budgets_by_scope.setdefault(budget.scope, []).append(budget)
    # Every (budget, period) a new entry counts in, each evaluated once.
    targets: dict[tuple[Budget, Period], None] = {}
    for item in new:
        for scope in item.scopes:
            for budget in budgets_by_scope.get(scope, ()):
                targets[budget, item.periods[budget.period]] = None
    fired_now: list[Alert] = []
    for budget, period in targets:
        spent = _spent_micros(connection, dialect, budget.scope, period)
        scope = budget.scope
        fired = frozenset(
            row[0]
            for row in connection.execute(
                dialect.sql(_FIRED_THRESHOLDS),
                (
                    *_scope_columns(scope),
                    budget.period.value,
                    _to_micros(period[0]),
                ),
            )
        )
        for threshold in rule(budget, spent, fired):
            alert = Alert(
                alert_id=alert_id(budget, period[0], threshold),
                budget=budget,
                threshold_percent=threshold,
                spent_micros=spent,
                period_start=period[0],
                fired_at=now,
            )
            inserted = connection.execute(
                dialect.sql(_INSERT_ALERT), _encode_alert(alert)
            ).rowcount
            if inserted == 1:
                fired_now.append(alert)
                _queue_deliveries(connection, dialect, alert, routes(alert))
    return fired_now


def _queue_deliveries(
    connection: Connection, dialect: Dialect, alert: Alert, endpoints: Sequence[str]
) -> None:
    fired_at_us = _to_micros(alert.fired_at)
    for endpoint in endpoints:
        connection.execute(
            dialect.sql(_QUEUE_DELIVERY),
            (
                alert.alert_id,
                endpoint,
                DeliveryState.PENDING.value,
                fired_at_us,
                fired_at_us,
            ),
        )


def _claim(
    connection: Connection,
    dialect: Dialect,
    endpoints: Sequence[str],
    now: datetime,
    lease_until: datetime,
    owner: str,
    limit: int,
) -> list[ClaimedDelivery]:
    now_us = _to_micros(now)
    names = sorted(set(endpoints))
    with _transaction(connection, dialect, write=True):
        due = connection.execute(
            dialect.sql(
                "SELECT alert_id, endpoint, attempts, created_at_us "
                "FROM alert_deliveries WHERE state = ? AND next_attempt_at_us <= ? "
                "AND lease_until_us <= ? "
                f"AND endpoint IN ({', '.join('?' * len(names))}) "
                "ORDER BY next_attempt_at_us, alert_id, endpoint LIMIT ?"
                + dialect.skip_locked
            ),
            (DeliveryState.PENDING.value, now_us, now_us, *names, limit),
        ).fetchall()
        if not due:
            return []
        lease_us = _to_micros(lease_until)
        # The same conditions again: a row another claimer leased since the read
        # (possible only without row locks) is left to it.
        due = [
            row
            for row in due
            if connection.execute(
                dialect.sql(
                    "UPDATE alert_deliveries SET lease_owner = ?, lease_until_us = ? "
                    "WHERE alert_id = ? AND endpoint = ? AND state = ? "
                    "AND lease_until_us <= ?"
                ),
                (owner, lease_us, row[0], row[1], DeliveryState.PENDING.value, now_us),
            ).rowcount
            == 1
        ]
        if not due:
            return []
        ids = sorted({row[0] for row in due})
        alerts = {
            row[0]: _decode_alert(row)
            for row in connection.execute(
                dialect.sql(
                    f"SELECT {_ALERT_COLUMNS} FROM budget_alerts "
                    f"WHERE alert_id IN ({', '.join('?' * len(ids))})"
                ),
                ids,
            )
        }
    return [
        ClaimedDelivery(
            alert=alerts[identifier],
            endpoint=endpoint,
            attempt=int(attempts) + 1,
            created_at=_from_micros(created_at_us),
        )
        for identifier, endpoint, attempts, created_at_us in due
    ]


def _finish_attempt(
    connection: Connection,
    dialect: Dialect,
    claimed: ClaimedDelivery,
    owner: str,
    outcome: AttemptOutcome,
) -> bool:
    attempt = outcome.attempt
    pending = outcome.state is DeliveryState.PENDING
    next_at = outcome.next_attempt_at if pending else None
    with _transaction(connection, dialect, write=True):
        # Only the lease holder moves the delivery on, and only from the attempt
        # count it claimed at: a dispatcher whose lease ran out changes nothing.
        moved: int = connection.execute(
            dialect.sql(
                "UPDATE alert_deliveries SET state = ?, attempts = ?, "
                "next_attempt_at_us = ?, finished_at_us = ?, lease_owner = '', "
                "lease_until_us = 0 WHERE alert_id = ? AND endpoint = ? "
                "AND state = ? AND attempts = ? AND lease_owner = ?"
            ),
            (
                outcome.state.value,
                attempt.attempt,
                _to_micros(next_at) if next_at is not None else 0,
                0 if pending else _to_micros(attempt.attempted_at),
                claimed.alert.alert_id,
                claimed.endpoint,
                DeliveryState.PENDING.value,
                attempt.attempt - 1,
                owner,
            ),
        ).rowcount
        if moved != 1:
            return False
        connection.execute(
            dialect.sql(
                "INSERT INTO alert_delivery_attempts (alert_id, endpoint, attempt, "
                "attempted_at_us, http_status, error, latency_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                claimed.alert.alert_id,
                claimed.endpoint,
                attempt.attempt,
                _to_micros(attempt.attempted_at),
                attempt.http_status,
                attempt.error,
                attempt.latency // _ONE_MICROSECOND,
            ),
        )
    return True


def _deliveries(
    connection: Connection, dialect: Dialect, query: DeliveryQuery
) -> list[AlertDelivery]:
    conditions = ["a.fired_at_us >= ?"]
    params: list[object] = [_to_micros(query.since) if query.since is not None else 0]
    for column, value in (
        ("d.alert_id", query.alert_id),
        ("a.tenant_id", query.tenant_id),
        ("d.endpoint", query.endpoint),
    ):
        if value:
            conditions.append(f"{column} = ?")
            params.append(value)
    where = " AND ".join(conditions)
    alert_columns = ", ".join(f"a.{c.strip()}" for c in _ALERT_COLUMNS.split(","))
    # One snapshot: each delivery's state agrees with its logged attempts.
    with _transaction(connection, dialect, write=False):
        rows = connection.execute(
            dialect.sql(
                f"SELECT {_DELIVERY_COLUMNS}, {alert_columns} FROM alert_deliveries d "
                "JOIN budget_alerts a ON a.alert_id = d.alert_id "
                f"WHERE {where} "
                "ORDER BY a.fired_at_us, a.period_start_us, a.threshold_percent, "
                "d.alert_id, d.endpoint"
            ),
            params,
        ).fetchall()
        attempt_rows = connection.execute(
            dialect.sql(
                f"SELECT {_ATTEMPT_COLUMNS} FROM alert_delivery_attempts t "
                "JOIN alert_deliveries d "
                "ON d.alert_id = t.alert_id AND d.endpoint = t.endpoint "
                "JOIN budget_alerts a ON a.alert_id = d.alert_id "
                f"WHERE {where} ORDER BY t.attempt"
            ),
            params,
        ).fetchall()
    attempts: dict[tuple[str, str], list[DeliveryAttempt]] = {}
    for identifier, endpoint, number, at_us, status, error, latency_us in attempt_rows:
        attempts.setdefault((identifier, endpoint), []).append(
            DeliveryAttempt(
                attempt=int(number),
                attempted_at=_from_micros(at_us),
                http_status=int(status),
                error=error,
                latency=int(latency_us) * _ONE_MICROSECOND,
            )
        )
    deliveries: list[AlertDelivery] = []
    for row in rows:
        identifier, endpoint, state, _, created_us, next_us, finished_us = row[:7]
        delivery_state = DeliveryState(state)
        deliveries.append(
            AlertDelivery(
                alert=_decode_alert(row[7:]),
                endpoint=endpoint,
                state=delivery_state,
                attempts=tuple(attempts.get((identifier, endpoint), ())),
                created_at=_from_micros(created_us),
                next_attempt_at=(
                    _from_micros(next_us)
                    if delivery_state is DeliveryState.PENDING
                    else None
                ),
                finished_at=_from_micros(finished_us) if finished_us else None,
            )
        )
    return deliveries


def _reserve(
    connection: Connection,
    dialect: Dialect,
    requests: Sequence[ReservationRequest[PlanT]],
) -> list[PlanT]:
    plans: list[PlanT] = []
    with _transaction(connection, dialect, write=True):
        for request in requests:
            now_us = _to_micros(request.now)
            usages = []
            for budget in _budgets_for(connection, dialect, request.scopes):
                period = request.periods[budget.period]
                spent, reserved = _usage(
                    connection, dialect, budget.scope, period, now_us
                )
                usages.append(BudgetUsage(budget, period, spent, reserved))
            plan = request.decide(usages)
            if plan.reserve_micros > 0:
                connection.execute(
                    dialect.sql(_INSERT_RESERVATION),
                    (
                        request.reservation_id,
                        request.request_id,
                        request.tenant_id,
                        request.service,
                        request.user_id,
                        request.model,
                        plan.reserve_micros,
                        now_us,
                        _to_micros(request.expires_at),
                        request.api_key_id,
                    ),
                )
            plans.append(plan)
    return plans


def _purge_expired(connection: Connection, dialect: Dialect, now: datetime) -> int:
    # Autocommit: one short statement, holding no budget lock.
    purged: int = connection.execute(
        dialect.sql("DELETE FROM budget_reservations WHERE expires_at_us <= ?"),
        (_to_micros(now),),
    ).rowcount
    return purged


def _release(
    connection: Connection, dialect: Dialect, reservation_id: str, now: datetime
) -> bool:
    # Autocommit, like the purge: one short statement, holding no budget lock.
    return _settle(connection, dialect, reservation_id, now)


def _budgets_of_tenants(
    connection: Connection, dialect: Dialect, tenants: set[str]
) -> list[Budget]:
    # The global budgets and every budget of these tenants, locked in the same
    # fixed order as _budgets_for; a superset of the entries' scopes in one query.
    ordered = sorted(tenants)
    rows = connection.execute(
        dialect.sql(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope_kind = ? "
            f"OR tenant_id IN ({', '.join('?' * len(ordered))}) "
            "ORDER BY scope_kind, tenant_id, service, user_id, period"
            + dialect.lock_rows
        ),
        [ScopeKind.GLOBAL.value, *ordered],
    ).fetchall()
    return [_decode_budget(row) for row in rows]


def _budgeted_scopes(
    connection: Connection, dialect: Dialect
) -> frozenset[BudgetScope]:
    rows = connection.execute(
        dialect.sql(
            "SELECT DISTINCT scope_kind, tenant_id, service, user_id FROM budgets"
        )
    ).fetchall()
    return frozenset(_scope_of(*row) for row in rows)


def _budgets_for(
    connection: Connection,
    dialect: Dialect,
    scopes: Iterable[BudgetScope],
    *,
    lock: bool = True,
) -> list[Budget]:
    ordered = sorted(set(scopes), key=_scope_columns)
    if not ordered:
        return []
    match_one = "(scope_kind = ? AND tenant_id = ? AND service = ? AND user_id = ?)"
    params = [value for scope in ordered for value in _scope_columns(scope)]
    rows = connection.execute(
        dialect.sql(
            f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE "
            + " OR ".join([match_one] * len(ordered))
            # A fixed order: concurrent lockers take the rows in the same sequence.
            + " ORDER BY scope_kind, tenant_id, service, user_id, period"
            + (dialect.lock_rows if lock else "")
        ),
        params,
    ).fetchall()
    return [_decode_budget(row) for row in rows]


def _budget_usages(
    connection: Connection,
    dialect: Dialect,
    scopes: Sequence[BudgetScope],
    periods: Mapping[BudgetPeriod, Period],
    now: datetime,
) -> list[BudgetUsage]:
    now_us = _to_micros(now)
    # One read transaction: every budget's usage is of the same snapshot.
    with _transaction(connection, dialect, write=False):
        usages = []
        for budget in _budgets_for(connection, dialect, scopes, lock=False):
            period = periods[budget.period]
            spent, reserved = _usage(connection, dialect, budget.scope, period, now_us)
            usages.append(BudgetUsage(budget, period, spent, reserved))
    return usages


def _usage(
    connection: Connection,
    dialect: Dialect,
    scope: BudgetScope,
    period: Period,
    now_us: int,
) -> tuple[int, int]:
    scope_condition, scope_params = _scope_filter(scope)
    start, end = _to_micros(period[0]), _to_micros(period[1])
    # One statement, hence one snapshot: a booking that settles a reservation is
    # seen either as the reservation or as the entry, never both or neither.
    row = connection.execute(
        dialect.sql(
            "SELECT (SELECT COALESCE(SUM(cost_micros), 0) FROM ledger_entries "
            "WHERE occurred_at_us >= ? AND occurred_at_us < ? "
            f"AND {scope_condition}), "
            "(SELECT COALESCE(SUM(amount_micros), 0) FROM budget_reservations "
            "WHERE reserved_at_us >= ? AND reserved_at_us < ? AND expires_at_us > ? "
            f"AND {scope_condition})"
        ),
        (start, end, *scope_params, start, end, now_us, *scope_params),
    ).fetchone()
    return int(row[0]), int(row[1])


def _spent_micros(
    connection: Connection, dialect: Dialect, scope: BudgetScope, period: Period
) -> int:
    scope_condition, params = _scope_filter(scope)
    row = connection.execute(
        dialect.sql(
            "SELECT COALESCE(SUM(cost_micros), 0) FROM ledger_entries "
            f"WHERE occurred_at_us >= ? AND occurred_at_us < ? AND {scope_condition}"
        ),
        (_to_micros(period[0]), _to_micros(period[1]), *params),
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
        case ScopeKind.KEY:
            return (
                "tenant_id = ? AND api_key_id = ?",
                (scope.tenant_id, scope.api_key_id),
            )


def _summarize(
    connection: Connection, dialect: Dialect, query: ReportQuery
) -> LedgerSummary:
    conditions = ["occurred_at_us < ?"]
    params: list[object] = [_to_micros(query.end)]
    if query.start is not None:
        conditions.append("occurred_at_us >= ?")
        params.append(_to_micros(query.start))
    if query.tenant_id:
        conditions.append("tenant_id = ?")
        params.append(query.tenant_id)
    if query.api_key_id:
        conditions.append("api_key_id = ?")
        params.append(query.api_key_id)
    where = " AND ".join(conditions)
    # One read transaction: the totals and every line see the same snapshot.
    with _transaction(connection, dialect, write=False):
        totals = connection.execute(
            dialect.sql(
                "SELECT COUNT(*), COALESCE(SUM(cost_micros), 0), "
                "COALESCE(SUM(cache_saved_micros), 0), "
                "COALESCE(SUM(routing_saved_micros), 0), "
                "COALESCE(SUM(batch_saved_micros), 0) "
                f"FROM ledger_entries WHERE {where}"
            ),
            params,
        ).fetchone()
        lines = {
            name: _lines(
                connection.execute(
                    dialect.sql(
                        f"SELECT {column}, COUNT(*), SUM(cost_micros), "
                        "SUM(cache_saved_micros + routing_saved_micros "
                        "+ batch_saved_micros), "
                        "SUM(input_tokens), SUM(cached_input_tokens), "
                        "SUM(output_tokens) "
                        f"FROM ledger_entries WHERE {where} GROUP BY {column}"
                    ),
                    params,
                ).fetchall()
            )
            for name, column in _DIMENSIONS.items()
        }
    requests, cost, cache_saved, routing_saved, batch_saved = (int(v) for v in totals)
    return LedgerSummary(
        requests=requests,
        cost_micros=cost,
        cache_saved_micros=cache_saved,
        routing_saved_micros=routing_saved,
        batch_saved_micros=batch_saved,
        **lines,
    )


def _lines(rows: Sequence[tuple[Any, ...]]) -> tuple[ReportLine, ...]:
    # Sorted here, by code point, so that both databases order keys alike whatever
    # their collation; Postgres sums come back as Decimal.
    return tuple(
        ReportLine(key, *(int(value) for value in values))
        for key, *values in sorted(rows, key=lambda row: str(row[0]))
    )


def _put_budget(connection: Connection, dialect: Dialect, budget: Budget) -> None:
    with _transaction(connection, dialect, write=True):
        connection.execute(dialect.sql(_UPSERT_BUDGET), _encode_budget(budget))


def _alerts(
    connection: Connection, dialect: Dialect, tenant_id: str, since: datetime | None
) -> list[Alert]:
    conditions = ["fired_at_us >= ?"]
    params: list[object] = [_to_micros(since) if since is not None else 0]
    if tenant_id:
        conditions.append("tenant_id = ?")
        params.append(tenant_id)
    rows = connection.execute(
        dialect.sql(
            f"SELECT {_ALERT_COLUMNS} FROM budget_alerts "
            f"WHERE {' AND '.join(conditions)} "
            "ORDER BY fired_at_us, period_start_us, threshold_percent, alert_id"
        ),
        params,
    ).fetchall()
    return [_decode_alert(row) for row in rows]


def _ping(connection: Connection, dialect: Dialect) -> bool:
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
        entry.api_key_id,
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
        api_key_id,
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
        occurred_at=_from_micros(occurred_at_us),
        day=day,
        api_key_id=api_key_id,
    )


def _scope_columns(scope: BudgetScope) -> tuple[str, str, str, str]:
    """A scope's (scope_kind, tenant_id, service, user_id) columns.

    A key scope's key id goes in user_id (schema version 5).
    """
    if scope.kind is ScopeKind.KEY:
        return (scope.kind.value, scope.tenant_id, "", scope.api_key_id)
    return (scope.kind.value, scope.tenant_id, scope.service, scope.user_id)


def _scope_of(kind: str, tenant_id: str, service: str, user_id: str) -> BudgetScope:
    """The scope stored in ``_scope_columns``' columns."""
    if kind == ScopeKind.KEY.value:
        return BudgetScope(ScopeKind.KEY, tenant_id, api_key_id=user_id)
    return BudgetScope(ScopeKind(kind), tenant_id, service, user_id)


def _encode_budget(budget: Budget) -> tuple[object, ...]:
    return (
        *_scope_columns(budget.scope),
        budget.period.value,
        budget.limit_micros,
        int(budget.hard),
        json.dumps(list(budget.alert_thresholds_percent)),
        budget.downgrade_model,
    )


def _decode_budget(row: Sequence[Any]) -> Budget:
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
        scope=_scope_of(scope_kind, tenant_id, service, user_id),
        period=BudgetPeriod(period),
        limit_micros=limit_micros,
        hard=bool(hard),
        alert_thresholds_percent=tuple(json.loads(thresholds)),
        downgrade_model=downgrade_model,
    )


def _encode_alert(alert: Alert) -> tuple[object, ...]:
    return (
        alert.alert_id,
        *_encode_budget(alert.budget),
        _to_micros(alert.period_start),
        alert.threshold_percent,
        alert.spent_micros,
        _to_micros(alert.fired_at),
    )


def _decode_alert(row: tuple[Any, ...]) -> Alert:
    budget_columns = len(_BUDGET_COLUMNS.split(","))
    identifier = row[0]
    budget = _decode_budget(row[1 : 1 + budget_columns])
    period_start_us, threshold, spent, fired_at_us = row[1 + budget_columns :]
    return Alert(
        alert_id=identifier,
        budget=budget,
        threshold_percent=threshold,
        spent_micros=spent,
        period_start=_from_micros(period_start_us),
        fired_at=_from_micros(fired_at_us),
    )


def _to_micros(at: datetime) -> int:
    """Exact integer microseconds since the Unix epoch (no float rounding)."""
    return (at - _EPOCH) // _ONE_MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + micros * _ONE_MICROSECOND
