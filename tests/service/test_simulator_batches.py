"""The simulator's Files and Batches endpoints through the real ``openai`` SDK.

Batch progress is driven by a FakeClock given to the simulator, so that no test
sleeps: advancing the clock past ``batch_completion_seconds`` completes a batch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Batch

from services.core.clock import FakeClock
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.batches import line_fails
from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultKind

SPAN = 10.0  # batch_completion_seconds of these tests
MODEL = "gpt-4.1-mini"


def _settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "port": 0,
        "latency_ms": 0,
        "batch_completion_seconds": SPAN,
    }
    values.update(overrides)
    return SimulatorSettings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(_settings(), clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-sim", max_retries=0
    ) as sdk:
        yield sdk


def _line(
    custom_id: str,
    body: dict[str, Any] | None = None,
    *,
    url: str = "/v1/responses",
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": body if body is not None else {"model": MODEL, "input": custom_id},
    }


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


async def _submit(
    client: AsyncOpenAI,
    lines: list[dict[str, Any]] | bytes,
    *,
    endpoint: str = "/v1/responses",
    metadata: dict[str, str] | None = None,
) -> Batch:
    content = lines if isinstance(lines, bytes) else _jsonl(lines)
    uploaded = await client.files.create(
        file=("requests.jsonl", content), purpose="batch"
    )
    return await client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]  # a str from parametrize
        completion_window="24h",
        metadata=metadata,
    )


async def _lines_of(client: AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


# --- Files -------------------------------------------------------------------


async def test_file_upload_retrieve_content_list_and_delete(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    content = _jsonl([_line("a"), _line("b")])
    uploaded = await client.files.create(
        file=("requests.jsonl", content), purpose="batch"
    )
    assert uploaded.id.startswith("file-")
    assert uploaded.object == "file"
    assert uploaded.bytes == len(content)
    assert uploaded.filename == "requests.jsonl"
    assert uploaded.purpose == "batch"
    assert uploaded.status == "processed"
    assert uploaded.created_at == int(clock.now())

    assert await client.files.retrieve(uploaded.id) == uploaded
    downloaded = await client.files.content(uploaded.id)
    assert downloaded.content == content
    listed = await client.files.list(purpose="batch")
    assert [f.id for f in listed.data] == [uploaded.id]
    assert (await client.files.list(purpose="vision")).data == []

    deleted = await client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.files.retrieve(uploaded.id)
    assert caught.value.body == {
        "message": f"No such File object: {uploaded.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        await client.files.content(uploaded.id)


async def test_file_upload_needs_a_known_purpose(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(
            file=("x.jsonl", b"{}"),
            purpose="dreams",  # type: ignore[arg-type]  # deliberately invalid
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "purpose"


# --- A batch's life ----------------------------------------------------------


async def test_batch_moves_through_its_statuses_by_the_clock(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    batch = await _submit(client, [_line("a"), _line("b")], metadata={"job": "x"})
    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.status == "validating"
    assert batch.endpoint == "/v1/responses"
    assert batch.completion_window == "24h"
    assert batch.metadata == {"job": "x"}
    assert batch.model == MODEL
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.request_counts is not None
    assert batch.request_counts.total == 2
    assert batch.output_file_id is None

    seen = []
    # Validating for a tenth of the span, in progress to nine tenths, then finalizing.
    for step in (0.05, 0.05, 0.75, 0.05, 0.1):
        clock.advance(SPAN * step)
        seen.append((await client.batches.retrieve(batch.id)).status)
    assert seen == [
        "validating",
        "in_progress",
        "in_progress",
        "finalizing",
        "completed",
    ]

    done = await client.batches.retrieve(batch.id)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    assert done.in_progress_at == int(batch.created_at + SPAN / 10)
    assert done.finalizing_at == int(batch.created_at + SPAN * 0.9)
    assert done.completed_at == int(batch.created_at + SPAN)
    assert done.error_file_id is None
    assert done.usage is not None
    output = await _lines_of(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["a", "b"]
    assert done.usage.input_tokens == sum(
        line["response"]["body"]["usage"]["input_tokens"] for line in output
    )
    output_file = await client.files.retrieve(str(done.output_file_id))
    assert output_file.purpose == "batch_output"


@pytest.mark.parametrize("endpoint", ["/v1/responses", "/v1/chat/completions"])
async def test_batch_lines_get_the_same_answer_as_the_endpoint(
    client: AsyncOpenAI, clock: FakeClock, endpoint: str
) -> None:
    if endpoint == "/v1/responses":
        body: dict[str, Any] = {
            "model": MODEL,
            "instructions": "Be brief.",
            "input": "What is a batch?",
            "max_output_tokens": 20,
        }
        direct = await client.responses.create(**body)
        expected_text = direct.output_text
        assert direct.usage is not None
        expected_usage = (direct.usage.input_tokens, direct.usage.output_tokens)
    else:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "What is a batch?"}],
        }
        completion = await client.chat.completions.create(**body)
        expected_text = str(completion.choices[0].message.content)
        assert completion.usage is not None
        expected_usage = (
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
        )

    batch = await _submit(client, [_line("q", body, url=endpoint)], endpoint=endpoint)
    clock.advance(SPAN)
    done = await client.batches.retrieve(batch.id)
    assert done.status == "completed"
    (line,) = await _lines_of(client, done.output_file_id)
    assert line["id"].startswith("batch_req_")
    assert line["custom_id"] == "q"
    assert line["error"] is None
    response = line["response"]
    assert response["status_code"] == 200
    assert response["request_id"].startswith("req_")
    if endpoint == "/v1/responses":
        parsed = openai.types.responses.Response.model_validate(response["body"])
        assert parsed.output_text == expected_text
        assert parsed.usage is not None
        usage = (parsed.usage.input_tokens, parsed.usage.output_tokens)
    else:
        chat = openai.types.chat.ChatCompletion.model_validate(response["body"])
        assert chat.choices[0].message.content == expected_text
        assert chat.usage is not None
        usage = (chat.usage.prompt_tokens, chat.usage.completion_tokens)
    assert usage == expected_usage


async def test_a_line_asking_for_a_fault_lands_in_the_error_file(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    faulty = {"model": MODEL, "input": "x", "metadata": {"sim_fault": "server_error"}}
    limited = {"model": MODEL, "input": "y", "metadata": {"sim_fault": "rate_limit"}}
    invalid = {"model": MODEL}  # no input: the endpoint's own 400
    lines = [
        _line("ok"),
        _line("boom", faulty),
        _line("slow", limited),
        _line("bad", invalid),
    ]
    batch = await _submit(client, lines)
    clock.advance(SPAN)
    done = await client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 3)
    assert [x["custom_id"] for x in await _lines_of(client, done.output_file_id)] == [
        "ok"
    ]
    errors = {x["custom_id"]: x for x in await _lines_of(client, done.error_file_id)}
    boom = errors["boom"]
    assert boom["error"] is None
    assert boom["id"].startswith("batch_req_")
    assert boom["response"]["status_code"] == 500
    assert boom["response"]["request_id"].startswith("req_")
    assert boom["response"]["body"]["error"]["type"] == "server_error"
    assert errors["slow"]["response"]["status_code"] == 429
    assert errors["slow"]["response"]["body"]["error"]["code"] == (
        "rate_limit_exceeded"
    )
    assert errors["bad"]["response"]["status_code"] == 400
    assert errors["bad"]["response"]["body"]["error"]["param"] == "input"


async def test_batch_failure_rate_fails_the_lines_the_seeded_draw_picks(
    clock: FakeClock,
) -> None:
    settings = _settings(batch_failure_rate=0.3, seed=7)
    ids = [f"item-{i}" for i in range(40)]
    expected_failures = {i for i in ids if line_fails(7, i, 0.3)}
    assert 0 < len(expected_failures) < len(ids)
    async with (
        await start_simulator(settings, clock=clock) as simulator,
        AsyncOpenAI(base_url=simulator.base_url, api_key="k", max_retries=0) as sdk,
    ):
        batch = await _submit(sdk, [_line(i) for i in ids])
        clock.advance(SPAN)
        done = await sdk.batches.retrieve(batch.id)
        failed = {x["custom_id"] for x in await _lines_of(sdk, done.error_file_id)}
        succeeded = {x["custom_id"] for x in await _lines_of(sdk, done.output_file_id)}
    assert failed == expected_failures
    assert succeeded == set(ids) - expected_failures


# --- Whole-batch failures ----------------------------------------------------


async def test_an_invalid_input_file_fails_the_batch_after_validation(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    content = b"\n".join(
        [
            json.dumps(_line("a")).encode(),
            b"{not json",
            json.dumps(_line("a")).encode(),
            json.dumps({**_line("c"), "method": "GET"}).encode(),
            json.dumps(_line("d", url="/v1/chat/completions")).encode(),
            json.dumps(
                {"custom_id": "e", "method": "POST", "url": "/v1/responses"}
            ).encode(),
        ]
    )
    batch = await _submit(client, content)
    assert batch.status == "validating"
    clock.advance(SPAN / 10)
    failed = await client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.failed_at == int(batch.created_at + SPAN / 10)
    assert failed.in_progress_at is None
    assert failed.output_file_id is None
    assert failed.errors is not None and failed.errors.data is not None
    problems = [(e.line, e.code, e.param) for e in failed.errors.data]
    assert problems == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_method", "method"),
        (5, "invalid_url", "url"),
        (6, "missing_required_parameter", "body.model"),
    ]
    clock.advance(SPAN)
    assert (await client.batches.retrieve(batch.id)).status == "failed"


async def test_lines_for_two_models_fail_the_batch(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    other = {"model": "gpt-4.1-nano", "input": "b"}
    batch = await _submit(client, [_line("a"), _line("b", other)])
    clock.advance(SPAN / 10)
    failed = await client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert [e.code for e in failed.errors.data] == ["mismatched_model"]


async def test_batch_metadata_can_ask_for_failure_or_expiry(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    doomed = await _submit(client, [_line("a")], metadata={"sim_fault": "batch_failed"})
    expiring = await _submit(
        client, [_line("a"), _line("b")], metadata={"sim_fault": "batch_expired"}
    )
    assert doomed.status == "validating"
    clock.advance(SPAN)
    failed = await client.batches.retrieve(doomed.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert [e.code for e in failed.errors.data] == ["batch_failed"]

    expired = await client.batches.retrieve(expiring.id)
    assert expired.status == "expired"
    assert expired.expired_at == int(expiring.created_at + SPAN)
    assert expired.completed_at is None
    assert expired.request_counts is not None
    assert expired.request_counts.failed == 2
    errors = await _lines_of(client, expired.error_file_id)
    assert [x["error"]["code"] for x in errors] == ["batch_expired"] * 2
    assert all(x["response"] is None for x in errors)

    with pytest.raises(openai.BadRequestError) as caught:
        await _submit(client, [_line("a")], metadata={"sim_fault": "meteor"})
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "metadata.sim_fault"


# --- Cancel and list ---------------------------------------------------------


async def test_cancel_goes_through_cancelling_and_keeps_what_ran(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    batch = await _submit(client, [_line(f"r{i}") for i in range(4)])
    # Half of the in_progress phase has passed: half of the lines ran.
    clock.advance(SPAN / 10 + SPAN * 0.8 / 2)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at == int(clock.now())
    clock.advance(SPAN / 10)
    cancelled = await client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at == int(clock.now())
    assert cancelled.finalizing_at is None and cancelled.completed_at is None
    assert cancelled.request_counts is not None
    assert (cancelled.request_counts.completed, cancelled.request_counts.failed) == (
        2,
        2,
    )
    ran = await _lines_of(client, cancelled.output_file_id)
    assert [x["custom_id"] for x in ran] == ["r0", "r1"]
    dropped = await _lines_of(client, cancelled.error_file_id)
    assert [(x["custom_id"], x["error"]["code"]) for x in dropped] == [
        ("r2", "batch_cancelled"),
        ("r3", "batch_cancelled"),
    ]
    clock.advance(SPAN)
    assert (await client.batches.retrieve(batch.id)).status == "cancelled"


async def test_a_finished_batch_cannot_be_cancelled(
    client: AsyncOpenAI, clock: FakeClock
) -> None:
    batch = await _submit(client, [_line("a")])
    clock.advance(SPAN)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.batches.cancel(batch.id)
    assert "completed" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        await client.batches.cancel("batch_unknown")


async def test_list_batches_newest_first_with_a_cursor(client: AsyncOpenAI) -> None:
    created = [(await _submit(client, [_line("a")])).id for _ in range(3)]
    first = await client.batches.list(limit=2)
    assert [b.id for b in first.data] == [created[2], created[1]]
    assert first.has_more is True
    rest = await client.batches.list(limit=2, after=created[1])
    assert [b.id for b in rest.data] == [created[0]]
    assert rest.has_more is False
    every = [b.id async for b in client.batches.list(limit=1)]
    assert every == created[::-1]


# --- Bad requests and request faults -----------------------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"input_file_id": "file-missing"}, "input_file_id"),
    ],
)
async def test_batch_create_rejects_bad_parameters(
    client: AsyncOpenAI, change: dict[str, str], param: str
) -> None:
    uploaded = await client.files.create(
        file=("r.jsonl", _jsonl([_line("a")])), purpose="batch"
    )
    params: dict[str, Any] = {
        "input_file_id": uploaded.id,
        "endpoint": "/v1/responses",
        "completion_window": "24h",
        **change,
    }
    with pytest.raises(openai.APIStatusError) as caught:
        await client.batches.create(**params)
    assert caught.value.status_code in (400, 404)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == param


async def test_batch_input_must_be_a_batch_purpose_file(client: AsyncOpenAI) -> None:
    uploaded = await client.files.create(
        file=("r.jsonl", _jsonl([_line("a")])), purpose="user_data"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/responses",
            completion_window="24h",
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "input_file_id"


async def test_request_faults_apply_to_batch_polls(
    client: AsyncOpenAI, sim: RunningSimulator
) -> None:
    batch = await _submit(client, [_line("a")])
    sim.state.faults.schedule(FaultKind.UNAVAILABLE, 1)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.batches.retrieve(batch.id)
    assert caught.value.status_code == 503
    assert (await client.batches.retrieve(batch.id)).id == batch.id
    assert sim.state.stats.by_endpoint["batches"] == 3
    assert sim.state.stats.by_endpoint["files"] == 1
