"""OpenAIUpstream through the real ``openai`` SDK against the OpenAI simulator."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from services.core.clock import FakeClock
from services.core.conversation import Prompt
from services.core.errors import DeadlineExceededError, FailedPreconditionError
from services.core.tokens import count_tokens
from services.gateway.domain import ToolCallDelta, UpstreamAnswer, UpstreamCall
from services.gateway.ports import (
    DependencyUnavailableError,
    UpstreamStreamBrokenError,
    UpstreamThrottledError,
)
from services.gateway.upstream import BACKOFF_BASE_SECONDS, OpenAIUpstream, env_proxy
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings

MODEL = "gpt-4.1-mini"
QUESTION = "What does a gateway in front of an API do?"
MAX_RETRIES = 2


class MaxJitter(random.Random):
    """Full jitter that always draws its ceiling, so backoffs are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


class RecordingSleep:
    """Records each wait and moves the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(port=0, latency_ms=0, hang_seconds=5.0)
    async with await start_simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def admin(sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.root_url) as session:
        yield session


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@contextlib.asynccontextmanager
async def _closing(upstream: OpenAIUpstream) -> AsyncIterator[OpenAIUpstream]:
    """``upstream``, its connections closed after the block."""
    try:
        yield upstream
    finally:
        await upstream.close()


@pytest.fixture
async def upstream(
    client: openai.AsyncOpenAI, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[OpenAIUpstream]:
    async with _closing(
        OpenAIUpstream(
            client, max_retries=MAX_RETRIES, clock=clock, sleep=sleep, rng=MaxJitter()
        )
    ) as running:
        yield running


async def _schedule(
    admin: aiohttp.ClientSession, kind: str, count: int, retry_after: int = 1
) -> None:
    body = {"kind": kind, "count": count, "retry_after_seconds": retry_after}
    async with admin.post("/_sim/faults", json=body) as response:
        assert response.status == 200


async def _stats(admin: aiohttp.ClientSession) -> dict[str, Any]:
    async with admin.get("/_sim/stats") as response:
        stats: dict[str, Any] = await response.json()
    return stats


async def _ask(
    upstream: OpenAIUpstream,
    *,
    max_output_tokens: int = 0,
    temperature: float | None = None,
    timeout_seconds: float = 30.0,
) -> UpstreamAnswer:
    return await upstream.create(
        UpstreamCall(
            model=MODEL,
            prompt=Prompt.of_text(QUESTION, "Answer in one short paragraph."),
            max_output_tokens=max_output_tokens,
            temperature=temperature,
        ),
        timeout_seconds,
    )


async def test_success_parses_text_and_usage(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    answer = await _ask(upstream, temperature=0.2)

    stats = await _stats(admin)
    assert answer.model == MODEL
    assert answer.output_text.startswith("Simulated answer to")
    assert answer.truncated is False
    assert answer.usage.input_tokens == stats["input_tokens"] > 0
    assert answer.usage.output_tokens == stats["output_tokens"]
    assert answer.usage.output_tokens == count_tokens(answer.output_text)
    assert answer.usage.cached_input_tokens == 0
    assert stats["requests"] == 1
    assert sleep.waits == []


async def test_a_small_output_limit_truncates_the_answer(
    upstream: OpenAIUpstream,
) -> None:
    answer = await _ask(upstream, max_output_tokens=1)

    assert answer.truncated is True
    assert answer.usage.output_tokens == 1


@pytest.mark.parametrize("kind", ["server_error", "unavailable"])
async def test_a_server_error_is_retried_after_a_backoff(
    upstream: OpenAIUpstream,
    admin: aiohttp.ClientSession,
    sleep: RecordingSleep,
    kind: str,
) -> None:
    await _schedule(admin, kind, 1)

    answer = await _ask(upstream)

    assert answer.output_text
    assert (await _stats(admin))["requests"] == 2
    assert sleep.waits == [BACKOFF_BASE_SECONDS]


async def test_server_errors_beyond_the_retries_are_unavailable(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    await _schedule(admin, "unavailable", MAX_RETRIES + 1)

    with pytest.raises(DependencyUnavailableError) as raised:
        await _ask(upstream)

    assert raised.value.dependency == "upstream"
    assert (await _stats(admin))["requests"] == MAX_RETRIES + 1
    # Exponential backoff: 0.2 s, then 0.4 s.
    assert sleep.waits == [BACKOFF_BASE_SECONDS, 2 * BACKOFF_BASE_SECONDS]


async def test_a_429_waits_at_least_its_retry_after(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    await _schedule(admin, "rate_limit", 1, retry_after=3)

    answer = await _ask(upstream)

    assert answer.output_text
    assert (await _stats(admin))["requests"] == 2
    [wait] = sleep.waits
    assert wait >= 3.0


async def test_429s_beyond_the_retries_are_throttled_with_the_retry_after(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    await _schedule(admin, "rate_limit", MAX_RETRIES + 1, retry_after=2)

    with pytest.raises(UpstreamThrottledError) as raised:
        await _ask(upstream)

    assert raised.value.retry_after == 2.0
    assert (await _stats(admin))["requests"] == MAX_RETRIES + 1
    assert len(sleep.waits) == MAX_RETRIES
    assert all(wait >= 2.0 for wait in sleep.waits)


async def test_a_429_whose_retry_after_outlasts_the_deadline_is_not_waited(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    await _schedule(admin, "rate_limit", 1, retry_after=60)

    with pytest.raises(UpstreamThrottledError) as raised:
        await _ask(upstream, timeout_seconds=10.0)

    assert raised.value.retry_after == 60.0
    assert sleep.waits == []
    assert (await _stats(admin))["requests"] == 1


async def test_a_rejected_request_is_a_failed_precondition_not_retried(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    # The simulator, like OpenAI, answers 400 to a temperature above 2.
    with pytest.raises(FailedPreconditionError) as raised:
        await _ask(upstream, temperature=5.0)

    assert raised.value.reason == "UPSTREAM_REJECTED"
    assert (await _stats(admin))["requests"] == 1
    assert sleep.waits == []


async def test_other_client_errors_are_unavailable_without_retry(
    sim: RunningSimulator, clock: FakeClock, sleep: RecordingSleep
) -> None:
    # A wrong base URL: the simulator answers 404, a misconfigured gateway.
    async with (
        openai.AsyncOpenAI(
            base_url=f"{sim.root_url}/wrong", api_key="sk-test", max_retries=0
        ) as sdk,
        _closing(
            OpenAIUpstream(
                sdk, max_retries=MAX_RETRIES, clock=clock, sleep=sleep, rng=MaxJitter()
            )
        ) as upstream,
    ):
        with pytest.raises(DependencyUnavailableError):
            await _ask(upstream)

    assert sleep.waits == []


async def test_an_unreachable_upstream_is_retried_then_unavailable(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    stopped = await start_simulator(SimulatorSettings(port=0, latency_ms=0))
    await stopped.stop()
    async with (
        openai.AsyncOpenAI(
            base_url=stopped.base_url, api_key="sk-test", max_retries=0
        ) as sdk,
        _closing(
            OpenAIUpstream(
                sdk, max_retries=MAX_RETRIES, clock=clock, sleep=sleep, rng=MaxJitter()
            )
        ) as upstream,
    ):
        with pytest.raises(DependencyUnavailableError):
            await _ask(upstream)

    assert len(sleep.waits) == MAX_RETRIES


async def test_a_spent_deadline_is_deadline_exceeded_without_a_request(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession
) -> None:
    with pytest.raises(DeadlineExceededError):
        await _ask(upstream, timeout_seconds=0.0)

    assert (await _stats(admin))["requests"] == 0


async def test_retries_stop_when_the_next_backoff_would_pass_the_deadline(
    client: openai.AsyncOpenAI,
    admin: aiohttp.ClientSession,
    clock: FakeClock,
    sleep: RecordingSleep,
) -> None:
    await _schedule(admin, "server_error", 10)

    # Backoffs 0.2 s and 0.4 s fit in 1 s; the third, 0.8 s, does not fit in 0.4 s.
    async with _closing(
        OpenAIUpstream(
            client, max_retries=10, clock=clock, sleep=sleep, rng=MaxJitter()
        )
    ) as upstream:
        with pytest.raises(DependencyUnavailableError):
            await _ask(upstream, timeout_seconds=1.0)

    assert sleep.waits == [0.2, 0.4]
    assert (await _stats(admin))["requests"] == 3


async def test_a_hanging_upstream_times_out_within_the_deadline(
    client: openai.AsyncOpenAI, admin: aiohttp.ClientSession, clock: FakeClock
) -> None:
    await _schedule(admin, "hang", 1)

    async with _closing(OpenAIUpstream(client, max_retries=0, clock=clock)) as upstream:
        with pytest.raises(DependencyUnavailableError) as raised:
            await _ask(upstream, timeout_seconds=0.2)

    assert isinstance(raised.value.__cause__, openai.APITimeoutError)


QUESTION_CALL = UpstreamCall(
    model=MODEL,
    prompt=Prompt.of_text(QUESTION),
    max_output_tokens=0,
    temperature=None,
    prompt_cache_key="tenant-prefix",
)


async def _stream(
    upstream: OpenAIUpstream,
) -> list[str | ToolCallDelta | UpstreamAnswer]:
    return [event async for event in upstream.stream(QUESTION_CALL, 30.0)]


async def test_a_stream_yields_deltas_then_the_whole_answer(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession
) -> None:
    events = await _stream(upstream)

    *deltas, answer = events
    assert isinstance(answer, UpstreamAnswer)
    assert all(isinstance(delta, str) for delta in deltas)
    assert len(deltas) > 1
    assert "".join(str(delta) for delta in deltas) == answer.output_text
    stats = await _stats(admin)
    assert answer.usage.output_tokens == stats["output_tokens"] > 0
    assert answer.truncated is False


async def test_a_stream_failing_before_it_opens_is_retried(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    await _schedule(admin, "server_error", 1)

    *_, answer = await _stream(upstream)

    assert isinstance(answer, UpstreamAnswer)
    assert sleep.waits == [BACKOFF_BASE_SECONDS]
    assert (await _stats(admin))["requests"] == 2


async def test_a_broken_stream_raises_with_the_text_delivered_so_far(
    upstream: OpenAIUpstream, admin: aiohttp.ClientSession
) -> None:
    await _schedule(admin, "broken_stream", 1)
    delivered: list[str] = []

    with pytest.raises(UpstreamStreamBrokenError) as raised:
        async for event in upstream.stream(QUESTION_CALL, 30.0):
            assert isinstance(event, str)
            delivered.append(event)

    assert delivered
    assert raised.value.partial_text == "".join(delivered)


# -- Retry-After in every form the upstream may send it

WALL = 1_767_225_600.0


class NoJitter(random.Random):
    """Full jitter that always draws 0, so only Retry-After sets the wait."""

    def uniform(self, a: float, b: float) -> float:
        return a


@contextlib.asynccontextmanager
async def _client_of(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An SDK calling a local HTTP server whose ``POST /v1/responses`` is ``answer``."""
    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0
        ) as client:
            yield client
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _throttling_client(
    headers: dict[str, str],
    seen: list[dict[str, str]] | None = None,
    *,
    compress: bool = False,
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An SDK calling an HTTP server that answers every request 429 with ``headers``.

    The headers of each request it receives are appended to ``seen``; with
    ``compress`` the error body is sent compressed, as the client accepts.
    """

    async def answer(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        error = {"error": {"message": "slow down", "type": "rate_limit_error"}}
        response = web.json_response(error, status=429, headers=headers)
        if compress:
            response.enable_compression()
        return response

    async with _client_of(answer) as client:
        yield client


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # OpenAI's millisecond header, fractional, wins over the seconds one.
        ({"retry-after-ms": "1500.5", "retry-after": "9"}, 1.5005),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        # An HTTP date, 7 seconds after the fake clock's wall time.
        ({"retry-after": email.utils.formatdate(WALL + 7, usegmt=True)}, 7.0),
        # A date in the past, or nonsense, asks for no wait.
        ({"retry-after": email.utils.formatdate(WALL - 60, usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, 0.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
    ],
)
async def test_a_429s_retry_after_is_read_in_every_form(
    headers: dict[str, str], expected: float
) -> None:
    async with _throttling_client(headers) as client:
        # No retry left: the throttle carries what the upstream asked for.
        clock = FakeClock(WALL)
        async with _closing(
            OpenAIUpstream(
                client, max_retries=0, clock=clock, sleep=RecordingSleep(clock)
            )
        ) as once:
            with pytest.raises(UpstreamThrottledError) as raised:
                await _ask(once)
        assert raised.value.retry_after == pytest.approx(expected)

        # One retry: it waits what was asked (the backoff draws 0 here).
        clock = FakeClock(WALL)
        sleep = RecordingSleep(clock)
        async with _closing(
            OpenAIUpstream(
                client, max_retries=1, clock=clock, sleep=sleep, rng=NoJitter()
            )
        ) as twice:
            with pytest.raises(UpstreamThrottledError):
                await _ask(twice)
        assert sleep.waits == [pytest.approx(expected)]


async def test_a_call_carries_the_sdks_headers() -> None:
    seen: list[dict[str, str]] = []
    async with (
        _throttling_client({}, seen) as client,
        _closing(
            OpenAIUpstream(client, max_retries=0, clock=FakeClock(WALL))
        ) as upstream,
    ):
        with pytest.raises(UpstreamThrottledError):
            await _ask(upstream)

    [headers] = seen
    assert headers["Authorization"] == "Bearer sk-test"
    assert headers["User-Agent"] == client.user_agent
    assert headers["X-Stainless-Lang"] == "python"
    assert headers["Content-Type"] == "application/json"


PROXY = "http://proxy.internal:3128"


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy.internal:3128"}, "http://proxy.internal:3128"),
        (
            {"https_proxy": "http://proxy.internal:3128", "NO_PROXY": "api.openai.com"},
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": ".openai.com"},
            None,
        ),
        ({"HTTP_PROXY": "http://proxy.internal:3128"}, None),  # another scheme's
    ],
)
def test_the_upstreams_proxy_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    expected: str | None,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert env_proxy("https://api.openai.com/v1/responses") == expected


async def test_a_compressed_error_answer_is_read_as_the_sdk_reads_it() -> None:
    seen: list[dict[str, str]] = []
    async with (
        _throttling_client({"retry-after": "3"}, seen, compress=True) as client,
        _closing(OpenAIUpstream(client, max_retries=0, clock=FakeClock(WALL))) as once,
    ):
        with pytest.raises(UpstreamThrottledError) as raised:
            await _ask(once)

    assert "gzip" in seen[0]["Accept-Encoding"]
    assert raised.value.retry_after == pytest.approx(3.0)
    error = raised.value.__cause__
    assert isinstance(error, openai.RateLimitError)
    assert error.body == {"message": "slow down", "type": "rate_limit_error"}


def _completed(text: str) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "response": {
            "id": "resp_long",
            "model": MODEL,
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "content": [{"type": "output_text", "text": text}],
                }
            ],
            "usage": {"input_tokens": 7, "output_tokens": 50_000},
        },
    }


async def test_a_stream_is_read_whatever_its_framing_and_its_last_events_size() -> None:
    # CRLF line ends, comments, event lines, writes that split lines anywhere, and a
    # last event of 300 kB: more than aiohttp's line buffer (64 kB).
    text = "word " * 60_000
    events = [
        {"type": "response.output_text.delta", "delta": "Hello, "},
        {"type": "response.output_text.delta", "delta": "world"},
        _completed(text),
    ]
    wire = b": keep-alive\r\n\r\n" + b"".join(
        f"event: {event['type']}\r\ndata: {json.dumps(event)}\r\n\r\n".encode()
        for event in events
    )

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, len(wire), 4_099):
            await response.write(wire[start : start + 4_099])
        return response

    async with (
        _client_of(answer) as client,
        _closing(OpenAIUpstream(client, max_retries=0, clock=FakeClock())) as up,
    ):
        received = [event async for event in up.stream(QUESTION_CALL, 30.0)]

    *deltas, last = received
    assert deltas == ["Hello, ", "world"]
    assert isinstance(last, UpstreamAnswer)
    assert last.output_text == text
    assert last.usage.output_tokens == 50_000


async def test_a_stream_read_to_its_end_leaves_its_connection_for_the_next() -> None:
    peers: list[object] = []
    event = f"data: {json.dumps(_completed('short'))}\n\n".encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event)
        await response.write_eof()
        return response

    async with (
        _client_of(answer) as client,
        _closing(OpenAIUpstream(client, max_retries=0, clock=FakeClock())) as up,
    ):
        for _ in range(2):
            *_, last = [event async for event in up.stream(QUESTION_CALL, 30.0)]
            assert isinstance(last, UpstreamAnswer)
            await asyncio.sleep(0.05)  # the answer's end reaches the client

    first, second = peers
    assert first == second  # one connection, reused
