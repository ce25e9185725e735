"""The async results store of the batch lane in SQLite (WAL, synchronous FULL).

The embedded default. Schema, statements and leases are those of
:mod:`services.gateway.adapters.batch_store_sql`; here only the dialect. One worker
thread owns the only connection, so this process's calls never interleave; writes
take ``BEGIN IMMEDIATE``, so other processes on the same file are serialised too.
``synchronous=FULL`` makes every commit survive a power loss.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.gateway.adapters.batch_store_sql import Connection, Dialect, SqlBatchStore

_BUSY_TIMEOUT_SECONDS = 5.0


def _columns(connection: Connection, table: str) -> set[str]:
    return {str(row[1]) for row in connection.execute(f"PRAGMA table_info({table})")}


SQLITE = Dialect(
    name="sqlite",
    begin_write="BEGIN IMMEDIATE",
    types={},
    setup=(),
    errors=(sqlite3.Error,),
    integrity_errors=(sqlite3.IntegrityError,),
    placeholder="?",
    columns=_columns,
    text=lambda value: value,
    in_transaction=lambda connection: bool(connection.in_transaction),
    is_broken=lambda connection: False,
)


class SqliteBatchStore(SqlBatchStore):
    """A :class:`~services.gateway.batches.BatchStore` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (creating the file, its directories and the schema) the store.

        Raises:
            BackendUnavailableError: the file cannot be created or opened.
        """
        super().__init__(SQLITE, lambda: connect_sqlite(path), size=1)


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (made with its directories), WAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: transactions are explicit (BEGIN ... COMMIT). The one worker
    # thread uses the connection; close() closes it from another once that ended.
    connection = sqlite3.connect(
        str(path),
        timeout=_BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    except BaseException:
        connection.close()
        raise
    return connection
