"""The model call's span and its GenAI attributes, through the SDK and the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from services.core import tracing
from services.core.clock import FakeClock
from services.core.conversation import FormatKind, Prompt, ResponseFormat
from services.gateway.domain import UpstreamAnswer, UpstreamCall
from services.gateway.ports import (
    DependencyUnavailableError,
    UpstreamStreamBrokenError,
)
from services.gateway.upstream import OpenAIUpstream
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings

MODEL = "gpt-4.1-mini"
CALL = UpstreamCall(
    model=MODEL,
    prompt=Prompt.of_text("What is a token bucket? codename KESTREL"),
    max_output_tokens=300,
    temperature=0.5,
    top_p=0.9,
)


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
async def upstream(sim: RunningSimulator) -> AsyncIterator[OpenAIUpstream]:
    async def no_sleep(_: float) -> None:
        return None

    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-t", max_retries=0)
    running = OpenAIUpstream(client, max_retries=2, clock=FakeClock(), sleep=no_sleep)
    yield running
    await running.close()


async def _schedule(sim: RunningSimulator, kind: str, count: int) -> None:
    async with (
        aiohttp.ClientSession() as admin,
        admin.post(
            f"{sim.root_url}/_sim/faults", json={"kind": kind, "count": count}
        ) as scheduled,
    ):
        assert scheduled.status == 200


def _call_and_attempts(
    spans: InMemorySpanExporter,
) -> tuple[ReadableSpan, list[ReadableSpan]]:
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.name == f"chat {MODEL}"]
    attempts = [s for s in finished if s.name == "upstream.attempt"]
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == call.context.span_id
    return call, attempts


async def test_a_call_is_one_client_span_with_the_genai_attributes(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream, sim: RunningSimulator
) -> None:
    answer = await upstream.create(CALL, 30.0)

    call, attempts = _call_and_attempts(spans)
    assert call.kind is SpanKind.CLIENT
    assert len(attempts) == 1
    attributes = dict(call.attributes or {})
    assert str(attributes.pop("gen_ai.response.id")).startswith("resp_")
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 300,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.response.model": answer.model,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": answer.usage.input_tokens,
        "gen_ai.usage.output_tokens": answer.usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "server.address": "127.0.0.1",
        "server.port": sim.port,
    }
    assert call.status.status_code is StatusCode.UNSET
    assert "KESTREL" not in repr(spans.get_finished_spans())


async def test_a_response_format_names_the_output_type(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream
) -> None:
    prompt = Prompt.of_text("Reply with a JSON object.")
    structured = UpstreamCall(
        model=MODEL,
        prompt=Prompt(
            messages=prompt.messages,
            response_format=ResponseFormat(FormatKind.JSON_OBJECT),
        ),
        max_output_tokens=0,
        temperature=None,
    )

    await upstream.create(structured, 30.0)

    call, _ = _call_and_attempts(spans)
    attributes = call.attributes or {}
    assert attributes["gen_ai.output.type"] == "json"
    assert "gen_ai.request.max_tokens" not in attributes
    assert "gen_ai.request.temperature" not in attributes


async def test_a_call_that_fails_after_its_retries_is_one_error_span(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream, sim: RunningSimulator
) -> None:
    await _schedule(sim, "server_error", 3)

    with pytest.raises(DependencyUnavailableError):
        await upstream.create(CALL, 30.0)

    call, attempts = _call_and_attempts(spans)
    assert len(attempts) == 3
    assert call.status.status_code is StatusCode.ERROR
    attributes = call.attributes or {}
    assert attributes["error.type"] == "DependencyUnavailableError"
    assert "gen_ai.response.id" not in attributes
    assert call.events == ()


async def test_a_stream_span_ends_with_the_answer(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream
) -> None:
    events = [event async for event in upstream.stream(CALL, 30.0)]

    answer = events[-1]
    assert isinstance(answer, UpstreamAnswer)
    call, attempts = _call_and_attempts(spans)
    assert len(attempts) == 1
    attributes = call.attributes or {}
    assert attributes["gen_ai.usage.output_tokens"] == answer.usage.output_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert call.status.status_code is StatusCode.UNSET


async def test_a_broken_stream_ends_its_span_as_an_error(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream, sim: RunningSimulator
) -> None:
    await _schedule(sim, "broken_stream", 1)

    with pytest.raises(UpstreamStreamBrokenError):
        async for _ in upstream.stream(CALL, 30.0):
            pass

    call, _ = _call_and_attempts(spans)
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"]


async def test_a_stream_its_reader_abandons_ends_its_span(
    spans: InMemorySpanExporter, upstream: OpenAIUpstream
) -> None:
    stream = upstream.stream(CALL, 30.0)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    call, _ = _call_and_attempts(spans)
    assert (call.attributes or {})["error.type"] == "GeneratorExit"
    assert call.status.status_code is StatusCode.ERROR
