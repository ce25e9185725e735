"""The async results store of the batch lane in Postgres (psycopg 3).

For several gateway replicas: every replica reads and writes the same batches,
items and tickets, so a batch submitted through one is listed, fetched and
cancelled through any other, and the replicas' batch loops share the work through
leases (see :mod:`services.gateway.adapters.batch_store_sql`, whose schema and
statements are used here; only the dialect is Postgres'). Writes run at READ
COMMITTED, in which a claim's conditional ``UPDATE`` re-checks the lease on the
row a concurrent claim committed, so one of them wins. Commits are durable with
Postgres' default ``synchronous_commit=on``. A small pool of connections, each
owned by its own thread, serves concurrent calls; a broken connection is replaced
on next use.

With a schema name the tables live in that schema (created if missing), so that
tests or several suites can share one database.
"""

from __future__ import annotations

import psycopg
import structlog
from psycopg import pq, sql

from services.gateway.adapters.batch_store_sql import Connection, Dialect, SqlBatchStore

_CONNECT_TIMEOUT_SECONDS = 5
# Any fixed number, shared by every replica (and distinct from the ledger's): the
# advisory lock that makes concurrent starters create the gateway's tables (batches
# and keys) one at a time.
_SCHEMA_LOCK_KEY = 0x7011_6A7B


def _columns(connection: Connection, table: str) -> set[str]:
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    ).fetchall()
    return {str(row[0]) for row in rows}


def postgres_dialect(schema: str | None = None) -> Dialect:
    """The Postgres dialect, its tables in ``schema`` (created) if one is given."""
    setup = [f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})"]
    if schema:
        setup.append(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
            .format(sql.Identifier(schema))
            .as_string()
        )
    return Dialect(
        name="postgres",
        begin_write="BEGIN",
        # SQLite's REAL is a double and its INTEGER 64-bit; Postgres' are not.
        types={"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "BLOB": "BYTEA"},
        setup=tuple(setup),
        errors=(psycopg.Error,),
        integrity_errors=(psycopg.IntegrityError,),
        placeholder="%s",
        columns=_columns,
        # Postgres' text cannot hold NUL; the upstream's texts may.
        text=lambda value: value.replace("\x00", "\ufffd"),
        in_transaction=lambda connection: (
            connection.info.transaction_status != pq.TransactionStatus.IDLE
        ),
        is_broken=lambda connection: bool(connection.closed or connection.broken),
    )


_log = structlog.get_logger("tollgate.gateway.batch_store")


def connect_postgres(
    dsn: str, schema: str | None = None
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection in autocommit mode (transactions are explicit), on ``schema``."""
    connection = psycopg.connect(
        dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS
    )
    if schema:
        try:
            connection.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
            )
        except BaseException:
            connection.close()
            raise
    return connection


def open_postgres_batch_store(
    dsn: str, *, schema: str | None = None, pool_size: int = 4
) -> SqlBatchStore:
    """Connect (lazily, up to ``pool_size`` connections) and create the schema.

    Blocks until the schema exists: call it from a thread in async code.

    Raises:
        BackendUnavailableError: the database cannot be reached or prepared.
    """
    store = SqlBatchStore(
        postgres_dialect(schema),
        lambda: connect_postgres(dsn, schema),
        size=pool_size,
    )
    _log.info(
        "batch_store_opened", backend="postgres", schema=schema, pool_size=pool_size
    )
    return store
