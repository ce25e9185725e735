"""The ledger in Postgres (psycopg 3), behind the same port as SQLite.

For more than one costs replica, or a ledger that outgrows one file. The schema,
statements and transactions are those of :mod:`services.costs.adapters.sql`; here
only the dialect: writes run at READ COMMITTED, and a budget decision locks its
budget rows with ``SELECT ... FOR UPDATE`` in a fixed order before reading usage,
so replicas sharing the database decide on a budget one at a time. Reports read one
REPEATABLE READ snapshot. Replicas claim due webhook deliveries with
``FOR UPDATE SKIP LOCKED``, so each delivery is leased to one replica. Commits are
durable with Postgres' default ``synchronous_commit=on``. A small pool of
connections, each owned by its own thread, serves concurrent calls; a broken
connection is replaced on next use.
"""

from __future__ import annotations

import psycopg
import structlog
from psycopg import pq

from services.costs.adapters.sql import (
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    Dialect,
    SqlLedgerStore,
)

_CONNECT_TIMEOUT_SECONDS = 5
# Any fixed number, shared by every replica: the advisory lock of migrations.
_MIGRATION_LOCK_KEY = 0x7011_6A7E

POSTGRES = Dialect(
    name="postgres",
    begin_write="BEGIN",
    begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    lock_rows=" FOR UPDATE",
    # Version 1 as released for SQLite, with Postgres' 64-bit integers (SQLite's
    # INTEGER is 64-bit; Postgres' is 32).
    migrations=(
        tuple(statement.replace("INTEGER", "BIGINT") for statement in MIGRATION_1),
        MIGRATION_2,
        MIGRATION_3,
        MIGRATION_4,
        MIGRATION_5,
    ),
    migration_lock=f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})",
    errors=(psycopg.Error,),
    placeholder="%s",
    in_transaction=lambda connection: (
        connection.info.transaction_status != pq.TransactionStatus.IDLE
    ),
    is_broken=lambda connection: bool(connection.closed or connection.broken),
    # Replicas claiming due webhook deliveries take disjoint rows, without waiting.
    skip_locked=" FOR UPDATE SKIP LOCKED",
)

_log = structlog.get_logger("tollgate.costs.postgres")


async def open_postgres_store(dsn: str, pool_size: int) -> SqlLedgerStore:
    """Connect ``pool_size`` connections lazily and migrate the schema.

    Raises:
        BackendUnavailableError: the database cannot be reached or migrated.
    """

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        # Autocommit mode: transactions are explicit (BEGIN ... COMMIT).
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS
        )

    store = await SqlLedgerStore.open(POSTGRES, connect, size=pool_size)
    _log.info("ledger_opened", backend="postgres", pool_size=pool_size)
    return store
