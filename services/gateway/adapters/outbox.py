"""A durable outbox of usage records, in SQLite (WAL, synchronous FULL).

A record is committed here before the request is acknowledged whenever the ledger
cannot take it; a background task replays records oldest first, and only deletes one
after the ledger acknowledged it. The ledger is idempotent on request id, so a replay
after a crash between delivery and delete books nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

from services.core.errors import BackendUnavailableError
from services.gateway.domain import CacheStatus, Principal, Usage, UsageRecord

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS outbox (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        request_id TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        reason TEXT NOT NULL
    )
    """,
)


def _encode(record: UsageRecord) -> str:
    data = asdict(record)
    data["cache_status"] = record.cache_status.value
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _decode(raw: str) -> UsageRecord:
    # Every stored field goes back in by name, so a field added to the record is
    # replayed too; one missing from an older file takes its default.
    data = json.loads(raw)
    return UsageRecord(
        **{
            **data,
            "principal": Principal.from_json(data["principal"]),
            "usage": Usage(**data["usage"]),
            "cache_status": CacheStatus(data["cache_status"]),
        }
    )


class SqliteOutbox:
    """An :class:`~services.gateway.ports.OutboxPort` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.commit()

    def _run(
        self, sql: str, params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                rows = self._db.execute(sql, params).fetchall()
                self._db.commit()
            except sqlite3.Error as error:
                raise BackendUnavailableError(f"outbox: {error}") from error
        return rows

    async def put(self, record: UsageRecord) -> None:
        """Persist a record; a second put of the same request id is ignored."""
        await asyncio.to_thread(
            self._run,
            "INSERT OR IGNORE INTO outbox (request_id, record) VALUES (?, ?)",
            (record.request_id, _encode(record)),
        )

    async def pending(self, limit: int) -> list[tuple[int, UsageRecord]]:
        """The oldest records, with their sequence numbers."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT sequence, record FROM outbox ORDER BY sequence LIMIT ?",
            (limit,),
        )
        return [(int(str(seq)), _decode(str(raw))) for seq, raw in rows]

    async def delete(self, sequence: int) -> None:
        """Forget a delivered record."""
        await asyncio.to_thread(
            self._run, "DELETE FROM outbox WHERE sequence = ?", (sequence,)
        )

    async def depth(self) -> int:
        """How many records wait."""
        rows = await asyncio.to_thread(self._run, "SELECT COUNT(*) FROM outbox")
        return int(str(rows[0][0]))

    async def dead_letter(self, record: UsageRecord, reason: str) -> None:
        """Keep a record the ledger refused (once per request id)."""
        await asyncio.to_thread(
            self._run,
            "INSERT OR IGNORE INTO dead_letters (request_id, record, reason)"
            " VALUES (?, ?, ?)",
            (record.request_id, _encode(record), reason),
        )

    async def dead_letters(self) -> list[tuple[UsageRecord, str]]:
        """Records the ledger refused, with the reason."""
        rows = await asyncio.to_thread(
            self._run, "SELECT record, reason FROM dead_letters ORDER BY rowid"
        )
        return [(_decode(str(raw)), str(reason)) for raw, reason in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
