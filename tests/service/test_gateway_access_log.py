"""One ``access`` line per gateway request, through both doors, as really written.

A real gateway (gRPC and HTTP) in front of the real downstream services and the
simulator, logging with the production configuration to captured stdout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core import tracing
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import GatewayApp
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key, key_id_of
from services.gateway.config import GatewaySettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.conftest import ServeApp
from tests.logs import json_logs

API_KEY = "tg-access-log-test-key"
KEY_ID = key_id_of(hash_key(API_KEY))
SECRET = "my card number is 4111-1111-1111-1111, codename HERON"
CREATE = "/tollgate.gateway.v1.GatewayService/CreateResponse"
STREAM = "/tollgate.gateway.v1.GatewayService/StreamResponse"
# Every access line has these fields, whatever the door and outcome.
FIELDS = {
    "tenant",
    "key_id",
    "user",
    "model_requested",
    "model",
    "cache_status",
    "input_tokens",
    "output_tokens",
    "cost_micros",
    "latency_ms",
}


@dataclass
class Gateway:
    """A running gateway: its gRPC stub and its HTTP door's base URL."""

    stub: gateway_pb2_grpc.GatewayServiceStub
    base_url: str


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(
        SimulatorSettings(port=0, latency_ms=0)
    ) as running:
        yield running


@pytest.fixture
async def gateway(
    serve_app: ServeApp, sim: RunningSimulator, tmp_path: Path
) -> AsyncIterator[Gateway]:
    ratelimit = await serve_app(await build_ratelimit(RateLimitSettings()))
    cache = await serve_app(await build_cache(CacheSettings()))
    router = await serve_app(await build_router(RouterSettings()))
    costs = await serve_app(
        await build_costs(CostsSettings(database_path=tmp_path / "costs.sqlite3"))
    )
    keys = tmp_path / "keys.yaml"
    entry = {
        "sha256": hash_key(API_KEY),
        "tenant_id": "acme",
        "user_id": "alice",
        "user_tier": "paid",
    }
    keys.write_text(yaml.safe_dump({"keys": [entry]}), "utf-8")
    settings = GatewaySettings(
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
    )
    running = await serve_app(await build_gateway(settings))
    app = running.app
    assert isinstance(app, GatewayApp)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield Gateway(
            gateway_pb2_grpc.GatewayServiceStub(channel),
            f"http://127.0.0.1:{app.http_port}/v1",
        )


def _auth(key: str = API_KEY, request_id: str = "") -> tuple[tuple[str, str], ...]:
    metadata = [("authorization", f"Bearer {key}")]
    if request_id:
        metadata.append(("x-request-id", request_id))
    return tuple(metadata)


def _assert_private(text: str, *answers: str) -> None:
    """Neither the prompt, nor an answer, nor the key is anywhere in the logs."""
    assert "HERON" not in text
    assert "4111-1111" not in text
    assert API_KEY not in text
    for answer in answers:
        assert answer[:40] not in text


async def test_a_grpc_request_writes_one_access_line_with_its_outcome(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    with json_logs(capsys) as logs:
        reply = await gateway.stub.CreateResponse(
            gateway_pb.CreateResponseRequest(input=SECRET),
            metadata=_auth(request_id="req-access-one"),
        )
        lines = logs.events("access")

    assert len(lines) == 1
    line = lines[0]
    assert set(line) >= FIELDS
    assert line["latency_ms"] > 0
    assert {k: v for k, v in line.items() if k not in ("latency_ms", "timestamp")} == {
        "event": "access",
        "level": "info",
        "service": "gateway",
        "request_id": "req-access-one",
        "rpc": CREATE,
        "tenant": "acme",
        "key_id": KEY_ID,
        "user": "alice",
        "model_requested": "auto",
        "model": reply.model,
        "cache_status": "miss",
        "input_tokens": reply.usage.input_tokens,
        "output_tokens": reply.usage.output_tokens,
        "cost_micros": reply.cost_micros,
        "code": "OK",
    }
    assert reply.cost_micros > 0
    _assert_private(logs.text, reply.output_text)


async def test_a_cache_hit_and_a_named_model_and_user_are_on_the_line(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    request = gateway_pb.CreateResponseRequest(
        input=SECRET, model="gpt-4.1-mini", user_id="bob", temperature=0.0
    )
    # The cache is written after the reply: ask until the answer is stored.
    for _ in range(100):
        warm = await gateway.stub.CreateResponse(request, metadata=_auth())
        if warm.cache_status == common_pb.CACHE_STATUS_EXACT:
            break
        await asyncio.sleep(0.01)
    with json_logs(capsys) as logs:
        reply = await gateway.stub.CreateResponse(request, metadata=_auth())
        lines = logs.events("access")

    assert reply.cache_status == common_pb.CACHE_STATUS_EXACT
    assert len(lines) == 1
    line = lines[0]
    assert (line["user"], line["model_requested"], line["model"]) == (
        "bob",
        "gpt-4.1-mini",
        "gpt-4.1-mini",
    )
    assert (line["cache_status"], line["cost_micros"], line["code"]) == (
        "exact",
        0,
        "OK",
    )
    _assert_private(logs.text, reply.output_text)


async def test_a_stream_writes_one_line_when_it_ends(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    with json_logs(capsys) as logs:
        completed = None
        text = []
        async for event in gateway.stub.StreamResponse(
            gateway_pb.StreamResponseRequest(input=SECRET), metadata=_auth()
        ):
            text.append(event.delta.text)
            if event.HasField("completed"):
                completed = event.completed
        lines = logs.events("access")

    assert completed is not None
    assert len(lines) == 1
    line = lines[0]
    assert line["rpc"] == STREAM
    assert (line["cache_status"], line["code"]) == ("miss", "OK")
    assert line["input_tokens"] == completed.usage.input_tokens
    assert line["output_tokens"] == completed.usage.output_tokens
    assert line["cost_micros"] == completed.cost_micros > 0
    _assert_private(logs.text, "".join(text))


async def test_a_refused_request_writes_one_line_with_its_code_and_reason(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    with json_logs(capsys) as logs:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gateway.stub.CreateResponse(
                gateway_pb.CreateResponseRequest(input=SECRET),
                metadata=_auth("tg-wrong-secret"),
            )
        lines = logs.read()

    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    access = [line for line in lines if line["event"] == "access"]
    assert len(access) == 1
    assert (access[0]["code"], access[0]["reason"]) == (
        "UNAUTHENTICATED",
        "API_KEY_INVALID",
    )
    assert (access[0]["tenant"], access[0]["key_id"]) == ("", "")
    # The access line says it all: no second line for the failure.
    assert not [line for line in lines if line["event"] == "rpc_failed"]
    assert "tg-wrong-secret" not in logs.text
    _assert_private(logs.text)


async def test_the_http_door_writes_one_line_per_request_too(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    client = openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=API_KEY, max_retries=0
    )
    with json_logs(capsys) as logs:
        completion = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": SECRET}]
        )
        streamed: list[str] = []
        stream = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": SECRET + " (streamed)"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            streamed.extend(choice.delta.content or "" for choice in chunk.choices)
        with pytest.raises(openai.NotFoundError):
            await client.get("/nowhere", cast_to=object)
        lines = logs.read()
    await client.close()

    access = [line for line in lines if line["event"] == "access"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/v1/chat/completions", 200),
        ("POST", "/v1/chat/completions", 200),
        ("GET", "/v1/nowhere", 404),
    ]
    answered, stream_line, missing = access
    assert completion.usage is not None
    assert answered["input_tokens"] == completion.usage.prompt_tokens
    assert answered["output_tokens"] == completion.usage.completion_tokens
    assert answered["model"] == completion.model
    assert (answered["tenant"], answered["key_id"], answered["user"]) == (
        "acme",
        KEY_ID,
        "alice",
    )
    assert answered["cost_micros"] > 0
    assert stream_line["output_tokens"] > 0
    assert stream_line["cache_status"] == "miss"
    assert missing["reason"] == "UNKNOWN_URL"
    assert not [line for line in lines if line["event"] == "http_failed"]
    _assert_private(logs.text, completion.choices[0].message.content or "")
    _assert_private(logs.text, "".join(streamed))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)
    provider.shutdown()


async def test_an_http_request_is_traced_and_its_line_carries_the_ids(
    spans: InMemorySpanExporter, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id, parent_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    client = openai.AsyncOpenAI(
        base_url=gateway.base_url,
        api_key=API_KEY,
        max_retries=0,
        default_headers={"traceparent": f"00-{trace_id:032x}-{parent_id:016x}-01"},
    )
    with json_logs(capsys) as logs:
        completion = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": SECRET}]
        )
        (line,) = logs.events("access")
    await client.close()

    finished = spans.get_finished_spans()
    (door,) = [s for s in finished if s.kind is SpanKind.SERVER and s.name[0] != "/"]
    assert door.name == "POST /v1/chat/completions"
    assert door.context.trace_id == trace_id
    assert door.parent is not None
    assert door.parent.span_id == parent_id
    assert (door.attributes or {})["http.response.status_code"] == 200
    (call,) = [s for s in finished if s.name == f"chat {completion.model}"]
    assert call.parent is not None
    assert call.parent.span_id == door.context.span_id
    assert (line["trace_id"], line["span_id"]) == (
        f"{trace_id:032x}",
        f"{door.context.span_id:016x}",
    )
