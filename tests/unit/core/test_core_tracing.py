from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core import tracing
from services.core.logging import add_trace_context
from services.core.server import start_server
from services.core.settings import ServerSettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from tests.conftest import ServeApp

ACQUIRE = "/tollgate.ratelimit.v1.RateLimitService/Acquire"
PARENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{PARENT_TRACE_ID:032x}-{PARENT_SPAN_ID:016x}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)
    provider.shutdown()


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


async def _finished(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    for _ in range(1000):
        if len(spans.get_finished_spans()) >= count:
            break
        await asyncio.sleep(0)
    return list(spans.get_finished_spans())


def test_tracing_is_off_by_default_and_then_records_nothing() -> None:
    assert not tracing.enabled()
    with tracing.client_span(ratelimit_pb.AcquireRequest()) as metadata:
        assert metadata == ()
    with tracing.server_span(ACQUIRE, [("traceparent", TRACEPARENT)]) as span:
        assert not span.is_recording()
    with tracing.span("upstream.attempt", {}) as span:
        assert not span.is_recording()


def test_a_client_span_carries_its_context_to_the_server_span(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.client_span(ratelimit_pb.AcquireRequest()) as metadata:
        assert [key for key, _ in metadata] == ["traceparent"]
        with tracing.server_span(ACQUIRE, metadata) as server:
            tracing.end_rpc(server, grpc.StatusCode.OK, server=True)

    kinds = {span.kind: span for span in spans.get_finished_spans()}
    client, server_span = kinds[SpanKind.CLIENT], kinds[SpanKind.SERVER]
    assert client.name == server_span.name == ACQUIRE
    assert server_span.context.trace_id == client.context.trace_id
    assert server_span.parent is not None
    assert server_span.parent.span_id == client.context.span_id
    assert client.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "tollgate.ratelimit.v1.RateLimitService",
        "rpc.method": "Acquire",
        "rpc.grpc.status_code": 0,
    }


def test_a_failed_call_marks_the_client_span_with_its_code(
    spans: InMemorySpanExporter,
) -> None:
    failure = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "connection refused",
    )

    with (
        pytest.raises(grpc.aio.AioRpcError),
        tracing.client_span(common_pb.Usage()),
    ):
        raise failure

    span = spans.get_finished_spans()[0]
    assert span.attributes is not None
    assert (
        span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    )
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()  # no exception text in spans


def test_server_spans_are_errors_only_for_server_faults(
    spans: InMemorySpanExporter,
) -> None:
    for code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL):
        with tracing.server_span(f"/pkg.Service/{code.name}", None) as span:
            tracing.end_rpc(span, code, server=True)

    assert _one(spans, "/pkg.Service/RESOURCE_EXHAUSTED").status.status_code is (
        StatusCode.UNSET
    )
    assert _one(spans, "/pkg.Service/INTERNAL").status.status_code is StatusCode.ERROR


def test_an_upstream_attempt_span_holds_its_outcome(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.span("upstream.attempt", {"gen_ai.request.model": "m"}) as span:
        tracing.end_span(span, "throttled")

    finished = _one(spans, "upstream.attempt")
    assert finished.attributes == {
        "gen_ai.request.model": "m",
        "tollgate.outcome": "throttled",
    }
    assert finished.status.status_code is StatusCode.ERROR


async def test_the_rpc_envelope_continues_the_callers_trace(
    spans: InMemorySpanExporter, serve_app: ServeApp
) -> None:
    running = await serve_app(await build_ratelimit(RateLimitSettings()))
    request = ratelimit_pb.AcquireRequest(
        caller=common_pb.Caller(tenant_id="t1"), model="gpt-4.1-mini"
    )

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        await stub.Acquire(request, metadata=(("traceparent", TRACEPARENT),))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Acquire(ratelimit_pb.AcquireRequest())

    # The server may end its span just after the client has its answer.
    served = await _finished(spans, 2)
    assert [s.kind for s in served] == [SpanKind.SERVER, SpanKind.SERVER]
    continued, fresh = served
    assert continued.context.trace_id == PARENT_TRACE_ID
    assert continued.parent is not None
    assert continued.parent.span_id == PARENT_SPAN_ID
    assert continued.attributes is not None
    assert continued.attributes["rpc.grpc.status_code"] == 0
    assert fresh.parent is None
    assert fresh.context.trace_id != PARENT_TRACE_ID
    assert fresh.attributes is not None
    assert (
        fresh.attributes["rpc.grpc.status_code"]
        == (grpc.StatusCode.INVALID_ARGUMENT.value[0])
    )


def test_configure_tracing_needs_an_endpoint() -> None:
    assert tracing.configure_tracing("gateway", None) is None
    assert not tracing.enabled()

    provider = tracing.configure_tracing("gateway", "http://127.0.0.1:4317")

    assert provider is not None
    assert tracing.enabled()
    assert provider.resource.attributes["service.name"] == "tollgate-gateway"
    tracing.shutdown(provider)
    assert not tracing.enabled()


def test_the_endpoint_must_be_an_http_or_https_url() -> None:
    with pytest.raises(ValidationError):
        ServerSettings(otlp_endpoint="otel-collector:4317")
    assert ServerSettings(otlp_endpoint="https://otel.example:4317").otlp_endpoint


async def test_a_server_with_an_endpoint_traces_until_it_stops() -> None:
    running = await start_server(
        await build_ratelimit(RateLimitSettings()),
        ServerSettings(otlp_endpoint="http://127.0.0.1:4317"),
    )

    assert running.tracer_provider is not None
    assert tracing.enabled()
    await running.stop(0)
    assert not tracing.enabled()


def test_a_client_span_outlives_the_blocks_it_is_current_in(
    spans: InMemorySpanExporter,
) -> None:
    call = tracing.start_client_span("chat m", {"gen_ai.request.model": "m"})
    with tracing.use(call), tracing.span("upstream.attempt", {}):
        pass
    assert [s.name for s in spans.get_finished_spans()] == ["upstream.attempt"]

    tracing.finish_span(call)
    tracing.finish_span(call)  # a second end does nothing

    attempt, finished = spans.get_finished_spans()
    assert finished.name == "chat m"
    assert finished.kind is SpanKind.CLIENT
    assert attempt.parent is not None
    assert attempt.parent.span_id == finished.context.span_id
    assert finished.status.status_code is StatusCode.UNSET


def test_an_exception_in_use_ends_the_span_as_an_error_of_its_class(
    spans: InMemorySpanExporter,
) -> None:
    call = tracing.start_client_span("chat m", {})

    with pytest.raises(TimeoutError), tracing.use(call):
        raise TimeoutError("upstream text that must not be kept")

    finished = _one(spans, "chat m")
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.attributes == {"error.type": "TimeoutError"}
    assert finished.events == ()
    assert "upstream text" not in str(finished.status.description)


def test_while_tracing_is_off_client_and_http_spans_are_not_recorded() -> None:
    call = tracing.start_client_span("chat m", {})
    assert not call.is_recording()
    with tracing.use(call):
        pass
    tracing.finish_span(call, "Error")
    with tracing.http_server_span("GET", "/v1/models", {}) as span:
        assert not span.is_recording()
        tracing.end_http(span, 500)


def test_an_http_server_span_continues_the_callers_trace(
    spans: InMemorySpanExporter,
) -> None:
    headers = {"traceparent": TRACEPARENT}
    with tracing.http_server_span("GET", "/v1/batches/{batch_id}", headers) as span:
        tracing.end_http(span, 503)
    with tracing.http_server_span("GET", "", {}) as span:
        tracing.end_http(span, 404)

    routed, unrouted = spans.get_finished_spans()
    assert routed.name == "GET /v1/batches/{batch_id}"
    assert routed.kind is SpanKind.SERVER
    assert routed.context.trace_id == PARENT_TRACE_ID
    assert routed.parent is not None
    assert routed.parent.span_id == PARENT_SPAN_ID
    assert routed.attributes == {
        "http.request.method": "GET",
        "http.route": "/v1/batches/{batch_id}",
        "http.response.status_code": 503,
    }
    assert routed.status.status_code is StatusCode.ERROR
    assert unrouted.name == "GET"
    assert unrouted.parent is None
    assert unrouted.status.status_code is StatusCode.UNSET


def test_log_lines_carry_the_current_spans_ids(spans: InMemorySpanExporter) -> None:
    assert add_trace_context(None, "info", {"event": "outside"}) == {"event": "outside"}

    with tracing.server_span(ACQUIRE, [("traceparent", TRACEPARENT)]) as span:
        inside = add_trace_context(None, "info", {"event": "inside"})
        context = span.get_span_context()

    assert inside == {
        "event": "inside",
        "trace_id": f"{PARENT_TRACE_ID:032x}",
        "span_id": f"{context.span_id:016x}",
    }
    assert len(inside["trace_id"]) == 32
    assert len(inside["span_id"]) == 16
