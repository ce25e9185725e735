"""What only the SQLite batch store does; the behaviour both backends share is
tested on both in tests/integration/test_gateway_batch_stores.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.gateway.adapters.batch_store import SqliteBatchStore
from services.gateway.batches import BatchCounts, BatchRecord, BatchStatus
from services.gateway.domain import Principal
from tests.unit.gateway.gateway_fakes import text_item

ALICE = Principal("acme", "reports", "alice", "paid")

# The batches table as released before leases, with one batch in it.
_BEFORE_LEASES = (
    """
    CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, principal TEXT NOT NULL,
        status TEXT NOT NULL, metadata TEXT NOT NULL, created_at REAL NOT NULL,
        finished_at REAL, jobs TEXT NOT NULL, cancel_requested INTEGER NOT NULL,
        next_poll_at REAL NOT NULL, poll_attempt INTEGER NOT NULL,
        settled INTEGER NOT NULL
    )
    """,
    """
    INSERT INTO batches VALUES ('batch_old', 'acme',
        '{"service": "reports", "tenant_id": "acme", "user_tier": "paid",
          "user_id": "alice"}',
        'in_progress', '{}', 100.0, NULL, '[]', 0, 100.0, 2, 0)
    """,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "batches.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteBatchStore]:
    opened = SqliteBatchStore(path)
    yield opened
    opened.close()


async def test_the_database_is_wal_with_full_sync(
    store: SqliteBatchStore, path: Path
) -> None:
    await store.create(
        BatchRecord("b", ALICE, BatchStatus.QUEUED, {}, 1.0), [text_item("a", "x")]
    )
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT COUNT(*) FROM batch_items").fetchone() == (1,)


async def test_a_store_from_before_leases_is_upgraded_in_place(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        for statement in _BEFORE_LEASES:
            db.execute(statement)
    store = SqliteBatchStore(path)
    try:
        record = await store.claim("batch_old", "me", 100.0, 400.0)
        assert record is not None
        assert (record.status, record.poll_attempt) == (BatchStatus.IN_PROGRESS, 2)
        assert await store.claim("batch_old", "other", 101.0, 401.0) is None
        assert await store.counts("batch_old") == BatchCounts(0, 0, 0, 0)
    finally:
        store.close()


def test_an_unusable_path_fails_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(Exception, match="batch store"):
        SqliteBatchStore(blocker / "batches.sqlite3")
