"""The gateway's OpenAI-compatible HTTP door, driven by the official openai SDK.

A real gateway (gRPC and HTTP on ephemeral ports) in front of the real downstream
services and the simulator; the SDK is the client, sync (in a thread) and async.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import openai
import pydantic
import pytest
import yaml
from google.protobuf import timestamp_pb2
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.server import RunningServer
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import GatewayApp
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key
from services.gateway.config import GatewaySettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.conftest import ServeApp

API_KEY = "tg-http-test-key"
BURST_KEY = "tg-http-burst-key"
NANO_KEY = "tg-http-nano-only-key"
QUESTION = "What does a gateway in front of an API do?"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Door:
    """A running gateway: its gRPC address and its HTTP base URL."""

    def __init__(
        self, running: RunningServer, sim: RunningSimulator, costs_address: str
    ) -> None:
        app = running.app
        assert isinstance(app, GatewayApp)
        assert app.http_port
        self.grpc_address = running.address
        self.costs_address = costs_address
        self.base_url = f"http://127.0.0.1:{app.http_port}/v1"
        self.sim = sim

    def client(self, key: str = API_KEY, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, **options)

    def sync_client(self, key: str = API_KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, **options)


@pytest.fixture
async def door(
    serve_app: ServeApp, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Door]:
    """The door over a simulator streaming at ``request.param`` ms per token (0)."""
    per_token_ms = float(getattr(request, "param", 0.0))
    async with await start_simulator(
        SimulatorSettings(
            port=0,
            latency_ms=0,
            per_token_latency_ms=per_token_ms,
            batch_completion_seconds=0.2,
        )
    ) as sim:
        limits = tmp_path / "limits.yaml"
        limits.write_text(
            yaml.safe_dump(
                {
                    "tiers": {
                        "free": {"rpm": 20},
                        "paid": {"rpm": 1000, "tpm": 1_000_000},
                        "burst": {"rpm": 60, "tpm": 1_000_000},
                    }
                }
            ),
            encoding="utf-8",
        )
        ratelimit = await serve_app(
            await build_ratelimit(RateLimitSettings(port=0, limits_file=limits))
        )
        cache = await serve_app(await build_cache(CacheSettings(port=0)))
        router = await serve_app(await build_router(RouterSettings(port=0)))
        costs = await serve_app(
            await build_costs(
                CostsSettings(port=0, database_path=tmp_path / "costs.sqlite3")
            )
        )
        keys = tmp_path / "keys.yaml"
        entries = [
            {
                "sha256": hash_key(API_KEY),
                "tenant_id": "acme",
                "service": "chat",
                "user_id": "alice",
                "user_tier": "paid",
            },
            {
                "sha256": hash_key(BURST_KEY),
                "tenant_id": "acme",
                "user_id": "bob",
                "user_tier": "burst",
            },
            {
                "sha256": hash_key(NANO_KEY),
                "tenant_id": "acme",
                "user_id": "carol",
                "user_tier": "paid",
                "models": ["gpt-4.1-nano"],
            },
        ]
        keys.write_text(yaml.safe_dump({"keys": entries}), encoding="utf-8")
        settings = GatewaySettings(
            port=0,
            http_port=0,
            http_files_dir=tmp_path / "files",
            ratelimit_address=ratelimit.address,
            cache_address=cache.address,
            router_address=router.address,
            costs_address=costs.address,
            keys_file=keys,
            openai_base_url=sim.base_url,
            outbox_path=tmp_path / "outbox.sqlite3",
            batch_store_path=tmp_path / "batches.sqlite3",
            batch_poll_initial_seconds=0.1,
            batch_poll_max_seconds=0.2,
            batch_tick_seconds=0.05,
            upstream_max_retries=0,
        )
        running = await serve_app(await build_gateway(settings))
        yield Door(running, sim, costs.address)


async def _fault(door: Door, kind: str, count: int = 1) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{door.sim.root_url}/_sim/faults", json={"kind": kind, "count": count}
        ) as answer,
    ):
        assert answer.status == 200


# -- chat completions


async def test_chat_completion_answers_with_tollgate_headers(door: Door) -> None:
    async with door.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": QUESTION},
            ],
            extra_headers={"x-request-id": "req-http-1"},
        )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].message.content.startswith("Simulated answer to")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model.startswith("gpt-4.1")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    headers = raw.headers
    assert headers["x-request-id"] == "req-http-1"
    assert headers["x-tollgate-cache-status"] == "miss"
    assert int(headers["x-tollgate-cost-micros"]) > 0
    assert headers["x-tollgate-model"] == completion.model
    assert headers["x-tollgate-deployment"] == "stable"
    assert headers["x-tollgate-degradation-level"] == "0"
    # The limiter's headroom after this request, as OpenAI reports its own.
    for metric in ("requests", "tokens"):
        limit = int(headers[f"x-ratelimit-limit-{metric}"])
        assert 0 <= int(headers[f"x-ratelimit-remaining-{metric}"]) < limit
        assert headers[f"x-ratelimit-reset-{metric}"].endswith(("ms", "s"))


async def test_the_same_request_again_is_an_exact_cache_hit(door: Door) -> None:
    messages: list[Any] = [{"role": "user", "content": "Name one prime number."}]
    async with door.client() as client:
        first = await client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, temperature=0
        )
        second = await client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, temperature=0
        )
        bypass = await client.chat.completions.with_raw_response.create(
            model="auto",
            messages=messages,
            temperature=0,
            extra_headers={"x-tollgate-cache": "bypass"},
        )
    assert first.headers["x-tollgate-cache-status"] == "miss"
    # The cache write happens off the response path: allow it to land.
    if second.headers["x-tollgate-cache-status"] != "exact":
        await asyncio.sleep(0.3)
        async with door.client() as client:
            second = await client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, temperature=0
            )
    assert second.headers["x-tollgate-cache-status"] == "exact"
    assert (
        second.parse().choices[0].message.content
        == first.parse().choices[0].message.content
    )
    assert bypass.headers["x-tollgate-cache-status"] == "skipped"


async def test_sync_client_in_a_thread_streams_with_usage(door: Door) -> None:
    def run() -> tuple[str, Any, list[Any]]:
        with door.sync_client() as client:
            stream = client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": QUESTION}],
                stream=True,
                stream_options={"include_usage": True},
            )
            text, usage, finishes = "", None, list[Any]()
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finishes.append(choice.finish_reason)
            return text, usage, finishes

    text, usage, finishes = await asyncio.to_thread(run)
    assert text.startswith("Simulated answer to")
    assert usage is not None
    assert usage.completion_tokens > 0
    assert finishes[-1] == "stop"


async def test_a_tool_calling_loop_completes(door: Door) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris right now?"}
    ]
    async with door.client() as client:
        first = await client.chat.completions.create(
            model="auto",
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls
        assert calls
        call = calls[0]
        assert call.type == "function"
        assert call.function.name == "get_weather"
        json.loads(call.function.arguments)
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 18}'}
        )
        second = await client.chat.completions.create(
            model="auto", messages=messages, tools=[WEATHER_TOOL]
        )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content


async def test_streamed_tool_calls_arrive_as_chunks(door: Door) -> None:
    async with door.client() as client:
        stream = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
        names, arguments, finish = [], "", None
        async for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    if delta.function and delta.function.name:
                        names.append(delta.function.name)
                    if delta.function and delta.function.arguments:
                        arguments += delta.function.arguments
                finish = choice.finish_reason or finish
    assert names == ["get_weather"]
    json.loads(arguments)
    assert finish == "tool_calls"


class CityFacts(pydantic.BaseModel):
    city: str
    population: int


async def test_parse_returns_a_pydantic_model(door: Door) -> None:
    async with door.client() as client:
        completion = await client.chat.completions.parse(
            model="auto",
            messages=[{"role": "user", "content": "Give facts about Lisbon."}],
            response_format=CityFacts,
        )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, CityFacts)


# -- responses


async def test_responses_answers_plain_and_streamed(door: Door) -> None:
    async with door.client() as client:
        whole = await client.responses.create(
            model="auto", input=QUESTION, instructions="Answer briefly."
        )
        assert whole.output_text.startswith("Simulated answer to")
        assert whole.status == "completed"
        assert whole.usage is not None
        assert whole.usage.output_tokens > 0
        kinds: list[str] = []
        text = ""
        final = None
        async with client.responses.stream(model="auto", input=QUESTION) as stream:
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    text += event.delta
            final = await stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.output_text.done" in kinds
    assert text.startswith("Simulated answer to")
    assert final.output_text == text
    assert final.usage is not None


async def test_responses_function_call_items_round_trip(door: Door) -> None:
    tool: Any = {"type": "function", **WEATHER_TOOL["function"]}
    async with door.client() as client:
        first = await client.responses.create(
            model="auto",
            input="Weather in Rome?",
            tools=[tool],
            tool_choice="required",
        )
        calls = [item for item in first.output if item.type == "function_call"]
        assert calls
        conversation: Any = [
            {"role": "user", "content": "Weather in Rome?"},
            *[call.model_dump(exclude_none=True) for call in calls],
            {
                "type": "function_call_output",
                "call_id": calls[0].call_id,
                "output": '{"celsius": 21}',
            },
        ]
        second = await client.responses.create(
            model="auto", input=conversation, tools=[tool]
        )
    assert second.output_text


# -- models and embeddings


async def test_models_lists_auto_and_the_priced_models(door: Door) -> None:
    async with door.client() as client:
        models = [model.id async for model in client.models.list()]
    assert models[0] == "auto"
    assert "gpt-4.1-mini" in models


async def test_a_model_the_key_may_not_use_is_forbidden(door: Door) -> None:
    async with door.client(key=NANO_KEY, max_retries=0) as client:
        listed = [model.id async for model in client.models.list()]
        allowed = await client.chat.completions.create(
            model="gpt-4.1-nano", messages=[{"role": "user", "content": QUESTION}]
        )
        with pytest.raises(openai.PermissionDeniedError) as forbidden:
            await client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": QUESTION}]
            )
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": QUESTION}]
            )
    assert listed == ["gpt-4.1-nano"]
    assert allowed.model == "gpt-4.1-nano"
    assert forbidden.value.status_code == 403
    assert forbidden.value.code == "model_not_allowed"


async def test_embeddings_answer_and_repeat_from_the_cache(door: Door) -> None:
    async with door.client() as client:
        first = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["red apples", "green pears"]
        )
        second = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["red apples", "green pears"]
        )
    parsed = first.parse()
    assert len(parsed.data) == 2
    assert len(parsed.data[0].embedding) > 0
    assert parsed.usage.prompt_tokens > 0
    assert first.headers["x-tollgate-cache-status"] == "miss"
    assert second.headers["x-tollgate-cache-status"] == "exact"
    assert second.parse().data[1].embedding == parsed.data[1].embedding


# -- batches


async def test_a_batch_from_file_upload_to_results(door: Door) -> None:
    lines = [
        {
            "custom_id": f"item-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "auto",
                "messages": [{"role": "user", "content": f"Question number {n}?"}],
            },
        }
        for n in range(3)
    ]
    content = "\n".join(json.dumps(line) for line in lines).encode()
    async with door.client() as client:
        uploaded = await client.files.create(
            file=("batch.jsonl", content), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "nightly"},
        )
        assert batch.request_counts is not None
        assert batch.request_counts.total == 3
        deadline = time.monotonic() + 30
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            assert time.monotonic() < deadline, batch.status
            await asyncio.sleep(0.1)
            batch = await client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        assert batch.metadata == {"job": "nightly"}
        assert batch.output_file_id
        output = await client.files.content(batch.output_file_id)
    results = [json.loads(line) for line in output.text.splitlines()]
    assert sorted(r["custom_id"] for r in results) == ["item-0", "item-1", "item-2"]
    for result in results:
        body = result["response"]["body"]
        assert result["response"]["status_code"] == 200
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"]


async def test_an_ended_batch_leaves_no_file_at_the_upstream(door: Door) -> None:
    line = {
        "custom_id": "only",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": "Which files are left?"}],
        },
    }
    async with door.client() as client:
        uploaded = await client.files.create(
            file=("one.jsonl", json.dumps(line).encode()), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        deadline = time.monotonic() + 30
        # The gateway uploaded its input, the upstream wrote an output: both go
        # once the results are in the gateway's store.
        while batch.status != "completed" or door.sim.state.files:
            assert time.monotonic() < deadline, (batch.status, door.sim.state.files)
            await asyncio.sleep(0.1)
            batch = await client.batches.retrieve(batch.id)
        assert door.sim.state.batches  # it did go upstream
        assert batch.output_file_id
        output = await client.files.content(batch.output_file_id)
    (result,) = [json.loads(text) for text in output.text.splitlines()]
    assert result["custom_id"] == "only"
    assert result["response"]["status_code"] == 200


async def test_a_batch_can_be_cancelled_and_unknown_ones_are_404(door: Door) -> None:
    line = {
        "custom_id": "only",
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": "auto", "input": "Hello?"},
    }
    async with door.client() as client:
        uploaded = await client.files.create(
            file=("b.jsonl", json.dumps(line).encode()), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/responses",
            completion_window="24h",
        )
        try:
            cancelled = await client.batches.cancel(batch.id)
            assert cancelled.status in ("cancelling", "cancelled")
        except openai.BadRequestError:
            pass  # it finished first: cancelling a finished batch is refused
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_does_not_exist")


# -- errors


async def test_unknown_and_missing_keys_are_authentication_errors(door: Door) -> None:
    async with door.client(key="not-a-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{door.base_url}/chat/completions", json={"model": "auto"}
        ) as answer,
    ):
        body = await answer.json()
    assert answer.status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_bad_requests_name_the_param(door: Door) -> None:
    async with door.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="auto",
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "call_nope", "content": "x"},
                ],
            )
        assert caught.value.param == "messages[1].tool_call_id"
        assert caught.value.type == "invalid_request_error"
        with pytest.raises(openai.BadRequestError) as temperature:
            await client.responses.create(model="auto", input="hi", temperature=7)
        assert temperature.value.param == "temperature"
        with pytest.raises(openai.BadRequestError) as tool_name:
            await client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "hi"}],
                tools=[{"type": "function", "function": {"name": "bad name!"}}],
            )
        assert tool_name.value.param == "tools[0].function.name"


async def test_unknown_routes_are_404_in_openai_shape(door: Door) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{door.base_url}/assistants",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as answer,
    ):
        body = await answer.json()
    assert answer.status == 404
    assert body["error"]["code"] == "unknown_url"
    assert body["error"]["type"] == "invalid_request_error"


async def test_rate_limit_errors_advertise_when_to_retry(door: Door) -> None:
    request: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": "ping"}],
        "extra_headers": {"x-tollgate-cache": "bypass"},
    }
    async with door.client(key=BURST_KEY, max_retries=0) as client:
        denied: openai.RateLimitError | None = None
        for _ in range(80):
            try:
                await client.chat.completions.create(**request)
            except openai.RateLimitError as error:
                denied = error
                break
    assert denied is not None
    headers = denied.response.headers
    retry_ms = int(headers["retry-after-ms"])
    assert 0 < retry_ms <= 2000
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert int(headers["x-ratelimit-limit-tokens"]) > 0
    assert denied.code == "rate_limit_exceeded"
    # The SDK's own retry waits the advertised time, then succeeds.
    async with door.client(key=BURST_KEY, max_retries=3) as client:
        started = time.monotonic()
        while True:
            try:
                await client.with_options(max_retries=0).chat.completions.create(
                    **request
                )
            except openai.RateLimitError as error:
                advertised = int(error.response.headers["retry-after-ms"]) / 1000
                break
        started = time.monotonic()
        completion = await client.chat.completions.create(**request)
        waited = time.monotonic() - started
    assert completion.choices[0].message.content
    assert waited >= advertised * 0.8


# -- streams that break, clients that leave


@pytest.mark.parametrize("door", [50.0], indirect=True)
async def test_a_client_that_leaves_frees_the_upstream_and_pays_for_what_it_read(
    door: Door,
) -> None:
    body = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "max_tokens": 400,
    }
    headers = {
        "authorization": f"Bearer {API_KEY}",
        "x-request-id": "req-leaves",
        "x-tollgate-cache": "bypass",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{door.base_url}/chat/completions", json=body, headers=headers
        ) as answer,
    ):
        assert answer.status == 200
        first = await answer.content.readline()
        assert first.startswith(b"data: ")
    # The connection is closed after one chunk: at 50 ms a token, the rest of the
    # answer (at least 20 tokens) would take a second or more.

    async with grpc.aio.insecure_channel(door.grpc_address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(10):  # half a second
            status = await gateway.GetStatus(
                gateway_pb.GetStatusRequest(),
                metadata=(("authorization", f"Bearer {API_KEY}"),),
            )
            if status.in_flight == 0:
                break
            await asyncio.sleep(0.05)
    assert status.in_flight == 0, "the upstream call outlived its client"

    # The ledger (fresh for this test) holds this one request once it is booked.
    report = costs_pb.GetReportResponse()
    async with grpc.aio.insecure_channel(door.costs_address) as channel:
        ledger = costs_pb2_grpc.CostsServiceStub(channel)
        ahead = timestamp_pb2.Timestamp(seconds=int(time.time()) + 86_400)
        for _ in range(100):
            report = await ledger.GetReport(costs_pb.GetReportRequest(end_time=ahead))
            if report.total_requests:
                break
            await asyncio.sleep(0.05)
    assert report.total_requests == 1, "what was consumed was not booked"
    # A partial answer: the prompt and a few output tokens (gpt-4.1-mini: 0.40 and
    # 1.60 dollars per 1M), far from a whole answer.
    assert 0 < report.total_cost_micros <= (100 * 400_000 + 10 * 1_600_000) // 10**6


async def test_a_broken_upstream_stream_ends_with_an_error_event(door: Door) -> None:
    await _fault(door, "broken_stream")
    async with door.client() as client:
        stream = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Tell me a long story."}],
            stream=True,
            extra_headers={"x-tollgate-cache": "bypass"},
        )
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    assert "stream" in caught.value.message
    # And on the wire: an error event, never [DONE].
    await _fault(door, "broken_stream")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{door.base_url}/chat/completions",
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "x-tollgate-cache": "bypass",
            },
            json={
                "model": "auto",
                "stream": True,
                "messages": [{"role": "user", "content": "Another long story."}],
            },
        ) as answer,
    ):
        raw = (await answer.read()).decode()
    assert "[DONE]" not in raw
    assert '"error"' in raw.strip().splitlines()[-1]


# A fixed model: the doors are compared, not routing, which a cold router (loading
# its embedding model on the first `auto` request) may answer by the local route.
DOORS_MODEL = "gpt-4.1-mini"


async def test_grpc_and_http_doors_answer_alike(door: Door) -> None:
    question = "Which is larger, a lake or a sea?"
    async with grpc.aio.insecure_channel(door.grpc_address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        over_grpc = await stub.CreateResponse(
            gateway_pb.CreateResponseRequest(
                input=question, model=DOORS_MODEL, cache_bypass=True
            ),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
    async with door.client() as client:
        raw = await client.responses.with_raw_response.create(
            model=DOORS_MODEL,
            input=question,
            extra_headers={"x-tollgate-cache": "bypass"},
        )
    over_http = raw.parse()
    assert over_http.output_text == over_grpc.output_text
    assert over_http.usage is not None
    assert over_http.usage.input_tokens == over_grpc.usage.input_tokens
    assert over_http.usage.output_tokens == over_grpc.usage.output_tokens
    assert int(raw.headers["x-tollgate-cost-micros"]) == over_grpc.cost_micros
