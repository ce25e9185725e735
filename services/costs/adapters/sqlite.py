"""The ledger in SQLite: WAL journal, ``synchronous=FULL``, numbered migrations.

The embedded default. One worker thread owns the only connection, so this
process's transactions never interleave; writes take ``BEGIN IMMEDIATE``, so other
processes on the same file are serialised too (and a budget decision sees every
reservation before it). ``synchronous=FULL`` makes a commit survive a power loss;
the ledger groups concurrent writes into one commit, hence one fsync.

The path ``:memory:`` gives a private in-memory database with the same behaviour,
which is the in-memory fake of :class:`~services.costs.ports.LedgerStore`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import structlog

from services.costs.adapters.sql import (
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    Dialect,
    SqlLedgerStore,
)

MEMORY = ":memory:"
_BUSY_TIMEOUT_SECONDS = 5.0

SQLITE = Dialect(
    name="sqlite",
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN DEFERRED",
    # BEGIN IMMEDIATE already holds the database's write lock.
    lock_rows="",
    migrations=(
        MIGRATION_1,
        MIGRATION_2,
        MIGRATION_3,
        MIGRATION_4,
        MIGRATION_5,
    ),
    migration_lock="",
    errors=(sqlite3.Error,),
    placeholder="?",
    in_transaction=lambda connection: bool(connection.in_transaction),
    is_broken=lambda connection: False,
)

_log = structlog.get_logger("tollgate.costs.sqlite")


async def open_sqlite_store(path: Path | str) -> SqlLedgerStore:
    """Open (or create, with parent directories) the database and migrate it.

    Raises:
        BackendUnavailableError: the file cannot be created, opened or migrated.
    """
    store = await SqlLedgerStore.open(SQLITE, lambda: _connect(str(path)), size=1)
    _log.info("ledger_opened", backend="sqlite", path=str(path))
    return store


def _connect(path: str) -> sqlite3.Connection:
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: transactions are explicit (BEGIN ... COMMIT).
    connection = sqlite3.connect(
        path,
        timeout=_BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=True,
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    except BaseException:
        connection.close()
        raise
    return connection
