"""The gateway's OpenAI-compatible HTTP door (aiohttp).

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``GET /v1/models``,
``POST /v1/embeddings``, ``POST /v1/files``, ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``; anything else is a 404 in OpenAI's shape.

Each request authenticates with ``Authorization: Bearer <key>`` against the same
key store as gRPC, decodes into the same :class:`ResponseRequest` and makes one
call of the same orchestrator in this process: a behaviour of the pipeline is a
behaviour of both doors. Only this package touches OpenAI's JSON and SSE.

Like an RPC, every request is one SERVER span (continuing a ``traceparent`` header)
and one ``access`` log line, written when its answer (a stream: its last event)
has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from opentelemetry import trace

from services.core import access_log, tracing
from services.core.context import (
    REQUEST_ID_HEADER,
    current_request_id,
    new_request_id,
    set_request_id,
)
from services.core.errors import TollgateError, UnavailableError
from services.core.server import ListenError
from services.gateway.access import note_principal
from services.gateway.auth import Authenticator
from services.gateway.domain import (
    CacheStatus,
    Principal,
    ResponseReply,
    StreamEnd,
    StreamEvent,
    StreamStart,
)
from services.gateway.http import encode
from services.gateway.http.decode import (
    Api,
    Body,
    DoorRequest,
    decode_chat,
    decode_headers,
    decode_responses,
)
from services.gateway.http.errors import (
    DoorError,
    HttpError,
    headroom_headers,
    internal_error,
    invalid,
    not_found,
    openai_error,
)
from services.gateway.orchestrator import Orchestrator
from services.gateway.pipeline.plan import AUTO_MODEL

_log = structlog.get_logger("tollgate.gateway.http")

MAX_JSON_BYTES = 32 * 1024 * 1024
"""Largest JSON body: the 8 MiB prompt limit plus base64 images, with room."""
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

Handler = Callable[[web.Request, "Call"], Awaitable[web.StreamResponse]]


@dataclass
class Call:
    """One authenticated request: who calls and under which request id."""

    principal: Principal
    request_id: str


class Extension:
    """A group of routes added to the door (files and batches, embeddings)."""

    def routes(self, door: HttpDoor) -> list[web.RouteDef]:
        """The routes of this group."""
        raise NotImplementedError


class HttpDoor:
    """The aiohttp application and its listener."""

    def __init__(
        self,
        *,
        keys: Authenticator,
        orchestrator: Orchestrator,
        models: list[str],
        extensions: list[Extension] | None = None,
    ) -> None:
        self._keys = keys
        self._orchestrator = orchestrator
        self._models = [AUTO_MODEL, *(m for m in models if m != AUTO_MODEL)]
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self.app = web.Application(
            client_max_size=MAX_JSON_BYTES, middlewares=[self._envelope]
        )
        self.app.add_routes(
            [
                web.post("/v1/chat/completions", self._wrap(self._chat)),
                web.post("/v1/responses", self._wrap(self._responses)),
                web.get("/v1/models", self._wrap(self._list_models)),
                web.get("/v1/models/{model}", self._wrap(self._get_model)),
            ]
        )
        for extension in extensions or []:
            self.app.add_routes(extension.routes(self))

    # -- lifecycle

    async def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        reuse_port: bool = False,
    ) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the port.

        ``reuse_port`` shares the port with sibling workers (SO_REUSEPORT); off, a
        port another process holds fails start-up.
        """
        # handler_cancellation: a client that goes away cancels its handler, which
        # closes the orchestrator's stream and so the upstream call.
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None
        )
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port
        )
        try:
            await self._site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise ListenError(host, port, "HTTP door") from error
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        _log.info("http_door_started", host=host, port=self.port, tls=bool(ssl_context))
        return self.port

    async def stop(self) -> None:
        """Stop listening and finish the requests in flight."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the envelope

    @web.middleware
    async def _envelope(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Request id, span, OpenAI-shaped errors for everything, the access line."""
        structlog.contextvars.clear_contextvars()
        presented = request.headers.get(REQUEST_ID_HEADER, "")[:128].strip()
        request_id = presented or new_request_id()
        set_request_id(request_id)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, route=request.path
        )
        record = access_log.open_record()
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = "" if resource is None else resource.canonical
        with tracing.http_server_span(request.method, route, request.headers) as span:
            try:
                response = await self._answer_or_error(request, handler, record)
            except asyncio.CancelledError:
                # The client went away (nginx's 499); the handler was cancelled.
                record.reason = record.reason or "CLIENT_CLOSED"
                self._finish(request, span, record, 499, started)
                raise
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
            self._finish(request, span, record, response.status, started)
        return response

    @staticmethod
    def _finish(
        request: web.Request,
        span: trace.Span,
        record: access_log.AccessRecord,
        status: int,
        started: float,
    ) -> None:
        tracing.end_http(span, status)
        access_log.write(
            record,
            (time.perf_counter() - started) * 1000,
            method=request.method,
            status=status,
        )

    async def _answer_or_error(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        record: access_log.AccessRecord,
    ) -> web.StreamResponse:
        """The handler's response, or the OpenAI-shaped answer of its error.

        The error's reason (UPPER_SNAKE, as over gRPC) goes on the access line.
        """
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status == 405:
                answer = HttpError(
                    405,
                    f"{request.method} is not allowed on {request.path}.",
                    "invalid_request_error",
                    None,
                    "method_not_allowed",
                )
            elif error.status == 413:
                answer = HttpError(
                    413,
                    "The request body is too large.",
                    "invalid_request_error",
                    None,
                    "request_too_large",
                )
            else:
                answer = not_found(request.method, request.path)
            record.reason = (answer.code or "").upper()
        except DoorError as error:
            answer = error.error
            record.reason = (answer.code or answer.type).upper()
        except TollgateError as error:
            answer = openai_error(error)
            record.reason = error.reason
        except Exception as error:
            _log.error(
                "http_internal_error", error_type=type(error).__name__, exc_info=error
            )
            answer = internal_error()
            record.reason = "INTERNAL"
        return error_response(answer)

    def authenticate(self, request: web.Request) -> Call:
        """The caller of ``request``, from its bearer key."""
        principal = self._keys.authenticate(request.headers.get("Authorization", ""))
        structlog.contextvars.bind_contextvars(tenant=principal.tenant_id)
        note_principal(principal)
        return Call(principal, current_request_id())

    def _wrap(
        self, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await handler(request, self.authenticate(request))

        return wrapped

    # -- models

    async def _list_models(
        self, request: web.Request, call: Call
    ) -> web.StreamResponse:
        allowed = [name for name in self._models if call.principal.may_use(name)]
        return web.json_response(
            {"object": "list", "data": [_model(name) for name in allowed]}
        )

    async def _get_model(self, request: web.Request, call: Call) -> web.StreamResponse:
        name = request.match_info["model"]
        if name not in self._models or not call.principal.may_use(name):
            raise DoorError(
                HttpError(
                    404,
                    f"The model '{name}' does not exist or you do not have access "
                    "to it.",
                    "invalid_request_error",
                    "model",
                    "model_not_found",
                )
            )
        return web.json_response(_model(name))

    # -- chat completions and responses

    async def _chat(self, request: web.Request, call: Call) -> web.StreamResponse:
        decoded = decode_chat(await read_json(request), decode_headers(request.headers))
        return await self._answer(request, call, decoded, None)

    async def _responses(self, request: web.Request, call: Call) -> web.StreamResponse:
        body = await read_json(request)
        decoded = decode_responses(body, decode_headers(request.headers))
        return await self._answer(request, call, decoded, response_echo(body))

    async def _answer(
        self,
        request: web.Request,
        call: Call,
        decoded: DoorRequest,
        echo: encode.ResponseEcho | None,
    ) -> web.StreamResponse:
        if decoded.stream:
            return await self._stream(request, call, decoded, echo)
        reply = await self._orchestrator.create_response(
            call.principal, decoded.request, call.request_id, None
        )
        if reply.ticket_id:
            # Maintenance: the orchestrator queued the request as a ticket. An
            # OpenAI client cannot wait for it, so say where the answer will be.
            raise DoorError(
                HttpError(
                    503,
                    f"The service is in maintenance; the request was queued as "
                    f"batch {reply.ticket_id}: GET /v1/batches/{reply.ticket_id}.",
                    "server_error",
                    None,
                    "maintenance",
                    {
                        "x-should-retry": "false",
                        "x-tollgate-ticket-id": reply.ticket_id,
                    },
                )
            )
        body = (
            encode.chat_completion(reply)
            if decoded.api is Api.CHAT
            else encode.response(reply, echo or encode.ResponseEcho())
        )
        return web.json_response(
            body, headers=reply_headers(reply, call.request_id), dumps=_dumps
        )

    async def _stream(
        self,
        request: web.Request,
        call: Call,
        decoded: DoorRequest,
        echo: encode.ResponseEcho | None,
    ) -> web.StreamResponse:
        encoder: encode.ChatStream | encode.ResponsesStream = (
            encode.ChatStream(decoded.include_usage)
            if decoded.api is Api.CHAT
            else encode.ResponsesStream(echo or encode.ResponseEcho())
        )
        events = self._orchestrator.stream_response(
            call.principal, decoded.request, call.request_id, None
        )
        iterator = aiter(events)
        # Errors before the first event (auth passed, limits, budget, validation)
        # are plain HTTP errors with their status; only later ones are events.
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            first = None
        response = web.StreamResponse(status=200, headers=dict(SSE_HEADERS))
        response.headers.update(stream_headers(first, call.request_id))
        try:
            await response.prepare(request)
            if first is not None:
                await _write(response, encoder.encode(first))
            ended = isinstance(first, StreamEnd)
            async for event in iterator:
                await _write(response, encoder.encode(event))
                ended = isinstance(event, StreamEnd)
            if not ended:
                raise UnavailableError(
                    "the stream ended without completing", reason="STREAM_INCOMPLETE"
                )
        except (ConnectionError, asyncio.CancelledError):
            # The client went away: closing the iterator cancels the upstream call
            # and books what was consumed (the orchestrator's own finally).
            with contextlib.suppress(BaseException):
                await events.aclose()  # type: ignore[attr-defined]
            raise
        except TollgateError as error:
            # The 200 has gone: the access line says why the stream ended early.
            record = access_log.current()
            if record is not None:
                record.reason = error.reason
            with contextlib.suppress(ConnectionError):
                await response.write(encoder.error(openai_error(error)))
        except Exception as error:
            _log.error(
                "http_stream_internal_error",
                error_type=type(error).__name__,
                exc_info=error,
            )
            record = access_log.current()
            if record is not None:
                record.reason = "INTERNAL"
            with contextlib.suppress(ConnectionError):
                await response.write(encoder.error(internal_error()))
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:
        await response.write(data)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tollgate"}


async def read_json(request: web.Request) -> Body:
    """The request's JSON object body, or a 400 in OpenAI's words."""
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise invalid(
            "We could not parse the JSON body of your request. The body must be "
            "a JSON object."
        ) from None
    if not isinstance(body, dict):
        raise invalid("The body of your request must be a JSON object.")
    return body


def error_response(error: HttpError) -> web.Response:
    """The HTTP answer of an error."""
    return web.Response(
        status=error.status,
        body=error.body_bytes(),
        content_type="application/json",
        headers=dict(error.headers),
    )


_CACHE_STATUS = {status: status.value for status in CacheStatus}


def reply_headers(reply: ResponseReply, request_id: str) -> dict[str, str]:
    """Tollgate's answer headers of a whole answer."""
    return {
        REQUEST_ID_HEADER: request_id,
        "x-tollgate-cache-status": _CACHE_STATUS[reply.cache_status],
        "x-tollgate-cost-micros": str(reply.cost_micros),
        "x-tollgate-model": reply.model,
        "x-tollgate-deployment": reply.deployment,
        "x-tollgate-degradation-level": str(int(reply.degradation_level)),
        **_semantic_check(reply.semantic_check),
        **headroom_headers(reply.rate_headroom),
    }


def _semantic_check(check: str) -> dict[str, str]:
    return {"x-tollgate-semantic-check": check} if check else {}


def stream_headers(first: StreamEvent | None, request_id: str) -> dict[str, str]:
    """Tollgate's answer headers of a stream: known at its start, cost aside.

    The cost of a stream is known only at its end, after the headers: it is in
    the gRPC door's ``StreamCompleted`` and in the ledger, not in a header.
    """
    headers = {REQUEST_ID_HEADER: request_id}
    if isinstance(first, StreamStart):
        headers.update(
            {
                "x-tollgate-cache-status": _CACHE_STATUS[first.cache_status],
                "x-tollgate-model": first.model,
                "x-tollgate-deployment": first.deployment,
                "x-tollgate-degradation-level": str(int(first.degradation_level)),
                **_semantic_check(first.semantic_check),
                **headroom_headers(first.rate_headroom),
            }
        )
    return headers


def response_echo(body: Body) -> encode.ResponseEcho:
    """What a Response object repeats of its request body."""

    def opt(key: str, kind: type | tuple[type, ...]) -> Any:
        value = body.get(key)
        return (
            value if isinstance(value, kind) and not isinstance(value, bool) else None
        )

    text = body.get("text")
    text_format = (text.get("format") if isinstance(text, Mapping) else None) or {
        "type": "text"
    }
    tools = body.get("tools")
    metadata = body.get("metadata")
    parallel = body.get("parallel_tool_calls")
    return encode.ResponseEcho(
        instructions=opt("instructions", str),
        temperature=opt("temperature", (int, float)),
        top_p=opt("top_p", (int, float)),
        max_output_tokens=opt("max_output_tokens", int),
        metadata=metadata if isinstance(metadata, dict) else {},
        tools=tools if isinstance(tools, list) else [],
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=parallel if isinstance(parallel, bool) else True,
        text_format=dict(text_format),
    )
