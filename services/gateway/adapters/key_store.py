"""The gateway's API keys in SQL: SQLite by default, Postgres for several replicas.

Two tables of their own: ``api_keys`` (one row per key: its id, the SHA-256 of its
secret and of the secret before the last rotation, its attributes, times and
budget) and ``api_key_changes``, one row holding the change counter. Every write
bumps the counter and stamps the rows it writes with the new value in the same
transaction; the counter's row lock (Postgres) or the write lock (SQLite,
``BEGIN IMMEDIATE``) serialises writers, so counter values commit in order and a
reader that saw the counter at ``v`` has seen every row stamped ``<= v``. A
replica's poll is then one primary-key read of the counter, and, only when it
moved, a read of the rows stamped after what it had.

One schema, one set of statements, written against the DB-API connection that
``sqlite3`` and ``psycopg`` (sync) both provide; a :class:`Dialect` holds the
differences (column types, how a write begins, placeholders, errors). One worker
thread owns the connection, so the event loop never blocks on the database; a
broken connection is replaced on next use. Secrets never reach the store: only
their digests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from services.core.errors import BackendUnavailableError
from services.gateway.adapters.batch_store import SQLITE, connect_sqlite
from services.gateway.adapters.batch_store_sql import Dialect, transaction
from services.gateway.keys import KeyIdTakenError, KeyRecord

# Any: a DB-API connection, sqlite3.Connection or psycopg.Connection, whose
# libraries type execute() differently.
Connection = Any
_T = TypeVar("_T")

_RETRY_AFTER_SECONDS = 1.0

# In SQLite's words (REAL is a double there, INTEGER 64-bit); Postgres renames the
# types. Created if missing, never dropped.
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        service TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_tier TEXT NOT NULL,
        models TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        rotated_at REAL,
        previous_sha256 TEXT NOT NULL DEFAULT '',
        previous_valid_until REAL,
        budget_limit_micros INTEGER,
        version INTEGER NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS api_keys_by_version ON api_keys (version)",
    """
    CREATE TABLE IF NOT EXISTS api_key_changes (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    )
    """,
    "INSERT INTO api_key_changes (id, version) VALUES (1, 0) "
    "ON CONFLICT (id) DO NOTHING",
)

_COLUMNS = (
    "key_id, sha256, tenant_id, service, user_id, user_tier, models, created_at, "
    "expires_at, revoked_at, rotated_at, previous_sha256, previous_valid_until, "
    "budget_limit_micros, version"
)
_INSERT = f"INSERT INTO api_keys ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_SELECT_ONE = f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?"
_SELECT_SINCE = f"SELECT {_COLUMNS} FROM api_keys WHERE version > ? ORDER BY version"
_VERSION = "SELECT version FROM api_key_changes WHERE id = 1"
_BUMP = "UPDATE api_key_changes SET version = version + 1 WHERE id = 1"
_REVOKE = (
    "UPDATE api_keys SET revoked_at = ?, version = ? "
    "WHERE key_id = ? AND revoked_at IS NULL"
)
# The right-hand sides read the row as it was: the current digest becomes the
# previous one.
_ROTATE = (
    "UPDATE api_keys SET previous_sha256 = sha256, previous_valid_until = ?, "
    "sha256 = ?, rotated_at = ?, version = ? "
    "WHERE key_id = ? AND revoked_at IS NULL"
)

_log = structlog.get_logger("tollgate.gateway.key_store")


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _record(row: tuple[object, ...]) -> KeyRecord:
    (
        key_id,
        sha256,
        tenant_id,
        service,
        user_id,
        user_tier,
        models,
        created_at,
        expires_at,
        revoked_at,
        rotated_at,
        previous_sha256,
        previous_valid_until,
        budget_limit_micros,
        version,
    ) = row
    return KeyRecord(
        key_id=str(key_id),
        digest=str(sha256),
        tenant_id=str(tenant_id),
        service=str(service),
        user_id=str(user_id),
        user_tier=str(user_tier),
        models=tuple(json.loads(str(models))),
        created_at=_float(created_at),
        expires_at=_float(expires_at),
        revoked_at=_float(revoked_at),
        rotated_at=_float(rotated_at),
        previous_digest=str(previous_sha256),
        previous_valid_until=_float(previous_valid_until),
        budget_limit_micros=(
            None if budget_limit_micros is None else int(str(budget_limit_micros))
        ),
        version=int(str(version)),
    )


def _bump(connection: Connection, dialect: Dialect) -> int:
    connection.execute(_BUMP)
    return int(connection.execute(_VERSION).fetchone()[0])


def _one(connection: Connection, dialect: Dialect, key_id: str) -> KeyRecord | None:
    row = connection.execute(dialect.sql(_SELECT_ONE), (key_id,)).fetchone()
    return None if row is None else _record(row)


def _create_schema(connection: Connection, dialect: Dialect) -> None:
    with transaction(connection, dialect):
        for statement in dialect.setup:
            connection.execute(statement)
        for statement in SCHEMA:
            connection.execute(dialect.ddl(statement))


def _insert(connection: Connection, dialect: Dialect, record: KeyRecord) -> KeyRecord:
    try:
        with transaction(connection, dialect):
            version = _bump(connection, dialect)
            connection.execute(
                dialect.sql(_INSERT),
                (
                    record.key_id,
                    record.digest,
                    record.tenant_id,
                    record.service,
                    record.user_id,
                    record.user_tier,
                    json.dumps(list(record.models)),
                    record.created_at,
                    record.expires_at,
                    record.revoked_at,
                    record.rotated_at,
                    record.previous_digest,
                    record.previous_valid_until,
                    record.budget_limit_micros,
                    version,
                ),
            )
    except dialect.integrity_errors as error:
        raise KeyIdTakenError(f"API key {record.key_id} exists already") from error
    stored = _one(connection, dialect, record.key_id)
    assert stored is not None
    return stored


def _revoke(
    connection: Connection, dialect: Dialect, key_id: str, at: float
) -> KeyRecord | None:
    with transaction(connection, dialect):
        if _one(connection, dialect, key_id) is None:
            return None
        version = _bump(connection, dialect)
        connection.execute(dialect.sql(_REVOKE), (at, version, key_id))
        return _one(connection, dialect, key_id)


def _rotate(
    connection: Connection,
    dialect: Dialect,
    key_id: str,
    digest: str,
    at: float,
    previous_valid_until: float,
) -> KeyRecord | None:
    with transaction(connection, dialect):
        if _one(connection, dialect, key_id) is None:
            return None
        version = _bump(connection, dialect)
        connection.execute(
            dialect.sql(_ROTATE), (previous_valid_until, digest, at, version, key_id)
        )
        return _one(connection, dialect, key_id)


def _changes(
    connection: Connection, dialect: Dialect, since: int
) -> tuple[int, list[KeyRecord]]:
    # The counter first: every row stamped up to it has committed (see the module).
    version = int(connection.execute(_VERSION).fetchone()[0])
    if version <= since:
        return version, []
    rows = connection.execute(dialect.sql(_SELECT_SINCE), (since,)).fetchall()
    records = [_record(row) for row in rows]
    return max([version, *(record.version for record in records)]), records


class SqlKeyStore:
    """A :class:`~services.gateway.keys.KeyStore` in a SQL database."""

    def __init__(self, dialect: Dialect, connect: Callable[[], Connection]) -> None:
        """Open the store and create its tables if missing (blocks).

        Raises:
            BackendUnavailableError: the database cannot be reached or prepared.
        """
        self._dialect = dialect
        self._connect = connect
        self._connection: Connection | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"key-store-{dialect.name}"
        )
        self._closed = False
        try:
            self._executor.submit(self._call, _create_schema, ()).result()
        except BaseException:
            self.close()
            raise

    def _call(self, work: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        # Any: each work function takes its own arguments after the connection.
        try:
            connection = self._connection
            if connection is not None and self._dialect.is_broken(connection):
                with contextlib.suppress(*self._dialect.errors):
                    connection.close()
                connection = self._connection = None
            if connection is None:
                connection = self._connection = self._connect()
            return work(connection, self._dialect, *args)
        except self._dialect.errors as error:
            _log.warning(
                "key_store_error",
                backend=self._dialect.name,
                error_type=type(error).__name__,
            )
            raise BackendUnavailableError(
                "the API key store is unavailable", retry_after=_RETRY_AFTER_SECONDS
            ) from error

    async def _run(self, work: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise BackendUnavailableError(
                "the API key store is closed", retry_after=_RETRY_AFTER_SECONDS
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work, args)

    async def insert(self, record: KeyRecord) -> KeyRecord:
        """Store a new key (see the port)."""
        return await self._run(_insert, record)

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key, or None."""
        return await self._run(_one, key_id)

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        """Mark the key revoked unless it is (see the port)."""
        return await self._run(_revoke, key_id, at)

    async def rotate(
        self, key_id: str, digest: str, at: float, previous_valid_until: float
    ) -> KeyRecord | None:
        """Give an unrevoked key a new digest (see the port)."""
        return await self._run(_rotate, key_id, digest, at, previous_valid_until)

    async def changes(self, since: int) -> tuple[int, list[KeyRecord]]:
        """The counter now and the keys written after ``since``."""
        return await self._run(_changes, since)

    def close(self) -> None:
        """Finish pending calls, then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        if self._connection is not None:
            with contextlib.suppress(*self._dialect.errors):
                self._connection.close()
            self._connection = None


def open_sqlite_key_store(path: Path) -> SqlKeyStore:
    """The key store in the SQLite file ``path`` (WAL; made with its directories).

    Several processes on one machine may share the file. Blocks: call it from a
    thread in async code.

    Raises:
        BackendUnavailableError: the file cannot be created or opened.
    """
    try:
        store = SqlKeyStore(SQLITE, lambda: connect_sqlite(path))
    except OSError as error:
        raise BackendUnavailableError(
            f"cannot open the API key store {path}: {error.strerror}"
        ) from error
    _log.info("key_store_opened", backend="sqlite")
    return store


def open_postgres_key_store(dsn: str, *, schema: str | None = None) -> SqlKeyStore:
    """The key store in Postgres, its tables in ``schema`` (created) if given.

    Blocks: call it from a thread in async code. Needs psycopg (the ``costs``
    extra).

    Raises:
        BackendUnavailableError: the database cannot be reached or prepared.
    """
    from services.gateway.adapters.batch_store_postgres import (
        connect_postgres,
        postgres_dialect,
    )

    store = SqlKeyStore(postgres_dialect(schema), lambda: connect_postgres(dsn, schema))
    _log.info("key_store_opened", backend="postgres", schema=schema)
    return store
