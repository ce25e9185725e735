"""The batch lane's store, the same on SQLite and on Postgres, and shared by replicas.

Each test opens real stores through the gateway's own selection
(:func:`services.gateway.app.open_batch_store`); "two replicas" are two stores (and
two batch services) on one database: one SQLite file, or one Postgres schema.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from services.core.clock import FakeClock
from services.core.errors import BackendUnavailableError
from services.gateway.adapters.batch_store_sql import SqlBatchStore
from services.gateway.adapters.input_files import DirectoryInputFiles
from services.gateway.app import open_batch_store
from services.gateway.batches import (
    TICKET_ITEM_ID,
    BatchConfig,
    BatchCounts,
    BatchRecord,
    BatchService,
    BatchStatus,
    ItemError,
    ItemOutcome,
    PendingItem,
    UpstreamJob,
)
from services.gateway.config import GatewaySettings
from services.gateway.domain import (
    Principal,
    RecordResult,
    RequestType,
    Usage,
    UsageRecord,
)
from services.gateway.http.batches import InputFiles
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.chat_requests import chat_request
from tests.unit.gateway.gateway_fakes import text_item

pytestmark = pytest.mark.integration

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
LEASE = 300.0
SPAN = 10.0  # the simulator's batch_completion_seconds


@dataclass
class Backend:
    """A batch store database, and the gateway settings that select it."""

    name: str
    settings: GatewaySettings


def _settings(**store: object) -> GatewaySettings:
    return GatewaySettings(
        ratelimit_address="unused:1",
        cache_address="unused:1",
        router_address="unused:1",
        costs_address="unused:1",
        keys_file=Path("unused.yaml"),
        **store,  # type: ignore[arg-type]
    )


def _backend(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend]:
    if name == "sqlite":
        yield Backend(
            "sqlite", _settings(batch_store_path=tmp_path / "state" / "b.sqlite3")
        )
        return
    import psycopg

    dsn: str = request.getfixturevalue("postgres_dsn")
    # The store creates its schema; the fixture drops it.
    schema = f"gw_{uuid.uuid4().hex[:12]}"
    yield Backend("postgres", _settings(postgres_dsn=dsn, postgres_schema=schema))
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request.param, request, tmp_path)


OpenStore = Callable[[], SqlBatchStore]


@pytest.fixture
def open_store(backend: Backend) -> Iterator[OpenStore]:
    """Open stores (replicas) on the backend; each closed after the test."""
    opened: list[SqlBatchStore] = []

    def open_one() -> SqlBatchStore:
        store = open_batch_store(backend.settings)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> SqlBatchStore:
    return open_store()


def _record(batch_id: str = "batch_1", created_at: float = 100.0) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        principal=ALICE,
        status=BatchStatus.QUEUED,
        metadata={"job": "x"},
        created_at=created_at,
        next_poll_at=created_at,
    )


async def _claimed(store: SqlBatchStore, batch_id: str, owner: str) -> BatchRecord:
    record = await store.claim(batch_id, owner, 100.0, 100.0 + LEASE)
    assert record is not None
    return record


# --- what one store keeps ----------------------------------------------------


async def test_a_batch_and_its_items_survive_a_reopen(
    open_store: OpenStore, backend: Backend
) -> None:
    store = open_store()
    record = _record()
    await store.create(record, ITEMS)
    record = await _claimed(store, "batch_1", "a")
    record.status = BatchStatus.IN_PROGRESS
    record.jobs = [
        UpstreamJob("gpt-4.1-mini", "file-1", "batch_up", "in_progress"),
        UpstreamJob("gpt-4.1-nano", "file-2", collected=True, cancel_sent=True),
    ]
    record.cancel_requested = True
    record.poll_attempt = 3
    record.next_poll_at = 108.125
    record.finished_at = 1_767_225_600.123456
    assert await store.save(record, "a")
    store.close()

    reopened = open_store()
    assert await reopened.get("batch_1") == record
    assert await reopened.get("batch_2") is None
    assert [p.request for p in await reopened.pending("batch_1")] == ITEMS
    assert await reopened.counts("batch_1") == BatchCounts(3, 0, 0, 0)


async def test_unsettled_lists_open_batches_oldest_first(store: SqlBatchStore) -> None:
    await store.create(_record("late", 200.0), ITEMS[:1])
    await store.create(_record("early", 100.0), ITEMS[:1])
    await store.create(_record("done", 50.0), ITEMS[:1])
    done = await _claimed(store, "done", "a")
    done.settled = True
    assert await store.save(done, "a")
    assert [r.batch_id for r in await store.unsettled()] == ["early", "late"]
    # next_poll_at is the creation time here: only "early" is due at 150.
    assert [r.batch_id for r in await store.unsettled(due_by=150.0)] == ["early"]


async def test_outcomes_fill_pending_items_once(store: SqlBatchStore) -> None:
    await store.create(_record(), ITEMS)
    await store.set_models("batch_1", {"a": "gpt-4.1-mini", "c": "gpt-4.1-mini"})
    answer = ItemOutcome("a", "answer a", "gpt-4.1-mini-2025", Usage(10, 2, 5, 1))
    failure = ItemOutcome("c", error=ItemError("server_error", "boom"))
    assert await store.record_outcomes("batch_1", [answer, failure]) == 2
    # A second download of the same files changes nothing.
    again = ItemOutcome("a", "other", "x", Usage(1, 0, 1))
    assert await store.record_outcomes("batch_1", [again, failure]) == 0

    assert await store.pending("batch_1") == [PendingItem(ITEMS[1], "")]
    assert await store.counts("batch_1") == BatchCounts(3, 1, 1, 0)
    results = [r for _, r in await store.results("batch_1", 0, 10)]
    assert [(r.custom_id, r.output_text, r.model) for r in results] == [
        ("a", "answer a", "gpt-4.1-mini-2025"),
        ("c", "", "gpt-4.1-mini"),  # the model it was sent to
    ]
    assert results[0].usage == Usage(10, 2, 5, 1)
    assert results[0].error is None
    assert results[1].error == ItemError("server_error", "boom")


async def test_an_answer_with_nul_characters_is_stored(
    store: SqlBatchStore, backend: Backend
) -> None:
    await store.create(_record(), ITEMS[:1])
    odd = ItemOutcome("a", "before\x00after", "m\x00", Usage(1, 0, 1))
    assert await store.record_outcomes("batch_1", [odd]) == 1
    (_, result), *_ = await store.results("batch_1", 0, 10)
    # Postgres' text cannot hold NUL: the replacement character stands in.
    nul = "\x00" if backend.name == "sqlite" else "\ufffd"
    assert (result.output_text, result.model) == (f"before{nul}after", f"m{nul}")


async def test_fail_pending_by_model(store: SqlBatchStore) -> None:
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
    store: SqlBatchStore,
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
    await store.mark_booked("batch_1", "b", 5_000_000_000)  # past 32 bits
    assert await store.unbooked("batch_1", 10) == []
    assert await store.counts("batch_1") == BatchCounts(3, 2, 1, 5_000_000_011)
    costs = [r.cost_micros for _, r in await store.results("batch_1", 0, 10)]
    assert costs == [11, 5_000_000_000, 0]


async def test_results_page_by_position(store: SqlBatchStore) -> None:
    items = [text_item(f"i{n}", "x") for n in range(5)]
    await store.create(_record(), items)
    await store.record_outcomes(
        "batch_1", [ItemOutcome(f"i{n}", "ok", "m") for n in (0, 1, 3, 4)]
    )
    first = await store.results("batch_1", 0, 2)
    assert [(p, r.custom_id) for p, r in first] == [(1, "i0"), (2, "i1")]
    rest = await store.results("batch_1", first[-1][0], 10)
    assert [(p, r.custom_id) for p, r in rest] == [(4, "i3"), (5, "i4")]


async def test_a_duplicate_batch_id_is_refused_atomically(store: SqlBatchStore) -> None:
    await store.create(_record(), ITEMS[:1])
    with pytest.raises(BackendUnavailableError, match="batch store"):
        await store.create(_record(), ITEMS)
    assert await store.counts("batch_1") == BatchCounts(1, 0, 0, 0)
    # The store works on after the failed transaction.
    await store.create(_record("batch_2"), ITEMS)
    assert await store.counts("batch_2") == BatchCounts(3, 0, 0, 0)


# --- leases and cancels -------------------------------------------------------


async def test_a_lease_excludes_other_owners_until_it_ends(
    store: SqlBatchStore,
) -> None:
    await store.create(_record(), ITEMS[:1])
    assert await store.claim("batch_1", "a", 100.0, 400.0) == _record()
    assert await store.claim("batch_1", "b", 399.0, 699.0) is None
    # The holder renews; the other still waits.
    assert await store.claim("batch_1", "a", 200.0, 500.0) is not None
    assert await store.claim("batch_1", "b", 400.0, 700.0) is None
    # A lease that ended (a crashed holder) is taken over.
    assert await store.claim("batch_1", "b", 500.0, 800.0) is not None
    assert await store.claim("batch_1", "a", 501.0, 801.0) is None
    # A released lease is free at once.
    await store.release("batch_1", "a")  # not a's: changes nothing
    assert await store.claim("batch_1", "a", 502.0, 802.0) is None
    await store.release("batch_1", "b")
    assert await store.claim("batch_1", "a", 502.0, 802.0) is not None
    assert await store.claim("batch_2", "a", 502.0, 802.0) is None  # unknown


async def test_only_the_lease_holder_saves(store: SqlBatchStore) -> None:
    await store.create(_record(), ITEMS[:1])
    record = await _claimed(store, "batch_1", "a")
    record.status = BatchStatus.IN_PROGRESS
    assert not await store.save(record, "b")
    assert (await store.get("batch_1")) == _record()
    assert await store.save(record, "a")
    await store.release("batch_1", "a")
    record.status = BatchStatus.COMPLETED
    assert not await store.save(record, "a")  # released: no longer a's
    stored = await store.get("batch_1")
    assert stored is not None
    assert stored.status is BatchStatus.IN_PROGRESS


async def test_a_settled_batch_is_never_claimed(store: SqlBatchStore) -> None:
    await store.create(_record(), ITEMS[:1])
    record = await _claimed(store, "batch_1", "a")
    record.status = BatchStatus.COMPLETED
    record.settled = True
    assert await store.save(record, "a")
    await store.release("batch_1", "a")
    assert await store.claim("batch_1", "a", 100.0, 400.0) is None


async def test_a_cancel_from_another_replica_survives_the_holders_save(
    open_store: OpenStore,
) -> None:
    holder, other = open_store(), open_store()
    await holder.create(_record(), ITEMS[:1])
    working = await _claimed(holder, "batch_1", "a")
    working.status = BatchStatus.IN_PROGRESS
    working.next_poll_at = 130.0
    working.poll_attempt = 1

    assert await other.request_cancel("batch_1", 110.0)
    assert not await other.request_cancel("batch_1", 111.0)  # marked already
    # The holder ends its round without having seen the cancel.
    assert await holder.save(working, "a")
    stored = await other.get("batch_1")
    assert stored is not None
    assert (stored.cancel_requested, stored.status, stored.next_poll_at) == (
        True,
        BatchStatus.CANCELLING,
        110.0,  # due at once, not after the holder's backoff
    )
    assert stored.poll_attempt == 1
    # Its next round sees the cancel.
    seen = await holder.claim("batch_1", "a", 110.0, 410.0)
    assert seen is not None
    assert seen.cancel_requested


async def test_a_finished_batch_cannot_be_marked_for_cancel(
    store: SqlBatchStore,
) -> None:
    await store.create(_record(), ITEMS[:1])
    record = await _claimed(store, "batch_1", "a")
    record.status = BatchStatus.COMPLETED
    assert await store.save(record, "a")
    assert not await store.request_cancel("batch_1", 120.0)
    assert not await store.request_cancel("batch_2", 120.0)  # unknown
    stored = await store.get("batch_1")
    assert stored is not None
    assert (stored.status, stored.cancel_requested) == (BatchStatus.COMPLETED, False)


async def test_two_replicas_see_each_others_batches_and_never_claim_one_twice(
    open_store: OpenStore,
) -> None:
    one, two = open_store(), open_store()
    ids = [f"batch_{n:02}" for n in range(24)]
    for index, batch_id in enumerate(ids):
        await (one if index % 2 else two).create(
            _record(batch_id, 100.0 + index), ITEMS
        )
    assert [r.batch_id for r in await one.unsettled()] == ids
    assert [r.batch_id for r in await two.unsettled()] == ids

    claims = await asyncio.gather(
        *(
            store.claim(batch_id, owner, 100.0, 400.0)
            for batch_id in ids
            for store, owner in ((one, "one"), (two, "two"), (one, "three"))
        )
    )
    for index, batch_id in enumerate(ids):
        winners = [c for c in claims[index * 3 : index * 3 + 3] if c is not None]
        assert [w.batch_id for w in winners] == [batch_id]
    # What one replica records, the other reads.
    await one.record_outcomes(ids[0], [ItemOutcome("b", "hello", "m")])
    assert [r.output_text for _, r in await two.results(ids[0], 0, 10)] == ["hello"]


# --- two batch services (replicas) on one store -------------------------------


class CountingLedger:
    """Books each request id once, for 1 micro-dollar, like the costs service."""

    def __init__(self) -> None:
        self.booked: set[str] = set()

    async def record(self, record: UsageRecord) -> RecordResult:
        duplicate = record.request_id in self.booked
        self.booked.add(record.request_id)
        return RecordResult(1, duplicate=duplicate)


@dataclass
class Replicas:
    """Two batch services on two stores of one database, one simulator."""

    one: BatchService
    two: BatchService
    clock: FakeClock
    sim: RunningSimulator
    ledger: CountingLedger

    async def drive(self, batch_id: str, rounds: int = 40) -> BatchStatus:
        """Poll on both replicas, stepping time, until the batch is settled."""
        for _ in range(rounds):
            await asyncio.gather(self.one.poll_once(), self.two.poll_once())
            view = await self.two.get(ALICE, batch_id)
            if view.status.terminal and not await self.one.poll_once():
                return view.status
            self.clock.advance(1.0)
        raise AssertionError(f"batch {batch_id} did not settle")


@pytest.fixture
async def replicas(open_store: OpenStore) -> AsyncIterator[Replicas]:
    clock = FakeClock()
    settings = SimulatorSettings(port=0, latency_ms=0, batch_completion_seconds=SPAN)
    async with (
        await start_simulator(settings, clock=clock) as sim,
        AsyncOpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0) as client,
    ):
        ledger = CountingLedger()
        config = BatchConfig(poll_initial_seconds=1.0, poll_max_seconds=2.0)

        def service(owner: str) -> BatchService:
            return BatchService(
                store=open_store(),
                client=client,
                ledger=ledger,
                clock=clock,
                config=config,
                owner=owner,
            )

        yield Replicas(service("one"), service("two"), clock, sim, ledger)


async def test_a_batch_submitted_to_one_replica_runs_once_and_answers_on_both(
    replicas: Replicas,
) -> None:
    view = await replicas.one.submit(ALICE, [text_item("x", "hi"), ITEMS[2]], {})
    assert (await replicas.two.get(ALICE, view.batch_id)).total_items == 2

    assert await replicas.drive(view.batch_id) is BatchStatus.COMPLETED
    assert len(replicas.sim.state.batches) == 1  # sent upstream once
    assert replicas.ledger.booked == {f"{view.batch_id}:x", f"{view.batch_id}:c"}
    for replica in (replicas.one, replicas.two):
        results = [r async for r in replica.results(ALICE, view.batch_id)]
        assert [(r.custom_id, r.error) for r in results] == [("x", None), ("c", None)]


async def test_a_maintenance_ticket_queued_on_one_replica_is_answered_on_the_other(
    replicas: Replicas,
) -> None:
    ticket = await replicas.one.enqueue_ticket(
        ALICE,
        chat_request("What is our refund policy?"),
    )
    assert await replicas.drive(ticket) is BatchStatus.COMPLETED
    (answer,) = [r async for r in replicas.two.results(ALICE, ticket)]
    assert (answer.custom_id, answer.error) == (TICKET_ITEM_ID, None)
    assert answer.output_text


async def test_a_cancel_on_one_replica_stops_the_other_replicas_work(
    replicas: Replicas, open_store: OpenStore
) -> None:
    view = await replicas.one.submit(
        ALICE, [text_item(f"i{n}", "x") for n in range(4)], {}
    )
    assert await replicas.one.poll_once() == 1  # sent upstream by replica one
    (upstream,) = replicas.sim.state.batches.values()
    # Replica one is in the middle of a round: it holds the lease.
    spy = open_store()
    now = replicas.clock.now()
    held = await spy.claim(view.batch_id, "one", now, now + LEASE)
    assert held is not None

    cancelling = await replicas.two.cancel(ALICE, view.batch_id)
    assert cancelling.status is BatchStatus.CANCELLING
    assert upstream.cancelling_at is None  # replica two left it to the holder
    assert await replicas.two.poll_once() == 0  # nor does its loop take it
    await spy.release(view.batch_id, "one")

    # Replica one's next round, due at once, tells the upstream.
    assert await replicas.one.poll_once() == 1
    assert upstream.cancelling_at == now
    assert await replicas.drive(view.batch_id) is BatchStatus.CANCELLED
    assert (await replicas.one.get(ALICE, view.batch_id)).status is (
        BatchStatus.CANCELLED
    )


# --- input files of the HTTP door (and their directory, the embedded default) ---


@pytest.fixture(params=["directory", "sqlite", "postgres"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InputFiles]:
    if request.param == "directory":
        yield DirectoryInputFiles(tmp_path / "files")
        return
    for backend in _backend(request.param, request, tmp_path):
        store = open_batch_store(backend.settings)
        yield store
        store.close()


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _read(files: InputFiles, file_id: str) -> bytes:
    return b"".join([piece async for piece in files.file_content(file_id)])


META: dict[str, Any] = {"id": "file-1", "tenant_id": "acme", "bytes": 0}


async def test_a_file_is_kept_whole_and_visible_once_described(
    files: InputFiles,
) -> None:
    # Pieces of odd sizes, more than a MiB in all.
    pieces = [bytes([n % 251]) * (300_000 + n) for n in range(5)]
    assert await files.put_content("file-1", _pieces(*pieces)) == sum(map(len, pieces))
    assert await files.file_meta("file-1") is None
    await files.put_meta(META)
    assert await files.file_meta("file-1") == META
    assert await _read(files, "file-1") == b"".join(pieces)
    await files.put_content("file-2", _pieces())
    assert await _read(files, "file-2") == b""

    await files.delete_file("file-1")
    assert await files.file_meta("file-1") is None
    assert await _read(files, "file-1") == b""


async def test_an_upload_that_fails_midway_leaves_nothing(files: InputFiles) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 2_000_000
        raise ValueError("too big")

    with pytest.raises(ValueError, match="too big"):
        await files.put_content("file-1", broken())
    assert await files.file_meta("file-1") is None
    assert await _read(files, "file-1") == b""
