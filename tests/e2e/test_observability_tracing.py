"""One trace per gateway request, across the five services run in-process.

Every service runs on its own gRPC port in this process, so one in-memory exporter
sees the spans of all of them, joined only through ``traceparent`` metadata; their
log lines, rendered as in production, carry the ids of the spans they were written
in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core import tracing
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
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
from tests.logs import json_logs

API_KEY = "tg-tracing-test-key"
CREATE = "/tollgate.gateway.v1.GatewayService/CreateResponse"
# The downstream calls every answered, uncached `auto` request makes: the router
# classifies with its own encoder, so no call embeds the prompt for it.
DOWNSTREAM_RPCS = {
    "/tollgate.router.v1.RouterService/Route",
    "/tollgate.ratelimit.v1.RateLimitService/AcquireBatch",
    "/tollgate.cache.v1.CacheService/Lookup",
    "/tollgate.costs.v1.CostsService/CheckBudget",
    "/tollgate.costs.v1.CostsService/RecordBatch",
    "/tollgate.ratelimit.v1.RateLimitService/ReconcileBatch",
    "/tollgate.cache.v1.CacheService/Store",
    "/tollgate.router.v1.RouterService/RecordOutcomeBatch",
}

KINDS = (SpanKind.CLIENT, SpanKind.SERVER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)
    provider.shutdown()


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(
        SimulatorSettings(port=0, latency_ms=0)
    ) as running:
        yield running


@pytest.fixture
async def gateway(
    serve_app: ServeApp, sim: RunningSimulator, tmp_path: Path
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    ratelimit = await serve_app(await build_ratelimit(RateLimitSettings()))
    cache = await serve_app(await build_cache(CacheSettings()))
    router = await serve_app(await build_router(RouterSettings()))
    costs = await serve_app(
        await build_costs(CostsSettings(database_path=tmp_path / "costs.sqlite3"))
    )
    keys = tmp_path / "keys.yaml"
    entry = {"sha256": hash_key(API_KEY), "tenant_id": "acme", "user_id": "alice"}
    keys.write_text(yaml.safe_dump({"keys": [entry]}), "utf-8")
    settings = GatewaySettings(
        http_port=None,  # the HTTP door has its own tests
        ratelimit_address=ratelimit.address,
        cache_address=cache.address,
        router_address=router.address,
        costs_address=costs.address,
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        upstream_max_retries=2,
    )
    running = await serve_app(await build_gateway(settings))
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


async def _spans_until(
    spans: InMemorySpanExporter, expected: set[tuple[str, SpanKind]]
) -> list[ReadableSpan]:
    """The finished spans once every (name, kind) expected has ended, or after 10 s.

    Some downstream calls (ReconcileBatch, Store, RecordOutcomeBatch) run after
    the reply; the batches go 20 ms after it.
    """
    deadline = time.monotonic() + 10.0
    while True:
        finished = list(spans.get_finished_spans())
        if expected <= {(s.name, s.kind) for s in finished}:
            return finished
        if time.monotonic() > deadline:
            return finished
        await asyncio.sleep(0.01)


async def test_a_gateway_request_is_one_trace_across_every_service(
    spans: InMemorySpanExporter,
    gateway: gateway_pb2_grpc.GatewayServiceStub,
    sim: RunningSimulator,
) -> None:
    async with (
        aiohttp.ClientSession() as admin,
        admin.post(
            f"{sim.root_url}/_sim/faults", json={"kind": "unavailable", "count": 1}
        ) as scheduled,
    ):
        assert scheduled.status == 200
    spans.clear()

    reply = await gateway.CreateResponse(
        gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
        metadata=(("authorization", f"Bearer {API_KEY}"),),
    )
    finished = await _spans_until(
        spans,
        {(CREATE, SpanKind.SERVER)}
        | {(rpc, kind) for rpc in DOWNSTREAM_RPCS for kind in KINDS},
    )

    assert reply.output_text
    roots = [s for s in finished if s.name == CREATE]
    assert len(roots) == 1
    root = roots[0]
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    trace_id = root.context.trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}

    rpc_clients = [
        s for s in finished if s.kind is SpanKind.CLIENT and s.name[0] == "/"
    ]
    clients = {s.name: s for s in rpc_clients}
    servers = {s.name: s for s in finished if s.kind is SpanKind.SERVER}
    assert set(clients) == DOWNSTREAM_RPCS
    assert set(servers) == {CREATE, *DOWNSTREAM_RPCS}
    for name in DOWNSTREAM_RPCS:
        client, server = clients[name], servers[name]
        assert client.parent is not None
        assert client.parent.span_id == root.context.span_id, name
        assert server.parent is not None
        assert server.parent.span_id == client.context.span_id, name
        assert client.status.status_code is StatusCode.UNSET, name

    # One model call, a CLIENT span covering both attempts (the first one failed).
    calls = [s for s in finished if s.name == f"chat {reply.model}"]
    assert len(calls) == 1
    call = calls[0]
    assert call.kind is SpanKind.CLIENT
    assert call.parent is not None
    assert call.parent.span_id == root.context.span_id
    assert call.status.status_code is StatusCode.UNSET
    attempts = [s for s in finished if s.name == "upstream.attempt"]
    assert len(attempts) == 2
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
    attributes = sorted(
        (
            s.attributes["tollgate.upstream.attempt"],
            s.attributes["tollgate.outcome"],
            s.attributes["gen_ai.request.model"],
        )
        for s in attempts
        if s.attributes is not None
    )
    assert attributes == [(1, "error", reply.model), (2, "ok", reply.model)]


async def test_every_request_gets_its_own_trace(
    spans: InMemorySpanExporter, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    for text in ("What is a token bucket?", "What is a leaky bucket?"):
        await gateway.CreateResponse(
            gateway_pb.CreateResponseRequest(input=text),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )

    roots = [s for s in spans.get_finished_spans() if s.name == CREATE]
    assert len(roots) == 2
    assert roots[0].context.trace_id != roots[1].context.trace_id
    assert all(s.parent is None for s in roots)


async def test_the_model_call_span_carries_the_genai_attributes(
    spans: InMemorySpanExporter,
    gateway: gateway_pb2_grpc.GatewayServiceStub,
    sim: RunningSimulator,
) -> None:
    secret = "Which bucket is leaky? codename OSPREY"
    reply = await gateway.CreateResponse(
        gateway_pb.CreateResponseRequest(
            input=secret, temperature=0.3, max_output_tokens=200
        ),
        metadata=(("authorization", f"Bearer {API_KEY}"),),
    )
    name = f"chat {reply.model}"
    finished = await _spans_until(spans, {(name, SpanKind.CLIENT)})

    call = next(s for s in finished if s.name == name)
    attributes = dict(call.attributes or {})
    response_id = attributes.pop("gen_ai.response.id")
    assert isinstance(response_id, str)
    assert response_id.startswith("resp_")
    assert attributes.pop("gen_ai.request.temperature") == pytest.approx(0.3)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": reply.model,
        "gen_ai.request.max_tokens": 200,
        "gen_ai.response.model": reply.model,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": reply.usage.input_tokens,
        "gen_ai.usage.output_tokens": reply.usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": reply.usage.cached_input_tokens,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "server.address": "127.0.0.1",
        "server.port": sim.port,
    }
    # Neither the prompt nor the answer is on any span.
    for span in finished:
        for value in (span.attributes or {}).values():
            assert "OSPREY" not in str(value)
            assert reply.output_text[:30] not in str(value)


async def test_a_stream_call_span_lasts_until_the_answer_completes(
    spans: InMemorySpanExporter, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    completed = None
    async for event in gateway.StreamResponse(
        gateway_pb.StreamResponseRequest(input="Stream me a short answer."),
        metadata=(("authorization", f"Bearer {API_KEY}"),),
    ):
        if event.HasField("started"):
            model = event.started.model
        if event.HasField("completed"):
            completed = event.completed
    assert completed is not None
    name = f"chat {model}"
    finished = await _spans_until(spans, {(name, SpanKind.CLIENT)})

    call = next(s for s in finished if s.name == name)
    attempt = next(s for s in finished if s.name == "upstream.attempt")
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    # The attempt ends when the stream opens; the call, when its last event came.
    assert call.end_time is not None and attempt.end_time is not None
    assert call.end_time > attempt.end_time
    attributes = call.attributes or {}
    assert attributes["gen_ai.usage.output_tokens"] == completed.usage.output_tokens
    assert attributes["gen_ai.usage.input_tokens"] == completed.usage.input_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert call.status.status_code is StatusCode.UNSET


async def test_log_lines_carry_the_ids_of_the_span_they_were_written_in(
    spans: InMemorySpanExporter,
    gateway: gateway_pb2_grpc.GatewayServiceStub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = "/tollgate.costs.v1.CostsService/RecordBatch"
    # The ledger's per-request line is at debug level.
    with json_logs(capsys, "DEBUG") as logs:
        await gateway.CreateResponse(
            gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
        finished = await _spans_until(
            spans, {(CREATE, SpanKind.SERVER), (record, SpanKind.SERVER)}
        )
        lines = logs.read()

    root = next(s for s in finished if s.name == CREATE)
    booked = next(s for s in finished if s.name == record and s.kind is SpanKind.SERVER)
    trace_id = f"{root.context.trace_id:032x}"
    # The gateway's access line, written in its RPC's span...
    (access,) = [line for line in lines if line["event"] == "access"]
    assert (access["trace_id"], access["span_id"]) == (
        trace_id,
        f"{root.context.span_id:016x}",
    )
    # ...and the ledger's line, in the RecordBatch RPC's span, in another service.
    (usage,) = [line for line in lines if line["event"] == "usage_recorded"]
    assert (usage["trace_id"], usage["span_id"]) == (
        trace_id,
        f"{booked.context.span_id:016x}",
    )
    # Every line of the request, in any service, is in its trace.
    of_request = [line for line in lines if "request_id" in line]
    assert access in of_request and usage in of_request
    assert {line.get("trace_id") for line in of_request} == {trace_id}


async def test_without_tracing_log_lines_have_no_trace_ids(
    gateway: gateway_pb2_grpc.GatewayServiceStub, capsys: pytest.CaptureFixture[str]
) -> None:
    with json_logs(capsys) as logs:
        await gateway.CreateResponse(
            gateway_pb.CreateResponseRequest(input="What is a leaky bucket?"),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
        lines = logs.read()

    assert [line["event"] for line in lines].count("access") == 1
    assert not [line for line in lines if "trace_id" in line or "span_id" in line]
