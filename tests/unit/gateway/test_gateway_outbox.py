"""The SQLite outbox of usage records waiting for the ledger."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.domain import CacheStatus, Principal, Usage, UsageRecord

BASE_RECORD = UsageRecord(
    request_id="",
    principal=Principal("acme", "chat", "alice", "paid"),
    model="gpt-4.1-mini",
    requested_model="",
    deployment="stable",
    usage=Usage(input_tokens=120, cached_input_tokens=20, output_tokens=45),
    cache_status=CacheStatus.MISS,
    occurred_at=1_767_225_600.125,
)


def _record(request_id: str, **changes: Any) -> UsageRecord:
    return dataclasses.replace(BASE_RECORD, request_id=request_id, **changes)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite3"


@pytest.fixture
def outbox(path: Path) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox(path)
    yield box
    box.close()


async def test_an_empty_outbox(outbox: SqliteOutbox) -> None:
    assert await outbox.depth() == 0
    assert await outbox.pending(10) == []


async def test_pending_lists_records_oldest_first_and_round_trips_them(
    outbox: SqliteOutbox,
) -> None:
    records = [
        _record("req-b"),
        _record("req-a", cache_status=CacheStatus.SEMANTIC, batch=True),
        _record("req-c", requested_model="gpt-4.1"),
    ]
    for record in records:
        await outbox.put(record)

    pending = await outbox.pending(10)

    assert [record for _, record in pending] == records
    sequences = [sequence for sequence, _ in pending]
    assert sequences == sorted(sequences)
    assert await outbox.depth() == 3


async def test_pending_honours_its_limit(outbox: SqliteOutbox) -> None:
    for n in range(5):
        await outbox.put(_record(f"req-{n}"))

    pending = await outbox.pending(2)

    assert [record.request_id for _, record in pending] == ["req-0", "req-1"]


async def test_delete_forgets_one_record(outbox: SqliteOutbox) -> None:
    for n in range(3):
        await outbox.put(_record(f"req-{n}"))
    [_, (middle, _), _] = await outbox.pending(10)

    await outbox.delete(middle)
    await outbox.delete(middle)

    assert [r.request_id for _, r in await outbox.pending(10)] == ["req-0", "req-2"]
    assert await outbox.depth() == 2


async def test_a_duplicate_request_id_is_ignored(outbox: SqliteOutbox) -> None:
    first = _record("req-1")
    await outbox.put(first)
    await outbox.put(_record("req-1", model="gpt-4.1"))

    assert await outbox.depth() == 1
    [(_, kept)] = await outbox.pending(10)
    assert kept == first


async def test_records_survive_reopening_the_file(path: Path) -> None:
    box = SqliteOutbox(path)
    await box.put(_record("req-1"))
    await box.put(_record("req-2"))
    box.close()

    reopened = SqliteOutbox(path)
    try:
        assert await reopened.depth() == 2
        pending = await reopened.pending(10)
        assert [r for _, r in pending] == [_record("req-1"), _record("req-2")]
        # Sequence numbers keep growing: a new record goes after the old ones.
        await reopened.put(_record("req-3"))
        assert [r.request_id for _, r in await reopened.pending(10)][-1] == "req-3"
    finally:
        reopened.close()


def _every_field_set() -> UsageRecord:
    """A record in which no field, nested ones included, keeps its default."""
    record = UsageRecord(
        request_id="req-full",
        principal=Principal(
            "acme", "chat", "alice", "paid", ("auto", "gpt-4.1-mini"), "key_0123"
        ),
        model="gpt-4.1-mini",
        requested_model="gpt-4.1",
        deployment="canary",
        usage=Usage(
            input_tokens=120,
            cached_input_tokens=20,
            output_tokens=45,
            reasoning_tokens=7,
        ),
        cache_status=CacheStatus.SEMANTIC,
        occurred_at=1_767_225_600.125,
        batch=True,
        budget_reservation_id="rsv_0123",
    )
    for value in (record, record.usage, record.principal):
        for item in dataclasses.fields(value):
            default = item.default
            assert getattr(value, item.name) not in ("", 0, None, False, default), (
                f"{type(value).__name__}.{item.name} is left at its default"
            )
    return record


async def test_every_field_survives_the_round_trip(path: Path) -> None:
    record = _every_field_set()
    box = SqliteOutbox(path)
    await box.put(record)
    await box.dead_letter(record, "UNKNOWN_MODEL")
    box.close()

    reopened = SqliteOutbox(path)
    try:
        [(_, pending)] = await reopened.pending(10)
        [(dead, _)] = await reopened.dead_letters()
    finally:
        reopened.close()

    assert pending == record
    assert dead == record
