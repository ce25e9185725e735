"""The batch lane against the real simulator's Files and Batches endpoints.

One FakeClock drives both the simulator's batch progress and the lane's polling,
so every test steps time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import openai
import pytest
from openai import AsyncOpenAI

from services.core.clock import FakeClock
from services.core.conversation import (
    FinishReason,
    FormatKind,
    Message,
    Prompt,
    ResponseFormat,
    Role,
    Tool,
)
from services.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from services.core.pricing import PricingTable, TokenUsage, load_pricing
from services.gateway.adapters.batch_store import SqliteBatchStore
from services.gateway.batches import (
    TICKET_ITEM_ID,
    BatchConfig,
    BatchItemRequest,
    BatchService,
    BatchStatus,
    ItemResult,
    UpstreamJob,
    jsonl_line,
)
from services.gateway.domain import (
    CacheStatus,
    Principal,
    RecordResult,
    RequestType,
    UsageRecord,
)
from services.gateway.ports import DependencyUnavailableError
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.batches import line_fails
from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultKind
from tests.chat_requests import chat_request
from tests.unit.gateway.gateway_fakes import text_item

SPAN = 10.0  # the simulator's batch_completion_seconds
ALICE = Principal("acme", "reports", "alice", "paid")
BOB = Principal("acme", "reports", "bob", "free")
MALLORY = Principal("globex", "reports", "mallory", "paid")
CONFIG = BatchConfig(poll_initial_seconds=1.0, poll_max_seconds=4.0, tick_seconds=1.0)


class PricingLedger:
    """Books each request id once at the packaged prices, like the costs service.

    A repeated request id books nothing and answers the first booking's cost with
    ``duplicate=True``. ``unavailable`` makes it unreachable.
    """

    def __init__(self, pricing: PricingTable) -> None:
        self.pricing = pricing
        self.unavailable = False
        self.booked: dict[str, tuple[UsageRecord, int]] = {}
        self.calls: list[str] = []

    def price(self, record: UsageRecord) -> int:
        usage = record.usage
        return self.pricing.cost_micros(
            record.model,
            TokenUsage(
                usage.input_tokens, usage.cached_input_tokens, usage.output_tokens
            ),
            at=datetime.fromtimestamp(record.occurred_at, UTC),
            batch=record.batch,
        )

    async def record(self, record: UsageRecord) -> RecordResult:
        if self.unavailable:
            raise DependencyUnavailableError("costs", "costs down")
        self.calls.append(record.request_id)
        if record.request_id in self.booked:
            return RecordResult(self.booked[record.request_id][1], duplicate=True)
        cost = self.price(record)
        self.booked[record.request_id] = (record, cost)
        return RecordResult(cost, duplicate=False)


@dataclass
class Lane:
    """A BatchService with everything it talks to."""

    service: BatchService
    store: SqliteBatchStore
    ledger: PricingLedger
    clock: FakeClock
    client: AsyncOpenAI
    sim: RunningSimulator
    path: Path

    def restart(self) -> Lane:
        """A new service on a reopened store, as after a process restart."""
        self.store.close()
        store = SqliteBatchStore(self.path)
        service = BatchService(
            store=store,
            client=self.client,
            ledger=self.ledger,
            clock=self.clock,
            config=CONFIG,
        )
        return Lane(
            service,
            store,
            self.ledger,
            self.clock,
            self.client,
            self.sim,
            self.path,
        )

    async def drive(
        self, principal: Principal, batch_id: str, *, rounds: int = 40
    ) -> list[BatchStatus]:
        """Step time and poll until the batch is settled; returns statuses seen."""
        seen: list[BatchStatus] = []
        for _ in range(rounds):
            await self.service.poll_once()
            view = await self.service.get(principal, batch_id)
            if not seen or seen[-1] is not view.status:
                seen.append(view.status)
            record = await self.store.get(batch_id)
            assert record is not None
            if record.settled:
                return seen
            self.clock.advance(1.0)
        raise AssertionError(f"batch {batch_id} did not settle; saw {seen}")

    async def results(self, principal: Principal, batch_id: str) -> list[ItemResult]:
        return [r async for r in self.service.results(principal, batch_id)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def sim(
    clock: FakeClock, sim_settings: dict[str, Any]
) -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(
        port=0, latency_ms=0, batch_completion_seconds=SPAN, **sim_settings
    )
    async with await start_simulator(settings, clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-sim", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
def lane(
    tmp_path: Path, clock: FakeClock, client: AsyncOpenAI, sim: RunningSimulator
) -> Iterator[Lane]:
    path = tmp_path / "batches.sqlite3"
    store = SqliteBatchStore(path)
    ledger = PricingLedger(load_pricing())
    service = BatchService(
        store=store, client=client, ledger=ledger, clock=clock, config=CONFIG
    )
    built = Lane(service, store, ledger, clock, client, sim, path)
    yield built
    built.store.close()


def _items(count: int, **fields: Any) -> list[BatchItemRequest]:
    return [
        text_item(f"item-{i}", f"Describe product {i}.", **fields) for i in range(count)
    ]


async def _direct_answer(
    client: AsyncOpenAI, item: BatchItemRequest, model: str
) -> tuple[str, int, int]:
    """What /v1/responses answers synchronously for the item's batch line."""
    body = json.loads(jsonl_line(item, model))["body"]
    response = await client.responses.create(**body)
    assert response.usage is not None
    return (
        response.output_text,
        response.usage.input_tokens,
        response.usage.output_tokens,
    )


# --- a batch that completes --------------------------------------------------


async def test_a_batch_completes_with_results_by_custom_id_at_the_batch_price(
    lane: Lane,
) -> None:
    items = [
        text_item("auto-1", "Summarize the quarterly report.", model="auto"),
        text_item(
            "nano-1",
            "Classify this ticket.",
            instructions="One word.",
            model="gpt-4.1-nano",
            request_type=RequestType.CLASSIFY,
            temperature=0.0,
        ),
        text_item("auto-2", "Write a product blurb.", max_output_tokens=12),
    ]
    view = await lane.service.submit(ALICE, items, {"job": "blurbs"})
    assert view.batch_id.startswith("batch_")
    assert view.status is BatchStatus.QUEUED
    assert (view.total_items, view.completed_items, view.failed_items) == (3, 0, 0)
    assert view.metadata == {"job": "blurbs"}
    assert view.created_at == lane.clock.now()
    assert view.finished_at is None

    seen = await lane.drive(ALICE, view.batch_id)
    # Polls back off (1, 2, 4 s), so the short finalizing phase may pass unseen.
    assert seen[:2] == [BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS]
    assert seen[-1] is BatchStatus.COMPLETED
    # One upstream batch per model, as the Batch API requires.
    upstream = list(lane.sim.state.batches.values())
    assert sorted(str(b.model) for b in upstream) == ["gpt-4.1-mini", "gpt-4.1-nano"]
    assert all(
        b.metadata == {"job": "blurbs", "tollgate_batch_id": view.batch_id}
        for b in upstream
    )

    done = await lane.service.get(ALICE, view.batch_id)
    assert done.status is BatchStatus.COMPLETED
    assert (done.total_items, done.completed_items, done.failed_items) == (3, 3, 0)
    assert done.finished_at is not None

    results = {r.custom_id: r for r in await lane.results(ALICE, view.batch_id)}
    assert list(results) == ["auto-1", "nano-1", "auto-2"]
    models = {
        "auto-1": "gpt-4.1-mini",
        "nano-1": "gpt-4.1-nano",
        "auto-2": "gpt-4.1-mini",
    }
    total_cost = 0
    for item in items:
        result = results[item.custom_id]
        text, input_tokens, output_tokens = await _direct_answer(
            lane.client, item, models[item.custom_id]
        )
        assert result.error is None
        assert result.model == models[item.custom_id]
        assert result.output_text == text
        assert (result.usage.input_tokens, result.usage.output_tokens) == (
            input_tokens,
            output_tokens,
        )
        record, cost = lane.ledger.booked[f"{view.batch_id}:{item.custom_id}"]
        assert record.batch is True
        assert record.usage == result.usage
        assert record.model == models[item.custom_id]
        assert record.principal == ALICE
        assert record.requested_model == (
            "" if item.model in ("", "auto") else item.model
        )
        full_price = lane.ledger.price(replace(record, batch=False))
        assert cost == result.cost_micros > 0
        assert cost * 2 in (full_price, full_price + 1)  # 50% off, one rounding up
        total_cost += cost
    assert done.cost_micros == total_cost


async def test_the_run_loop_polls_until_the_batch_completes(
    lane: Lane, clock: FakeClock, client: AsyncOpenAI
) -> None:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    service = BatchService(
        store=lane.store,
        client=client,
        ledger=lane.ledger,
        clock=clock,
        config=CONFIG,
        sleep=sleep,
    )
    view = await service.submit(ALICE, _items(2), {})
    task = asyncio.create_task(service.run())
    try:
        for _ in range(1000):
            await asyncio.sleep(0.001)
            if (await service.get(ALICE, view.batch_id)).status.terminal:
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    done = await service.get(ALICE, view.batch_id)
    assert done.status is BatchStatus.COMPLETED
    assert done.completed_items == 2


async def test_polls_back_off_exponentially_up_to_the_cap(
    lane: Lane, sim: RunningSimulator
) -> None:
    view = await lane.service.submit(ALICE, _items(1), {})
    await lane.service.poll_once()  # dispatch, then the first poll
    waits = []
    for _ in range(4):
        record = await lane.store.get(view.batch_id)
        assert record is not None
        waits.append(record.next_poll_at - lane.clock.now())
        polls = sim.state.stats.by_endpoint["batches"]
        # Not due yet: the upstream is left alone.
        await lane.service.poll_once()
        assert sim.state.stats.by_endpoint["batches"] == polls
        lane.clock.advance(waits[-1])
        await lane.service.poll_once()
        assert sim.state.stats.by_endpoint["batches"] == polls + 1
    assert waits == [1.0, 2.0, 4.0, 4.0]


# --- failures ----------------------------------------------------------------


@pytest.mark.parametrize("sim_settings", [{"batch_failure_rate": 0.4, "seed": 3}])
async def test_per_line_failures_are_failed_items_and_are_not_billed(
    lane: Lane,
) -> None:
    items = _items(20)
    expected = {i.custom_id for i in items if line_fails(3, i.custom_id, 0.4)}
    assert 0 < len(expected) < len(items)
    view = await lane.service.submit(ALICE, items, {})
    assert (await lane.drive(ALICE, view.batch_id))[-1] is BatchStatus.COMPLETED

    done = await lane.service.get(ALICE, view.batch_id)
    assert (done.completed_items, done.failed_items) == (
        len(items) - len(expected),
        len(expected),
    )
    results = await lane.results(ALICE, view.batch_id)
    assert [r.custom_id for r in results] == [i.custom_id for i in items]
    failed = {r.custom_id: r for r in results if r.error is not None}
    assert set(failed) == expected
    for result in failed.values():
        assert result.error is not None
        assert result.error.code == "server_error"
        assert result.output_text == ""
        assert result.cost_micros == 0
        assert result.model == "gpt-4.1-mini"
    booked = {r.request_id.split(":", 1)[1] for r, _ in lane.ledger.booked.values()}
    assert booked == {i.custom_id for i in items} - expected
    assert done.cost_micros == sum(cost for _, cost in lane.ledger.booked.values())


async def test_a_batch_that_fails_upstream_fails_every_item(lane: Lane) -> None:
    view = await lane.service.submit(ALICE, _items(3), {"sim_fault": "batch_failed"})
    seen = await lane.drive(ALICE, view.batch_id)
    assert seen[-1] is BatchStatus.FAILED
    done = await lane.service.get(ALICE, view.batch_id)
    assert (done.completed_items, done.failed_items, done.cost_micros) == (0, 3, 0)
    assert done.finished_at is not None
    results = await lane.results(ALICE, view.batch_id)
    assert {(r.error.code if r.error else "") for r in results} == {"batch_failed"}
    assert lane.ledger.booked == {}


async def test_an_upstream_outage_during_dispatch_is_retried(
    lane: Lane, sim: RunningSimulator, clock: FakeClock
) -> None:
    failing_creates = 1

    async def fail_batch_create(request: httpx2.Request) -> None:
        # Fail the batches.create right after a successful upload, once.
        nonlocal failing_creates
        creating = request.method == "POST" and request.url.path.endswith("/batches")
        if creating and failing_creates:
            failing_creates -= 1
            sim.state.faults.schedule(FaultKind.SERVER_ERROR, 1)

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [fail_batch_create]})
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="k", max_retries=0, http_client=http
    ) as client:
        service = BatchService(
            store=lane.store,
            client=client,
            ledger=lane.ledger,
            clock=clock,
            config=CONFIG,
        )
        view = await service.submit(ALICE, _items(2), {})
        sim.state.faults.schedule(FaultKind.UNAVAILABLE, 1)  # the upload fails
        await service.poll_once()
        status = (await service.get(ALICE, view.batch_id)).status
        assert status is BatchStatus.QUEUED
        assert not sim.state.files

        clock.advance(1.0)
        await service.poll_once()  # uploaded, then batches.create fails
        record = await lane.store.get(view.batch_id)
        assert record is not None
        (job,) = record.jobs
        assert job.input_file_id in sim.state.files
        assert not job.upstream_batch_id
        assert record.status is BatchStatus.QUEUED

        lane.service = service
        assert (await lane.drive(ALICE, view.batch_id))[-1] is BatchStatus.COMPLETED
    # The file uploaded before the failed create was the one used, never a second;
    # once the results were stored it was deleted with the output file.
    assert [b.input_file_id for b in sim.state.batches.values()] == [job.input_file_id]
    assert not sim.state.files
    assert len(lane.ledger.booked) == 2


async def test_a_failed_file_deletion_is_retried_and_loses_no_result(
    lane: Lane, sim: RunningSimulator, clock: FakeClock
) -> None:
    failing_deletes = 2

    async def fail_deletes(request: httpx2.Request) -> None:
        nonlocal failing_deletes
        if request.method == "DELETE" and failing_deletes:
            failing_deletes -= 1
            sim.state.faults.schedule(FaultKind.SERVER_ERROR, 1)

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [fail_deletes]})
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="k", max_retries=0, http_client=http
    ) as client:
        lane.service = BatchService(
            store=lane.store,
            client=client,
            ledger=lane.ledger,
            clock=clock,
            config=CONFIG,
        )
        view = await lane.service.submit(ALICE, _items(2), {})
        for _ in range(40):
            await lane.service.poll_once()
            view = await lane.service.get(ALICE, view.batch_id)
            if view.status.terminal:
                break
            clock.advance(1.0)
        # Ended and stored, but its files could not be deleted: it stays due.
        record = await lane.store.get(view.batch_id)
        assert record is not None
        assert (view.status, record.settled) == (BatchStatus.COMPLETED, False)
        (job,) = record.jobs
        assert not job.files_deleted
        assert {job.input_file_id, job.output_file_id} <= set(sim.state.files)
        stored = await lane.results(ALICE, view.batch_id)

        assert (await lane.drive(ALICE, view.batch_id))[-1] is BatchStatus.COMPLETED

    assert failing_deletes == 0
    assert not sim.state.files
    assert [(r.custom_id, r.error) for r in stored] == [
        ("item-0", None),
        ("item-1", None),
    ]
    assert await lane.results(ALICE, view.batch_id) == stored
    assert len(lane.ledger.booked) == 2


async def test_an_unreachable_ledger_is_retried_and_never_books_twice(
    lane: Lane,
) -> None:
    view = await lane.service.submit(ALICE, _items(3), {})
    lane.ledger.unavailable = True
    for _ in range(int(SPAN) + 2):
        await lane.service.poll_once()
        lane.clock.advance(1.0)
    waiting = await lane.service.get(ALICE, view.batch_id)
    assert waiting.status is BatchStatus.COMPLETED
    assert (waiting.completed_items, waiting.cost_micros) == (3, 0)
    record = await lane.store.get(view.batch_id)
    assert record is not None and not record.settled

    # A crash after the ledger booked item-0 but before the store noted it:
    # the replay is a duplicate and the first booking's cost is kept.
    lane.ledger.unavailable = False
    unbooked = await lane.store.unbooked(view.batch_id, 10)
    first = UsageRecord(
        request_id=f"{view.batch_id}:item-0",
        principal=ALICE,
        model=unbooked[0].model,
        requested_model="",
        deployment="batch",
        usage=unbooked[0].usage,
        cache_status=CacheStatus.MISS,
        occurred_at=lane.clock.now(),
        batch=True,
    )
    await lane.ledger.record(first)
    await lane.drive(ALICE, view.batch_id)
    done = await lane.service.get(ALICE, view.batch_id)
    assert len(lane.ledger.booked) == 3
    assert lane.ledger.calls.count(f"{view.batch_id}:item-0") == 2
    assert done.cost_micros == sum(cost for _, cost in lane.ledger.booked.values())


# --- cancel ------------------------------------------------------------------


async def test_cancel_an_upstream_batch(lane: Lane, sim: RunningSimulator) -> None:
    view = await lane.service.submit(ALICE, _items(4), {})
    await lane.service.poll_once()
    lane.clock.advance(SPAN / 10 + SPAN * 0.8 / 2)  # half the items have run
    cancelling = await lane.service.cancel(ALICE, view.batch_id)
    assert cancelling.status is BatchStatus.CANCELLING
    (upstream,) = sim.state.batches.values()
    assert upstream.cancelling_at is not None
    assert (await lane.service.cancel(ALICE, view.batch_id)).status is (
        BatchStatus.CANCELLING
    )

    seen = await lane.drive(ALICE, view.batch_id)
    assert seen[-1] is BatchStatus.CANCELLED
    results = await lane.results(ALICE, view.batch_id)
    assert [(r.custom_id, r.error.code if r.error else "ok") for r in results] == [
        ("item-0", "ok"),
        ("item-1", "ok"),
        ("item-2", "batch_cancelled"),
        ("item-3", "batch_cancelled"),
    ]
    assert len(lane.ledger.booked) == 2  # what ran is paid for
    assert not sim.state.files  # its input and output went with it


async def test_a_batch_cancelled_between_upload_and_create_deletes_its_file(
    lane: Lane, sim: RunningSimulator, clock: FakeClock
) -> None:
    async def fail_batch_create(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/batches"):
            sim.state.faults.schedule(FaultKind.SERVER_ERROR, 1)

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [fail_batch_create]})
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="k", max_retries=0, http_client=http
    ) as client:
        lane.service = BatchService(
            store=lane.store,
            client=client,
            ledger=lane.ledger,
            clock=clock,
            config=CONFIG,
        )
        view = await lane.service.submit(ALICE, _items(2), {})
        await lane.service.poll_once()  # uploaded; the create fails
        assert len(sim.state.files) == 1
        await lane.service.cancel(ALICE, view.batch_id)

        assert (await lane.drive(ALICE, view.batch_id))[-1] is BatchStatus.CANCELLED

    assert not sim.state.batches
    assert not sim.state.files
    results = await lane.results(ALICE, view.batch_id)
    assert {r.error.code if r.error else "ok" for r in results} == {"batch_cancelled"}


async def test_cancel_a_queued_batch_never_reaches_the_upstream(
    lane: Lane, sim: RunningSimulator
) -> None:
    view = await lane.service.submit(ALICE, _items(2), {})
    cancelled = await lane.service.cancel(ALICE, view.batch_id)
    assert cancelled.status is BatchStatus.CANCELLED
    assert cancelled.failed_items == 2
    assert cancelled.finished_at == lane.clock.now()
    await lane.service.poll_once()
    assert sim.state.stats.requests == 0
    assert (await lane.store.get(view.batch_id)) is not None


async def test_a_finished_batch_cannot_be_cancelled(lane: Lane) -> None:
    view = await lane.service.submit(ALICE, _items(1), {})
    await lane.drive(ALICE, view.batch_id)
    with pytest.raises(FailedPreconditionError) as caught:
        await lane.service.cancel(ALICE, view.batch_id)
    assert caught.value.reason == "BATCH_FINISHED"


# --- isolation, tickets, validation ------------------------------------------


async def test_a_batch_is_visible_to_its_tenant_only(lane: Lane) -> None:
    view = await lane.service.submit(ALICE, _items(1), {})
    assert (await lane.service.get(BOB, view.batch_id)).batch_id == view.batch_id
    for call in (
        lane.service.get(MALLORY, view.batch_id),
        lane.results(MALLORY, view.batch_id),
        lane.service.cancel(MALLORY, view.batch_id),
        lane.service.get(ALICE, "batch_does_not_exist"),
    ):
        with pytest.raises(NotFoundError) as caught:
            await call
        assert caught.value.reason == "BATCH_NOT_FOUND"
    # Mallory's cancel changed nothing.
    assert (await lane.service.get(ALICE, view.batch_id)).status is BatchStatus.QUEUED


async def test_the_user_id_of_a_submission_is_booked(lane: Lane) -> None:
    view = await lane.service.submit(ALICE, _items(1), {}, user_id="carol")
    await lane.drive(ALICE, view.batch_id)
    (record, _) = lane.ledger.booked[f"{view.batch_id}:item-0"]
    assert record.principal == replace(ALICE, user_id="carol")


async def test_a_batch_item_with_tools_and_a_schema_answers_as_it_would_alone(
    lane: Lane,
) -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    weather = Tool("get_weather", "The forecast for a city.", parameters, strict=True)
    schema = {
        "type": "object",
        "properties": {"sentiment": {"enum": ["positive", "negative"]}},
        "required": ["sentiment"],
        "additionalProperties": False,
    }
    items = [
        BatchItemRequest(
            "tool",
            Prompt(
                messages=(Message(Role.USER, ("Call get_weather for Oslo.",)),),
                tools=(weather,),
            ),
            model="gpt-4.1-mini",
        ),
        BatchItemRequest(
            "schema",
            Prompt(
                messages=(Message(Role.USER, ("Great service, thanks!",)),),
                response_format=ResponseFormat(
                    FormatKind.JSON_SCHEMA, "sentiment", schema, strict=True
                ),
            ),
            model="gpt-4.1-mini",
        ),
    ]
    view = await lane.service.submit(ALICE, items, {})
    assert (await lane.drive(ALICE, view.batch_id))[-1] is BatchStatus.COMPLETED

    results = {r.custom_id: r for r in await lane.results(ALICE, view.batch_id)}
    [call] = results["tool"].tool_calls
    assert call.name == "get_weather"
    assert results["tool"].finish_reason is FinishReason.TOOL_CALLS
    jsonschema.validate(json.loads(call.arguments), parameters)
    jsonschema.validate(json.loads(results["schema"].output_text), schema)
    assert results["schema"].finish_reason is FinishReason.STOP
    for item in items:
        alone = await lane.client.responses.create(
            **json.loads(jsonl_line(item, "gpt-4.1-mini"))["body"]
        )
        assert alone.usage is not None
        assert results[item.custom_id].usage.input_tokens == alone.usage.input_tokens
        assert results[item.custom_id].output_text == alone.output_text


async def test_a_maintenance_ticket_is_answered_later(
    lane: Lane, client: AsyncOpenAI
) -> None:
    request = chat_request(
        "Is the service back?",
        "Answer briefly.",
        model="",
        max_output_tokens=40,
        metadata={"source": "maintenance"},
    )
    ticket = await lane.service.enqueue_ticket(ALICE, request)
    assert ticket.startswith("ticket_")
    queued = await lane.service.get(ALICE, ticket)
    assert (queued.status, queued.total_items) == (BatchStatus.QUEUED, 1)
    assert queued.metadata == {"source": "maintenance"}

    assert (await lane.drive(ALICE, ticket))[-1] is BatchStatus.COMPLETED
    (result,) = await lane.results(ALICE, ticket)
    assert result.custom_id == TICKET_ITEM_ID
    item = BatchItemRequest(TICKET_ITEM_ID, request.prompt, max_output_tokens=40)
    text, _, _ = await _direct_answer(client, item, "gpt-4.1-mini")
    assert result.output_text == text


async def test_auto_items_go_to_the_chosen_model(
    lane: Lane, client: AsyncOpenAI
) -> None:
    chosen: list[tuple[Principal, str]] = []

    async def choose(principal: Principal, item: BatchItemRequest) -> str:
        chosen.append((principal, item.custom_id))
        return "gpt-4.1" if item.request_type is RequestType.ANALYZE else "gpt-4.1-nano"

    service = BatchService(
        store=lane.store,
        client=client,
        ledger=lane.ledger,
        clock=lane.clock,
        config=CONFIG,
        choose_model=choose,
    )
    items = [
        text_item("deep", "Analyze this.", request_type=RequestType.ANALYZE),
        text_item("light", "Say hi.", model="auto"),
        text_item("fixed", "Say hello.", model="gpt-4.1-mini"),
    ]
    view = await service.submit(ALICE, items, {})
    await service.poll_once()
    assert chosen == [(ALICE, "deep"), (ALICE, "light")]
    record = await lane.store.get(view.batch_id)
    assert record is not None
    assert sorted(job.model for job in record.jobs) == [
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
    ]


@pytest.mark.parametrize(
    ("items", "metadata", "user_id", "fields"),
    [
        ([], {}, "", ["items"]),
        (
            [
                text_item("", "x"),
                text_item("a" * 65, "x"),
                text_item("dup", "x"),
                text_item("dup", "x"),
                text_item("blank", "   "),
                text_item("huge", "x" * (1024 * 1024 + 1)),
                text_item("t", "x", temperature=2.5),
                text_item("nan", "x", temperature=float("nan")),
                text_item("tokens", "x", max_output_tokens=-1),
                text_item("m", "x", model="m" * 129),
            ],
            {"": "empty key"},
            "u" * 129,
            [
                "items[0].custom_id",
                "items[1].custom_id",
                "items[3].custom_id",
                "items[4].messages[0].content",
                "items[5].messages[0].content[0].text",
                "items[6].temperature",
                "items[7].temperature",
                "items[8].max_output_tokens",
                "items[9].model",
                "user_id",
                "metadata['']",
            ],
        ),
    ],
)
async def test_invalid_submissions_name_every_bad_field(
    lane: Lane,
    items: list[BatchItemRequest],
    metadata: dict[str, str],
    user_id: str,
    fields: list[str],
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await lane.service.submit(ALICE, items, metadata, user_id)
    assert [v.field for v in caught.value.violations] == fields
    assert await lane.store.unsettled() == []


async def test_nul_characters_in_ids_and_models_are_refused(lane: Lane) -> None:
    # No backend stores them alike (Postgres' text cannot hold NUL): refused.
    items = [text_item("a\x00b", "x"), text_item("c", "x", model="gpt\x00")]
    with pytest.raises(InvalidArgumentError) as caught:
        await lane.service.submit(ALICE, items, {})
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("items[0].custom_id", "must not contain NUL characters"),
        ("items[1].model", "must not contain NUL characters"),
    ]


async def test_too_many_items_are_refused(lane: Lane) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await lane.service.submit(ALICE, _items(50_001), {})
    assert [v.field for v in caught.value.violations] == ["items"]


# --- restarts ----------------------------------------------------------------


async def test_a_restart_resumes_an_in_flight_batch(
    lane: Lane, sim: RunningSimulator
) -> None:
    view = await lane.service.submit(ALICE, _items(3), {})
    await lane.service.poll_once()
    lane.clock.advance(SPAN / 2)
    await lane.service.poll_once()
    assert (await lane.service.get(ALICE, view.batch_id)).status is (
        BatchStatus.IN_PROGRESS
    )

    restarted = lane.restart()
    seen = await restarted.drive(ALICE, view.batch_id)
    assert seen[-1] is BatchStatus.COMPLETED
    assert len(sim.state.batches) == 1  # polled, not sent again
    assert [r.error for r in await restarted.results(ALICE, view.batch_id)] == [
        None
    ] * 3
    assert len(lane.ledger.booked) == 3
    restarted.store.close()


async def test_a_restart_after_an_unrecorded_create_adopts_the_upstream_batch(
    lane: Lane, client: AsyncOpenAI, sim: RunningSimulator
) -> None:
    view = await lane.service.submit(ALICE, _items(2), {})
    # The crash: the file was uploaded and the upstream batch created, but the
    # process died before the store learned the upstream batch id.
    pending = await lane.store.pending(view.batch_id)
    content = "\n".join(jsonl_line(p.request, "gpt-4.1-mini") for p in pending)
    uploaded = await client.files.create(
        file=("in.jsonl", content.encode()), purpose="batch"
    )
    created = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    # The crashed process held a lease, which has lapsed by now.
    now = lane.clock.now()
    record = await lane.store.claim(view.batch_id, "crashed", now, now)
    assert record is not None
    record.jobs = [UpstreamJob("gpt-4.1-mini", input_file_id=uploaded.id)]
    assert await lane.store.save(record, "crashed")
    await lane.store.set_models(
        view.batch_id, {p.request.custom_id: "gpt-4.1-mini" for p in pending}
    )

    restarted = lane.restart()
    assert (await restarted.drive(ALICE, view.batch_id))[-1] is BatchStatus.COMPLETED
    assert list(sim.state.batches) == [created.id]
    resumed = await restarted.store.get(view.batch_id)
    assert resumed is not None
    assert resumed.jobs[0].upstream_batch_id == created.id
    restarted.store.close()
