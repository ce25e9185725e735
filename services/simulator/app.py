"""The simulator's aiohttp application and its start/stop helpers."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import structlog
from aiohttp import web

from services.core.clock import Clock
from services.core.tokens import count_tokens
from services.simulator import admin, batches, files, handlers, payload
from services.simulator.admin import STATE
from services.simulator.config import SimulatorSettings
from services.simulator.errors import ApiError, error_response, invalid_request
from services.simulator.faults import (
    Fault,
    FaultKind,
    UnknownFaultError,
    fault_error,
    parse_fault_kind,
)
from services.simulator.handlers import ApiCall, Handler
from services.simulator.state import SimulatorState

FAULT_HEADER = "x-sim-fault"
"""Request header that asks for a fault, e.g. ``x-sim-fault: rate_limit``."""

FAULT_METADATA_KEY = "sim_fault"
"""``metadata`` key in a JSON body that asks for a fault."""

_SHUTDOWN_TIMEOUT_SECONDS = 2.0
_BEARER = re.compile(r"^Bearer\s+\S+", re.IGNORECASE)

_log = structlog.get_logger("tollgate.simulator")

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def create_app(
    settings: SimulatorSettings, *, clock: Clock | None = None
) -> web.Application:
    """Return the simulator as an aiohttp application configured by ``settings``.

    Args:
        settings: the configuration.
        clock: what batch progress is measured with; the real clock by default.
    """
    app = web.Application(middlewares=[_openai_errors], client_max_size=256 * 2**20)
    state = SimulatorState(settings, clock)
    app[STATE] = state
    for route in _ROUTES:
        app.router.add_route(route.method, route.path, _api(route))
    admin.add_routes(app)

    async def _close(_: web.Application) -> None:
        state.close()

    app.on_shutdown.append(_close)
    return app


@dataclass
class RunningSimulator:
    """A simulator listening on a socket; stop it with :meth:`stop`."""

    host: str
    port: int
    app: web.Application
    _runner: web.AppRunner

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` to give a client, e.g. ``http://127.0.0.1:8089/v1``."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        """The server root, where the ``/_sim`` admin endpoints live."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def state(self) -> SimulatorState:
        """The live counters and fault plan, for in-process callers."""
        return self.app[STATE]

    async def stop(self) -> None:
        """Stop listening, wake hanging requests and close every connection."""
        self.app[STATE].close()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        """Return the running simulator itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the simulator."""
        await self.stop()


async def start_simulator(
    settings: SimulatorSettings, *, clock: Clock | None = None
) -> RunningSimulator:
    """Start the simulator on ``settings.host:settings.port`` and return it.

    With ``port=0`` the system picks a free port; read it from the result. ``clock``
    drives batch progress (the real clock by default).
    """
    app = create_app(settings, clock=clock)
    # Load the tokenizer's vocabulary now, off the loop, so that the first
    # request is not hundreds of milliseconds slower than the configured latency.
    await asyncio.to_thread(count_tokens, "warm up")
    # handler_cancellation: a client that gives up (a timeout on a hang) cancels
    # its handler instead of leaving it sleeping.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1])
    return RunningSimulator(host=settings.host, port=port, app=app, _runner=runner)


@dataclass(frozen=True)
class _Route:
    method: str
    path: str
    endpoint: str
    """The endpoint's name in stats and logs."""
    handler: Handler
    streams: bool = False
    json_body: bool = True
    """Whether a POST carries a JSON body (not multipart, not empty)."""
    body_faults: bool = True
    """Whether ``metadata.sim_fault`` in the body asks for a request fault; a batch's
    metadata asks for a batch fault instead."""


_ROUTES = (
    _Route("POST", "/v1/responses", "responses", handlers.create_response, True),
    _Route(
        "POST",
        "/v1/chat/completions",
        "chat.completions",
        handlers.create_chat_completion,
        True,
    ),
    _Route("POST", "/v1/embeddings", "embeddings", handlers.create_embeddings),
    _Route("GET", "/v1/models", "models", handlers.list_models),
    _Route("GET", "/v1/models/{model}", "models", handlers.retrieve_model),
    _Route("POST", "/v1/files", "files", files.upload_file, json_body=False),
    _Route("GET", "/v1/files", "files", files.list_files),
    _Route("GET", "/v1/files/{file_id}", "files", files.retrieve_file),
    _Route("DELETE", "/v1/files/{file_id}", "files", files.delete_file),
    _Route("GET", "/v1/files/{file_id}/content", "files", files.file_content),
    _Route("POST", "/v1/batches", "batches", batches.create_batch, body_faults=False),
    _Route("GET", "/v1/batches", "batches", batches.list_batches),
    _Route("GET", "/v1/batches/{batch_id}", "batches", batches.retrieve_batch),
    _Route(
        "POST",
        "/v1/batches/{batch_id}/cancel",
        "batches",
        batches.cancel_batch,
        json_body=False,
    ),
)


def _api(route: _Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an OpenAI handler with auth, counting, fault injection and logging."""
    endpoint = route.endpoint

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        started = time.perf_counter()
        request_id = "req_" + secrets.token_hex(16)
        if not _BEARER.match(request.headers.get("Authorization", "")):
            state.stats.unauthorized += 1
            _log.info("sim_unauthorized", endpoint=endpoint, status=401)
            return error_response(ApiError(401, _MISSING_KEY))
        state.stats.requests += 1
        state.stats.by_endpoint[endpoint] += 1
        call = ApiCall(request=request, request_id=request_id, body={}, state=state)
        fault: Fault | None = None
        try:
            if request.method == "POST" and route.json_body:
                call.body = await payload.read_json(request)
            fault_body = call.body if route.body_faults else {}
            model = call.body.get("model")
            fault = state.faults.pick(
                _requested_fault(request, fault_body),
                model if isinstance(model, str) else None,
            )
            streaming = route.streams and call.body.get("stream") is True
            response = await _apply_fault(call, fault, streaming=streaming)
            if response is None:
                response = await route.handler(call)
        except ApiError as err:
            response = error_response(err)
        _log_request(endpoint, response.status, started, call, fault)
        state.stats.input_tokens += call.input_tokens
        state.stats.output_tokens += call.output_tokens
        return response

    return handle


def _requested_fault(request: web.Request, body: payload.Body) -> FaultKind | None:
    name = request.headers.get(FAULT_HEADER)
    param = FAULT_HEADER
    if name is None:
        meta = body.get("metadata")
        value = meta.get(FAULT_METADATA_KEY) if isinstance(meta, dict) else None
        name = value if isinstance(value, str) else None
        param = f"metadata.{FAULT_METADATA_KEY}"
    if name is None:
        return None
    try:
        return parse_fault_kind(name)
    except UnknownFaultError as err:
        raise invalid_request(str(err), param=param) from None


async def _apply_fault(
    call: ApiCall, fault: Fault | None, *, streaming: bool
) -> web.StreamResponse | None:
    """Answer with the fault, or return None to let the handler answer."""
    if fault is None:
        return None
    state = call.state
    state.stats.faults[fault.kind.value] += 1
    if fault.kind is FaultKind.HANG:
        await state.sleep_ms(state.settings.hang_seconds * 1000)
        return None
    if fault.kind is FaultKind.BROKEN_STREAM and streaming:
        call.broken_stream = True
        return None
    await state.sleep_ms(state.settings.latency_ms)
    # server_error, rate_limit, unavailable, and broken_stream when not streaming.
    return error_response(fault_error(fault))


def _log_request(
    endpoint: str, status: int, started: float, call: ApiCall, fault: Fault | None
) -> None:
    _log.info(
        "sim_request",
        endpoint=endpoint,
        status=status,
        fault=None if fault is None else fault.kind.value,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


@web.middleware
async def _openai_errors(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Answer routing errors and bugs with OpenAI-shaped bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            message = f"Invalid URL ({request.method} {request.path})"
        elif exc.status == 405:
            message = f"Invalid method for URL ({request.method} {request.path})"
        else:
            message = exc.reason
        return error_response(ApiError(exc.status, message))
    except ConnectionError:
        raise
    except Exception as err:
        _log.error("sim_internal_error", error_type=type(err).__name__)
        return error_response(
            ApiError(500, "The simulator failed unexpectedly.", type_="server_error")
        )
