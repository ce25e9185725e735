"""The SQLite async results store of the batch lane."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.errors import BackendUnavailableError
from services.gateway.adapters.batch_store import SqliteBatchStore
from services.gateway.batches import (
    BatchCounts,
    BatchRecord,
    BatchStatus,
    ItemError,
    ItemOutcome,
    PendingItem,
    UpstreamJob,
)
from services.gateway.domain import Principal, RequestType, Usage
from tests.unit.gateway.gateway_fakes import text_item

ALICE = Principal("acme", "reports", "alice", "paid")
ITEMS = [
    text_item(
        "a",
        "first",
        "be brief",
        model="auto",
        request_type=RequestType.SUMMARIZE,
        max_output_tokens=50,
        temperature=0.2,
    ),
    text_item("b", "second", model="gpt-4.1-nano"),
    text_item("c", "third"),
]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "batches.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteBatchStore]:
    opened = SqliteBatchStore(path)
    yield opened
    opened.close()


def _record(batch_id: str = "batch_1", created_at: float = 100.0) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        principal=ALICE,
        status=BatchStatus.QUEUED,
        metadata={"job": "x"},
        created_at=created_at,
        next_poll_at=created_at,
    )


async def test_a_batch_and_its_items_survive_a_reopen(
    store: SqliteBatchStore, path: Path
) -> None:
    record = _record()
    await store.create(record, ITEMS)
    record.status = BatchStatus.IN_PROGRESS
    record.jobs = [
        UpstreamJob("gpt-4.1-mini", "file-1", "batch_up", "in_progress"),
        UpstreamJob("gpt-4.1-nano", "file-2", collected=True, cancel_sent=True),
    ]
    record.cancel_requested = True
    record.poll_attempt = 3
    record.next_poll_at = 108.0
    await store.save(record)
    store.close()

    reopened = SqliteBatchStore(path)
    try:
        assert await reopened.get("batch_1") == record
        assert await reopened.get("batch_2") is None
        assert [p.request for p in await reopened.pending("batch_1")] == ITEMS
        assert await reopened.counts("batch_1") == BatchCounts(3, 0, 0, 0)
    finally:
        reopened.close()


async def test_the_database_is_wal_with_full_sync(
    store: SqliteBatchStore, path: Path
) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_unsettled_lists_open_batches_oldest_first(
    store: SqliteBatchStore,
) -> None:
    await store.create(_record("late", 200.0), ITEMS[:1])
    await store.create(_record("early", 100.0), ITEMS[:1])
    done = _record("done", 50.0)
    await store.create(done, ITEMS[:1])
    done.settled = True
    await store.save(done)
    assert [r.batch_id for r in await store.unsettled()] == ["early", "late"]
    # next_poll_at is the creation time here: only "early" is due at 150.
    assert [r.batch_id for r in await store.unsettled(due_by=150.0)] == ["early"]


async def test_outcomes_fill_pending_items_once(store: SqliteBatchStore) -> None:
    await store.create(_record(), ITEMS)
    await store.set_models("batch_1", {"a": "gpt-4.1-mini", "c": "gpt-4.1-mini"})
    answer = ItemOutcome("a", "answer a", "gpt-4.1-mini-2025", Usage(10, 2, 5))
    failure = ItemOutcome("c", error=ItemError("server_error", "boom"))
    assert await store.record_outcomes("batch_1", [answer, failure]) == 2
    # A second download of the same files changes nothing.
    again = ItemOutcome("a", "other", "x", Usage(1, 0, 1))
    assert await store.record_outcomes("batch_1", [again]) == 0

    assert await store.pending("batch_1") == [PendingItem(ITEMS[1], "")]
    assert await store.counts("batch_1") == BatchCounts(3, 1, 1, 0)
    results = [r for _, r in await store.results("batch_1", 0, 10)]
    assert [(r.custom_id, r.output_text, r.model) for r in results] == [
        ("a", "answer a", "gpt-4.1-mini-2025"),
        ("c", "", "gpt-4.1-mini"),  # the model it was sent to
    ]
    assert results[0].usage == Usage(10, 2, 5)
    assert results[0].error is None
    assert results[1].error == ItemError("server_error", "boom")


async def test_fail_pending_by_model(store: SqliteBatchStore) -> None:
    await store.create(_record(), ITEMS)
    await store.set_models(
        "batch_1", {"a": "gpt-4.1-mini", "b": "gpt-4.1-nano", "c": "gpt-4.1-mini"}
    )
    cancelled = ItemError("batch_cancelled", "cancelled")
    assert await store.fail_pending("batch_1", cancelled, models=[]) == 0
    assert (
        await store.fail_pending("batch_1", cancelled, keep_models=["gpt-4.1-mini"])
        == 1
    )
    assert [p.request.custom_id for p in await store.pending("batch_1")] == ["a", "c"]
    expired = ItemError("batch_expired", "late")
    assert await store.fail_pending("batch_1", expired, models=["gpt-4.1-mini"]) == 2
    assert await store.fail_pending("batch_1", expired) == 0
    errors = [r.error for _, r in await store.results("batch_1", 0, 10)]
    assert errors == [expired, cancelled, expired]


async def test_booking_marks_cost_and_leaves_failed_items_out(
    store: SqliteBatchStore,
) -> None:
    await store.create(_record(), ITEMS)
    await store.set_models("batch_1", {"a": "gpt-4.1-mini", "b": "gpt-4.1-nano"})
    await store.record_outcomes(
        "batch_1",
        [
            ItemOutcome("a", "x", "", Usage(10, 0, 5)),
            ItemOutcome("b", "y", "gpt-4.1-nano", Usage(7, 0, 3)),
            ItemOutcome("c", error=ItemError("server_error", "boom")),
        ],
    )
    unbooked = await store.unbooked("batch_1", 10)
    assert [(u.custom_id, u.requested_model, u.model) for u in unbooked] == [
        ("a", "", "gpt-4.1-mini"),
        ("b", "gpt-4.1-nano", "gpt-4.1-nano"),
    ]
    assert [u.custom_id for u in await store.unbooked("batch_1", 1)] == ["a"]
    await store.mark_booked("batch_1", "a", 11)
    await store.mark_booked("batch_1", "b", 4)
    assert await store.unbooked("batch_1", 10) == []
    assert await store.counts("batch_1") == BatchCounts(3, 2, 1, 15)
    costs = [r.cost_micros for _, r in await store.results("batch_1", 0, 10)]
    assert costs == [11, 4, 0]


async def test_results_page_by_position(store: SqliteBatchStore) -> None:
    items = [text_item(f"i{n}", "x") for n in range(5)]
    await store.create(_record(), items)
    await store.record_outcomes(
        "batch_1",
        [ItemOutcome(f"i{n}", "ok", "m") for n in (0, 1, 3, 4)],
    )
    first = await store.results("batch_1", 0, 2)
    assert [(p, r.custom_id) for p, r in first] == [(1, "i0"), (2, "i1")]
    rest = await store.results("batch_1", first[-1][0], 10)
    assert [(p, r.custom_id) for p, r in rest] == [(4, "i3"), (5, "i4")]


async def test_a_duplicate_batch_id_is_refused_atomically(
    store: SqliteBatchStore,
) -> None:
    await store.create(_record(), ITEMS[:1])
    with pytest.raises(BackendUnavailableError, match="batch store"):
        await store.create(_record(), ITEMS)
    assert await store.counts("batch_1") == BatchCounts(1, 0, 0, 0)
