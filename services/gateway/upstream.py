"""The upstream model provider through the ``openai`` SDK (Responses API).

A call, streamed or not, is a JSON POST straight through aiohttp with the SDK's
headers (authorization, user agent, ``X-Stainless-*``), answered with the SDK's
error types and read as decoded JSON; a stream's server-sent events are split and
decoded here. Neither the SDK's pydantic models (their building was the largest
cost of a request, and of every streamed event) nor its httpx layer (which merged
and normalised the headers, then converted them for aiohttp) is on that path:
0.11 to 0.34 ms of CPU less per request all-in-one, and a streamed answer 0.34 to
0.47 of the CPU it cost (``bench/results/hot_path_upstream_aiohttp_*.json``,
``hot_path_upstream_stream_*.json``). Files, batches and a client whose API key is
not a string (a key provider) use the SDK itself.

Retries are ours, not the SDK's, so that every attempt fits inside the caller's
deadline: exponential backoff with full jitter, and an upstream Retry-After is
honoured when it fits in the time left.

Each model call is a CLIENT span named ``chat <model>`` with OpenTelemetry's GenAI
attributes (``gen_ai.*``: operation, provider, request parameters, response model,
id, finish reasons and token usage), covering its retries; each attempt is an
INTERNAL ``upstream.attempt`` span under it. Spans never hold prompts or answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import aiohttp
import httpx2
import openai
import structlog
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from services.core import metrics, tracing
from services.core.clock import Clock
from services.core.conversation import FormatKind
from services.core.errors import DeadlineExceededError, FailedPreconditionError
from services.gateway.domain import (
    ToolCallDelta,
    UpstreamAnswer,
    UpstreamCall,
    Usage,
)
from services.gateway.ports import (
    DependencyUnavailableError,
    UpstreamStreamBrokenError,
    UpstreamThrottledError,
)
from services.gateway.responses_api import (
    read_answer,
    read_answer_json,
    request_body,
)

_log = structlog.get_logger("tollgate.upstream")

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 4.0

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

_COMPACT = (",", ":")
# The SDK's own connection limits and keep-alive (openai.DefaultAioHttpClient).
_MAX_CONNECTIONS = 1000
_KEEPALIVE_SECONDS = 5.0
# Headers that describe a body as sent, not as aiohttp hands it over (decoded).
_ENCODED_BODY_HEADERS = frozenset(
    (b"content-encoding", b"content-length", b"transfer-encoding")
)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None.

    ``<SCHEME>_PROXY`` unless ``NO_PROXY`` exempts its host: the variables httpx,
    and so the SDK, honour.
    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _retry_after(error: openai.APIStatusError, now: float) -> float:
    """Seconds the upstream asked us to wait; 0 when it did not say or said nonsense.

    ``retry-after-ms`` (OpenAI's, fractional milliseconds) wins over ``retry-after``,
    which is either seconds (RFC 9110 says whole; fractions are taken as sent) or
    an HTTP date, read against the wall clock ``now``.
    """
    headers = error.response.headers
    milliseconds = _seconds(headers.get("retry-after-ms", ""))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after", "").strip()
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:  # "-0000": RFC 5322's unknown zone, which HTTP means as GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _seconds(value: str) -> float | None:
    """A finite, non-negative number of ``value``, or None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


# The GenAI semantic conventions' names of what Tollgate does upstream: a chat
# (the Responses API is OpenAI's chat interface) with the provider "openai".
# gen_ai.system is the name before semantic conventions 1.37 (gen_ai.provider.name
# since), still the one some tracing backends read.
GENAI_OPERATION = "chat"
GENAI_PROVIDER = "openai"


def _count_tokens(model: str, usage: Usage) -> None:
    metrics.UPSTREAM_TOKENS.labels(model, "input").inc(usage.input_tokens)
    metrics.UPSTREAM_TOKENS.labels(model, "cached_input").inc(usage.cached_input_tokens)
    metrics.UPSTREAM_TOKENS.labels(model, "output").inc(usage.output_tokens)


def _finish_call(span: trace.Span, answer: UpstreamAnswer, response_id: str) -> None:
    """End a call's span with the GenAI response attributes of its answer."""
    if not span.is_recording():
        return
    usage = answer.usage
    span.set_attributes(
        {
            "gen_ai.response.model": answer.model,
            "gen_ai.response.id": response_id,
            "gen_ai.response.finish_reasons": [answer.finish_reason.value],
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cached_input_tokens,
            "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
        }
    )
    tracing.finish_span(span)


# What breaks a stream once it is open: the transport, a read timeout, or data
# that is not the Responses API's events.
_STREAM_ERRORS = (
    openai.APIError,
    aiohttp.ClientError,
    TimeoutError,
    ValueError,
    KeyError,
    TypeError,
)


@dataclass(frozen=True, slots=True)
class _OpenStream:
    """An opened Responses stream: its events as decoded JSON, and how to close it."""

    events: AsyncIterator[Mapping[str, Any]]
    close: Callable[[], Awaitable[None]]


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON ``data`` of each server-sent event in ``content``, in order.

    Lines are split here rather than by aiohttp's ``readline``, which refuses a
    line longer than its buffer: the last event carries the whole response.
    ``event:`` and ``id:`` lines and comments are skipped (the JSON names its
    type); ``[DONE]`` ends nothing a Responses stream needs.
    """
    pending = b""
    data: list[bytes] = []
    ended = False
    chunks = content.iter_any()
    while not ended:
        chunk = await anext(chunks, None)
        if chunk is None:
            ended, chunk = True, b"\n\n"  # the last event, if it had no blank line
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif not line and data:
                joined = b"\n".join(data)
                data = []
                if joined != b"[DONE]":
                    yield json.loads(joined)


class OpenAIUpstream:
    """An :class:`~services.gateway.ports.UpstreamPort` over ``AsyncOpenAI``."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        max_retries: int,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        url = client.base_url
        default_port = 443 if url.scheme == "https" else 80
        self._server: dict[str, AttributeValue] = {
            "server.address": url.host,
            "server.port": url.port or default_port,
        }
        self._url = f"{str(url).rstrip('/')}/responses"
        self._headers: dict[str, str] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._proxy: str | None = None

    def _raw_headers(self) -> dict[str, str]:
        """The SDK's headers for a JSON POST (auth, user agent, organization)."""
        if self._headers is None:
            client = self._client
            merged = {**client.default_headers, **client.auth_headers}
            self._headers = {k: v for k, v in merged.items() if isinstance(v, str)}
        return self._headers

    def _session(self) -> aiohttp.ClientSession:
        """The connection pool of every call to the upstream, opened on first use.

        Configured as the SDK configures its own: its TLS context (the system's
        CA store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), its limits, and the
        proxy the environment names for the upstream (``HTTPS_PROXY``,
        ``NO_PROXY``). The proxy is read once: aiohttp's ``trust_env`` would read
        the environment and ``~/.netrc`` (in a thread) on every request.
        """
        if self._http is None:
            self._proxy = env_proxy(self._url)
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=_MAX_CONNECTIONS,
                    keepalive_timeout=_KEEPALIVE_SECONDS,
                    ssl=httpx2.create_ssl_context(),
                )
            )
        return self._http

    async def _post(
        self, body: dict[str, object], remaining: float
    ) -> tuple[UpstreamAnswer, str]:
        """One Responses call, read whole within ``remaining``.

        An answer that is not a response is ``APIResponseValidationError``; the
        other errors are :meth:`_send`'s.
        """
        answer = await self._send(body, aiohttp.ClientTimeout(total=remaining))
        content = await self._read(answer)
        try:
            data = json.loads(content)
            return read_answer_json(data), str(data.get("id", ""))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise openai.APIResponseValidationError(
                self._sdk_response(answer.status, answer.raw_headers, content),
                None,
                message="the upstream's answer is not a response",
            ) from error

    async def _send(
        self, body: Mapping[str, object], limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """POST ``body`` as JSON with the SDK's headers: the answer, its body unread.

        ``limits``: the request's aiohttp timeouts. A 4xx/5xx is the SDK's own
        ``APIStatusError`` subclass, built from the answer as the SDK builds it;
        transport errors are :meth:`_sdk_errors`'.
        """
        with self._sdk_errors():
            answer = await self._session().post(
                self._url,
                data=json.dumps(body, separators=_COMPACT).encode(),
                headers=self._raw_headers(),
                timeout=limits,
                proxy=self._proxy,
            )
        if answer.status < 400:
            return answer
        content = await self._read(answer)
        response = self._sdk_response(answer.status, answer.raw_headers, content)
        raise self._client._make_status_error_from_response(response) from None

    async def _read(self, answer: aiohttp.ClientResponse) -> bytes:
        """The whole body of ``answer``; its connection is released either way."""
        try:
            with self._sdk_errors():
                return await answer.read()
        finally:
            answer.release()

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """Transport failures raised as the SDK's error types.

        A timeout is ``APITimeoutError``, any other failure of aiohttp's
        ``APIConnectionError``.
        """
        try:
            yield
        except TimeoutError as error:  # aiohttp's own timeouts subclass it
            raise openai.APITimeoutError(request=self._request()) from error
        except aiohttp.ClientError as error:
            raise openai.APIConnectionError(request=self._request()) from error

    def _request(self) -> httpx2.Request:
        """The request an SDK error names (built only when one is raised)."""
        return httpx2.Request("POST", self._url)

    def _sdk_response(
        self,
        status: int,
        headers: tuple[tuple[bytes, bytes], ...],
        content: bytes,
    ) -> httpx2.Response:
        """An answer as the SDK's errors hold it, for an error being raised.

        aiohttp has already decompressed ``content``: without the headers that
        describe the encoded body, httpx2 does not decode it a second time.
        """
        kept = [(k, v) for k, v in headers if k.lower() not in _ENCODED_BODY_HEADERS]
        return httpx2.Response(
            status, headers=kept, content=content, request=self._request()
        )

    def _call_span(self, call: UpstreamCall) -> trace.Span:
        """The CLIENT span of one model call, with the GenAI request attributes."""
        if not tracing.enabled():
            return trace.INVALID_SPAN
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": GENAI_OPERATION,
            "gen_ai.provider.name": GENAI_PROVIDER,
            "gen_ai.system": GENAI_PROVIDER,
            "gen_ai.request.model": call.model,
            **self._server,
        }
        if call.max_output_tokens:
            attributes["gen_ai.request.max_tokens"] = call.max_output_tokens
        if call.temperature is not None:
            attributes["gen_ai.request.temperature"] = call.temperature
        if call.top_p is not None:
            attributes["gen_ai.request.top_p"] = call.top_p
        fmt = call.prompt.response_format
        if fmt is not None:
            structured = fmt.kind is not FormatKind.TEXT
            attributes["gen_ai.output.type"] = "json" if structured else "text"
        return tracing.start_client_span(f"{GENAI_OPERATION} {call.model}", attributes)

    async def create(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> UpstreamAnswer:
        """Ask the model, retrying transient failures within ``timeout_seconds``."""
        deadline = self._clock.monotonic() + timeout_seconds
        body = request_body(call)

        raw = isinstance(self._client.api_key, str)

        async def attempt(remaining: float) -> tuple[UpstreamAnswer, str]:
            if raw:
                return await self._post(body, remaining)
            response = await self._client.responses.create(**body, timeout=remaining)
            return read_answer(response), response.id

        span = self._call_span(call)
        with tracing.use(span):
            answer, response_id = await self._with_retries(
                attempt, deadline, call.model
            )
        _finish_call(span, answer, response_id)
        _count_tokens(call.model, answer.usage)
        return answer

    async def stream(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> AsyncIterator[str | ToolCallDelta | UpstreamAnswer]:
        """Stream text and tool-call deltas, then the whole answer.

        Retries only until the stream opens.
        """
        deadline = self._clock.monotonic() + timeout_seconds
        body = request_body(call)
        raw = isinstance(self._client.api_key, str)

        async def attempt(remaining: float) -> _OpenStream:
            if raw:
                return await self._open_stream(body, remaining)
            opened: openai.AsyncStream[
                openai.types.responses.ResponseStreamEvent
            ] = await self._client.responses.create(
                **body, stream=True, timeout=remaining
            )
            return _OpenStream(
                (event.to_dict() async for event in opened), opened.close
            )

        # The call's span lasts until the stream ends, past this generator's yields,
        # so it is made current only while the stream opens (attempts nest in it).
        span = self._call_span(call)
        with tracing.use(span):
            opened = await self._with_retries(attempt, deadline, call.model)
        delivered: list[str] = []
        # Tool calls are numbered in the order they open, whatever their output index.
        call_index: dict[int, int] = {}
        broken = "stream_broken"
        try:
            async for event in opened.events:
                kind = event.get("type")
                if kind == "response.output_text.delta":
                    delta = event["delta"]
                    delivered.append(delta)
                    yield delta
                elif (
                    kind == "response.output_item.added"
                    and event["item"].get("type") == "function_call"
                ):
                    item = event["item"]
                    index = call_index.setdefault(
                        event["output_index"], len(call_index)
                    )
                    yield ToolCallDelta(
                        index,
                        item["call_id"],
                        item["name"],
                        item.get("arguments") or "",
                    )
                elif kind == "response.function_call_arguments.delta":
                    index = call_index.setdefault(
                        event["output_index"], len(call_index)
                    )
                    yield ToolCallDelta(index, "", "", event["delta"])
                elif kind in ("response.completed", "response.incomplete"):
                    response = event["response"]
                    answer = read_answer_json(response)
                    _finish_call(span, answer, str(response.get("id", "")))
                    _count_tokens(call.model, answer.usage)
                    yield answer
                    return
                elif kind in ("response.failed", "error"):
                    broken = str(kind)
                    break
        except _STREAM_ERRORS as error:  # transport, timeout, or not the events
            broken = type(error).__name__
            raise UpstreamStreamBrokenError("".join(delivered)) from error
        except BaseException as error:  # the reader went away (closed, cancelled)
            broken = type(error).__name__
            raise
        finally:
            tracing.finish_span(span, broken)  # nothing if the answer ended it
            await opened.close()
        raise UpstreamStreamBrokenError("".join(delivered))

    async def _open_stream(
        self, body: dict[str, object], remaining: float
    ) -> _OpenStream:
        """A Responses stream with its status read, sent as :meth:`_send` sends.

        Each read of the stream gets ``remaining``, as the SDK's timeout gave
        it: a long answer is not cut while its events keep coming.
        """
        answer = await self._send(
            {**body, "stream": True},
            aiohttp.ClientTimeout(total=None, connect=remaining, sock_read=remaining),
        )

        async def close() -> None:
            # The connection goes back to the pool if the answer was read to its
            # end, and is closed if it was left mid-answer (broken, cancelled).
            answer.release()

        return _OpenStream(_sse_data(answer.content), close)

    async def _with_retries(
        self, attempt: Callable[[float], Awaitable[T]], deadline: float, model: str
    ) -> T:
        tries = 0
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    "deadline passed before the upstream answered"
                )
            try:
                return await self._attempt(attempt, remaining, model, tries + 1)
            except openai.RateLimitError as error:
                reason = "throttled"
                asked = _retry_after(error, self._clock.now())
                wait = max(asked, self._backoff(tries))
                if (
                    tries >= self._max_retries
                    or wait >= deadline - self._clock.monotonic()
                ):
                    raise UpstreamThrottledError(
                        "upstream", "upstream rate limited", asked
                    ) from error
            except openai.BadRequestError as error:
                raise FailedPreconditionError(
                    "the upstream rejected the request", reason="UPSTREAM_REJECTED"
                ) from error
            except (openai.APIConnectionError, openai.APIStatusError) as error:
                # Connection failures, timeouts and 5xx are transient; other 4xx mean
                # the gateway is misconfigured (key, model), which is an outage too.
                reason = "transient"
                wait = self._backoff(tries)
                transient = not isinstance(error, openai.APIStatusError) or (
                    error.status_code >= 500
                )
                if (
                    not transient
                    or tries >= self._max_retries
                    or wait >= deadline - self._clock.monotonic()
                ):
                    raise DependencyUnavailableError(
                        "upstream", f"upstream failed: {type(error).__name__}"
                    ) from error
            _log.info("upstream_retry", attempt=tries + 1, wait_ms=round(wait * 1000))
            metrics.UPSTREAM_RETRIES.labels(model, reason).inc()
            await self._sleep(wait)
            tries += 1

    async def _attempt(
        self,
        attempt: Callable[[float], Awaitable[T]],
        remaining: float,
        model: str,
        number: int,
    ) -> T:
        """One attempt in its own span, timed by outcome."""
        started = self._clock.monotonic()
        outcome = "error"
        with tracing.span(
            "upstream.attempt",
            {"gen_ai.request.model": model, "tollgate.upstream.attempt": number},
        ) as current:
            try:
                result = await attempt(remaining)
                outcome = "ok"
                return result
            except openai.RateLimitError:
                outcome = "throttled"
                raise
            except openai.BadRequestError:
                outcome = "rejected"
                raise
            finally:
                metrics.UPSTREAM_DURATION.labels(model, outcome).observe(
                    self._clock.monotonic() - started
                )
                tracing.end_span(current, outcome)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
        return self._rng.uniform(0, ceiling)

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.close()
        await self._client.close()
