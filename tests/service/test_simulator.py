"""The simulator through the real ``openai`` SDK, on a loopback port."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from structlog.testing import capture_logs

from services.core.tokens import count_tokens
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultKind

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What does a gateway in front of an API do?"
INSTRUCTIONS = "Answer in one short paragraph."


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOLLGATE_SIMULATOR_"):
            monkeypatch.delenv(name)


def _settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {"port": 0, "latency_ms": 0, "hang_seconds": 1.0}
    values.update(overrides)
    return SimulatorSettings(**values)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(_settings()) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-sim", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def http(sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.root_url) as session:
        yield session


def _input_tokens(*messages: tuple[str, str | list[str]]) -> int:
    """The documented formula for text-only messages: 3, then 3 + role + parts."""
    total = 3
    for role, content in messages:
        parts = [content] if isinstance(content, str) else content
        total += 3 + count_tokens(role) + sum(count_tokens(p) for p in parts)
    return total


# --- Responses ---------------------------------------------------------------


async def test_responses_create_text_and_usage_are_exact(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-4.1-mini",
        instructions=INSTRUCTIONS,
        input=QUESTION,
        metadata={"team": "search"},
        temperature=0.2,
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.incomplete_details is None
    assert response.model == "gpt-4.1-mini"
    assert response.metadata == {"team": "search"}
    assert response.temperature == 0.2
    assert response.output[0].type == "message"
    text = response.output_text
    assert text.startswith('Simulated answer to "What does a gateway in"')
    usage = response.usage
    assert usage is not None
    expected_input = _input_tokens(("system", INSTRUCTIONS), ("user", QUESTION))
    assert usage.input_tokens == expected_input
    assert usage.output_tokens == count_tokens(text)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


async def test_responses_are_deterministic_per_request(client: AsyncOpenAI) -> None:
    async def ask(question: str, model: str = "gpt-4.1") -> str:
        response = await client.responses.create(model=model, input=question)
        return response.output_text

    first = await ask(QUESTION)
    assert await ask(QUESTION) == first
    assert await ask(QUESTION + " Briefly.") != first
    assert await ask(QUESTION, model="gpt-4.1-nano") != first


async def test_responses_message_items_with_input_text_parts(
    client: AsyncOpenAI,
) -> None:
    response = await client.responses.create(
        model="gpt-4.1",
        input=[
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "first part"},
                    {"type": "input_text", "text": "second part"},
                ],
            },
        ],
    )
    assert response.usage is not None
    assert response.usage.input_tokens == _input_tokens(
        ("developer", "Be terse."), ("user", ["first part", "second part"])
    )
    assert response.output_text.startswith(
        'Simulated answer to "first part second part"'
    )


async def test_responses_max_output_tokens_makes_an_incomplete_prefix(
    client: AsyncOpenAI,
) -> None:
    full = await client.responses.create(model="gpt-4.1", input=QUESTION)
    cut = await client.responses.create(
        model="gpt-4.1", input=QUESTION, max_output_tokens=6
    )
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.max_output_tokens == 6
    assert cut.usage is not None
    assert cut.usage.output_tokens == 6 == count_tokens(cut.output_text)
    assert full.output_text.startswith(cut.output_text)
    assert len(cut.output_text) < len(full.output_text)


async def test_responses_stream_events_in_openai_order(client: AsyncOpenAI) -> None:
    reference = await client.responses.create(
        model="gpt-4.1", instructions=INSTRUCTIONS, input=QUESTION
    )
    stream = await client.responses.create(
        model="gpt-4.1", instructions=INSTRUCTIONS, input=QUESTION, stream=True
    )
    events = [event async for event in stream]
    types = [event.type for event in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len(deltas) > 3
    text = "".join(deltas)
    assert text == reference.output_text
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.status == "completed"
    assert final.response.output_text == text
    assert final.response.usage == reference.usage
    first = events[0]
    assert first.type == "response.created"
    assert first.response.id == final.response.id
    assert first.response.usage is None


async def test_responses_stream_ends_incomplete_when_cut(client: AsyncOpenAI) -> None:
    stream = await client.responses.create(
        model="gpt-4.1", input=QUESTION, max_output_tokens=4, stream=True
    )
    events = [event async for event in stream]
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.incomplete_details is not None
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == 4


async def test_responses_stream_helper_accumulates_the_final_response(
    client: AsyncOpenAI,
) -> None:
    async with client.responses.stream(model="gpt-4.1", input=QUESTION) as stream:
        deltas = [
            e.delta async for e in stream if e.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert final.output_text == "".join(deltas)
    assert final.usage is not None
    assert final.usage.output_tokens == count_tokens(final.output_text)


# --- Chat Completions --------------------------------------------------------


async def test_chat_completion_text_and_usage(client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": QUESTION},
    ]
    completion = await client.chat.completions.create(
        model="gpt-4.1-nano", messages=messages
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4.1-nano"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    content = choice.message.content
    assert content is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == _input_tokens(
        ("system", INSTRUCTIONS), ("user", QUESTION)
    )
    assert completion.usage.completion_tokens == count_tokens(content)
    # The same conversation through the Responses API gets the same answer.
    response = await client.responses.create(model="gpt-4.1-nano", input=messages)
    assert response.output_text == content


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_chat_completion_length_cap(client: AsyncOpenAI, param: str) -> None:
    limit: dict[str, Any] = {param: 3}
    completion: ChatCompletion = await client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": QUESTION}], **limit
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_chat_stream_with_usage(client: AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    reference = await client.chat.completions.create(model="gpt-4.1", messages=messages)
    stream = await client.chat.completions.create(
        model="gpt-4.1",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == reference.usage
    assert all(c.usage is None for c in chunks[:-1])


async def test_chat_stream_without_usage(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        max_tokens=5,
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert count_tokens(text) == 5


# --- Embeddings and models ---------------------------------------------------


async def test_embeddings_base64_default_decodes_to_unit_vectors(
    client: AsyncOpenAI,
) -> None:
    inputs = ["alpha", "beta gamma", "alpha"]
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=inputs, dimensions=256
    )
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 256 for v in vectors)
    for vector in vectors:
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    expected_tokens = sum(count_tokens(text) for text in inputs)
    assert result.usage.prompt_tokens == expected_tokens == result.usage.total_tokens
    again = await client.embeddings.create(
        model="text-embedding-3-small", input="alpha"
    )
    assert len(again.data[0].embedding) == 1536
    assert again.data[0].embedding[:256] != vectors[0]  # renormalised prefix only


async def test_embeddings_float_format_matches_base64(client: AsyncOpenAI) -> None:
    as_float = await client.embeddings.create(
        model="text-embedding-3-large", input="same", encoding_format="float"
    )
    as_base64 = await client.embeddings.create(
        model="text-embedding-3-large", input="same"
    )
    floats = as_float.data[0].embedding
    assert len(floats) == 3072
    assert as_base64.data[0].embedding == pytest.approx(floats, rel=1e-6, abs=1e-9)


async def test_models_list(client: AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert {"gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"} <= set(ids)
    model = await client.models.retrieve("gpt-4.1")
    assert model.id == "gpt-4.1"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-0")


# --- Faults ------------------------------------------------------------------


async def _ask(client: AsyncOpenAI, **kwargs: Any) -> str:
    response: Response = await client.responses.create(
        model="gpt-4.1", input="hi", **kwargs
    )
    return response.output_text


@pytest.mark.parametrize("source", ["header", "metadata", "schedule"])
@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("rate_limit", openai.RateLimitError, 429),
        ("server_error", openai.InternalServerError, 500),
        ("unavailable", openai.InternalServerError, 503),
        ("broken_stream", openai.InternalServerError, 500),
    ],
)
async def test_fault_kinds_raise_the_sdk_errors(
    client: AsyncOpenAI,
    http: aiohttp.ClientSession,
    source: str,
    kind: str,
    error: type[openai.APIStatusError],
    status: int,
) -> None:
    kwargs: dict[str, Any] = {}
    if source == "header":
        kwargs["extra_headers"] = {"x-sim-fault": kind}
    elif source == "metadata":
        kwargs["metadata"] = {"sim_fault": kind}
    else:
        async with http.post("/_sim/faults", json={"kind": kind, "count": 1}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"pending": 1}
    with pytest.raises(error) as caught:
        await _ask(client, **kwargs)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] is None
    if kind == "rate_limit":
        assert caught.value.response.headers["retry-after"] == "1"
        assert body["type"] == "requests"
        assert body["code"] == "rate_limit_exceeded"
    else:
        assert body["type"] == "server_error"
    # The fault was one-shot: the next request succeeds.
    assert await _ask(client)


async def test_scheduled_faults_count_retry_after_and_clear(
    client: AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    fault = {"kind": "rate_limit", "count": 2, "retry_after_seconds": 7}
    async with http.post("/_sim/faults", json=fault) as resp:
        assert await resp.json() == {"pending": 2}
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.response.headers["retry-after"] == "7"
    assert await _ask(client)
    async with http.post("/_sim/faults", json={"kind": "unavailable", "count": 5}):
        pass
    async with http.delete("/_sim/faults") as resp:
        assert await resp.json() == {"pending": 0}
    assert await _ask(client)
    async with http.post("/_sim/faults", json={"kind": "explode"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "kind"


async def test_hang_raises_api_timeout(
    client: AsyncOpenAI, sim: RunningSimulator
) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).responses.create(
            model="gpt-4.1", input="hi", extra_headers={"x-sim-fault": "hang"}
        )
    assert time.monotonic() - started < 1.0
    assert sim.state.stats.faults["hang"] == 1


async def test_hang_shorter_than_the_timeout_still_answers(client: AsyncOpenAI) -> None:
    started = time.monotonic()
    text = await _ask(client, extra_headers={"x-sim-fault": "hang"})
    assert text.startswith("Simulated answer")
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_broken_stream_raises_during_iteration(
    client: AsyncOpenAI, api: str
) -> None:
    headers = {"x-sim-fault": "broken_stream"}
    received: list[str] = []
    stream: Any
    if api == "responses":
        stream = await client.responses.create(
            model="gpt-4.1", input=QUESTION, stream=True, extra_headers=headers
        )
    else:
        stream = await client.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            extra_headers=headers,
        )
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            received.append(getattr(event, "type", None) or event.object)
    assert received, "some events arrive before the connection is cut"
    assert "response.completed" not in received
    assert await _ask(client)  # the simulator keeps serving afterwards


async def test_configured_fault_rate() -> None:
    settings = _settings(fault_rate=1.0, fault_kind=FaultKind.UNAVAILABLE)
    async with (
        await start_simulator(settings) as simulator,
        AsyncOpenAI(base_url=simulator.base_url, api_key="k", max_retries=0) as sdk,
    ):
        for _ in range(3):
            with pytest.raises(openai.InternalServerError) as caught:
                await sdk.embeddings.create(model="text-embedding-3-small", input="x")
            assert caught.value.status_code == 503
        assert simulator.state.stats.faults == {"unavailable": 3}


async def test_sdk_retries_through_a_rate_limit(sim: RunningSimulator) -> None:
    sim.state.faults.schedule(FaultKind.RATE_LIMIT, 1, retry_after_seconds=0)
    async with AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=2) as sdk:
        response = await sdk.responses.create(model="gpt-4.1", input="hi")
    assert response.status == "completed"
    assert sim.state.stats.requests == 2


# --- Errors, auth, stats, latency, logs ---------------------------------------


async def test_missing_key_gets_401(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/responses", json={"model": "gpt-4.1", "input": "x"}
    ) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]


async def test_non_bearer_key_raises_authentication_error(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        await _ask(client, extra_headers={"Authorization": "Basic abc"})


async def test_bad_requests_get_openai_shaped_400s(
    client: AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Bearer sk-sim"}
    async with http.post(
        "/v1/chat/completions", data=b"{not json", headers=headers
    ) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert "could not parse the JSON body" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="", input="x")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4.1", messages=[])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        await _ask(client, extra_headers={"x-sim-fault": "explode"})


async def test_unknown_path_gets_404(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/nothing", json={}) as resp:
        assert resp.status == 404
        error = (await resp.json())["error"]
    assert error["message"] == "Invalid URL (POST /v1/nothing)"


async def test_stats_count_requests_and_reset(
    client: AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await _ask(client)
    await _ask(client, stream=False)
    await client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.RateLimitError):
        await _ask(client, extra_headers={"x-sim-fault": "rate_limit"})
    async with http.post("/v1/responses", json={}) as resp:  # no key: not counted
        assert resp.status == 401
    async with http.get("/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == 4
    assert stats["by_endpoint"] == {"embeddings": 1, "responses": 3}
    assert stats["faults"] == {"rate_limit": 1}
    assert stats["unauthorized"] == 1
    assert stats["output_tokens"] > 0
    async with http.post("/_sim/reset") as resp:
        assert (await resp.json())["requests"] == 0
    async with http.get("/_sim/stats") as resp:
        assert (await resp.json())["by_endpoint"] == {}


async def test_latency_is_applied() -> None:
    settings = _settings(latency_ms=150, per_token_latency_ms=5)
    async with (
        await start_simulator(settings) as simulator,
        AsyncOpenAI(base_url=simulator.base_url, api_key="k", max_retries=0) as sdk,
    ):
        started = time.monotonic()
        response = await sdk.responses.create(model="gpt-4.1", input="hi")
        elapsed = time.monotonic() - started
    assert response.usage is not None
    assert elapsed >= 0.15 + 0.005 * response.usage.output_tokens


async def test_logs_hold_no_prompt_completion_or_key(client: AsyncOpenAI) -> None:
    secret_prompt = "zebra-quartz-4471 confidential"
    with capture_logs() as logs:
        text = await _ask(client, extra_headers={})
        response = await client.responses.create(model="gpt-4.1", input=secret_prompt)
    assert logs, "requests are logged"
    assert {entry["event"] for entry in logs} == {"sim_request"}
    dumped = json.dumps(logs)
    for forbidden in (secret_prompt, "zebra", response.output_text, text, "sk-sim"):
        assert forbidden not in dumped


async def test_cli_prints_where_it_listens_and_stops_on_sigterm() -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_SIMULATOR_")
    }
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.simulator",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        listening = json.loads(line)
        assert listening["event"] == "simulator_listening"
        assert listening["base_url"] == f"http://127.0.0.1:{listening['port']}/v1"
        async with AsyncOpenAI(
            base_url=listening["base_url"], api_key="k", max_retries=0
        ) as sdk:
            models = await sdk.models.list()
        assert models.data
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0


async def test_broken_stream_on_an_endpoint_that_cannot_stream_is_a_500(
    client: AsyncOpenAI,
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.embeddings.create(
            model="text-embedding-3-small",
            input="x",
            extra_body={"stream": True},
            extra_headers={"x-sim-fault": "broken_stream"},
        )
    assert caught.value.status_code == 500


async def test_cli_exits_1_when_the_port_is_taken(sim: RunningSimulator) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_SIMULATOR_")
    }
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.simulator",
        "--port",
        str(sim.port),
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    assert json.loads(output.splitlines()[-1])["event"] == "simulator_bind_failed"
