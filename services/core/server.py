"""The asyncio gRPC server every service runs on.

One envelope gives every RPC the same treatment: it binds ``request_id`` (from
``x-request-id`` or made) and ``rpc`` into the log context, echoes the request id in
the trailing metadata (and, for a stream, in its initial metadata too), maps
:class:`TollgateError` through the error table, and turns any other exception into
INTERNAL with a generic message, so no RPC ends UNKNOWN.
Health (grpc.health.v1) and server reflection are always on, and open to every
caller; admin RPCs need an admin key, and an internal service's other RPCs a service
identity (services.core.identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from services.core import access_log, metrics, tracing
from services.core.context import (
    REQUEST_ID_HEADER,
    metadata_value,
    new_request_id,
    set_request_id,
)
from services.core.errors import (
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    PermissionDeniedError,
    TollgateError,
    UnauthenticatedError,
    UnimplementedError,
    status_code,
    to_grpc_status,
)
from services.core.health import HealthTracker
from services.core.identity import ServiceIdentityPolicy
from services.core.settings import ServerSettings
from services.core.tls import add_port
from services.core.tokens import count_tokens

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_log = structlog.get_logger("tollgate.server")

# Messages up to 8 MiB: the largest valid request (1 MiB input plus instructions and
# metadata) fits with room; anything larger is refused by gRPC itself.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Off: a port another process holds fails start-up instead of being shared.
    ("grpc.so_reuseport", 0),
]


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """The server options: ``reuse_port`` shares the port with sibling workers."""
    if not settings.reuse_port:
        return SERVER_OPTIONS
    return [*SERVER_OPTIONS[:-1], ("grpc.so_reuseport", 1)]


class ListenError(OSError):
    """A port cannot be listened on: another process holds it, or it is not ours."""

    def __init__(self, host: str, port: int | None, what: str) -> None:
        super().__init__(
            f"cannot listen on {host}:{port} ({what}): the port is in use by another "
            "process, or not allowed"
        )


@dataclass
class ServiceApp:
    """A service ready to be served: its handlers, health checks and cleanup.

    Attributes:
        name: short service name ("ratelimit"), used in logs and error domains.
        service_names: fully qualified gRPC service names, for health and reflection.
        register: adds the servicers to a server.
        health_checks: component name to async check.
        on_start: runs after the server starts (background tasks).
        on_stop: runs after the server stops (close stores, flush outboxes).
        admin_methods: full method paths ("/pkg.Service/Method") that need an admin
            key in ``authorization: Bearer <key>`` metadata.
        identity: who may call the other RPCs (an internal service's data RPCs:
            services.core.identity); None for a front door (the gateway), whose
            callers authenticate with API keys. Health and reflection never check.
        operator_methods: read-only status RPCs among those that an operator may
            also call with an admin key instead of a service identity (``tollgate
            status`` reading the router's level).
        access_log: write one ``access`` line per RPC (a front door: the gateway);
            its handlers fill in :func:`services.core.access_log.current`.
        counts_tokens: the service counts tokens on every request (the gateway):
            its tokenizer vocabulary (about 63 MB resident) is loaded at start, not
            on the first request. Services that never count tokens never load it;
            the router loads it only for a Route without ``input_text_tokens``.
    """

    name: str
    service_names: list[str]
    register: Callable[[grpc.aio.Server], None]
    health_checks: dict[str, Callable[[], Awaitable[bool]]] = field(
        default_factory=dict
    )
    on_start: Callable[[], Awaitable[None]] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None
    admin_methods: frozenset[str] = frozenset()
    access_log: bool = False
    identity: ServiceIdentityPolicy | None = None
    operator_methods: frozenset[str] = frozenset()
    counts_tokens: bool = False


def _has_admin_key(
    context: grpc.aio.ServicerContext[Any, Any], admin_digests: frozenset[str]
) -> bool:
    presented = metadata_value(context.invocation_metadata(), "authorization")
    scheme, _, key = str(presented).partition(" ")
    return (
        scheme.lower() == "bearer"
        and bool(key.strip())
        and hashlib.sha256(key.strip().encode()).hexdigest() in admin_digests
    )


def _check_admin(
    context: grpc.aio.ServicerContext[Any, Any], admin_digests: frozenset[str]
) -> None:
    presented = metadata_value(context.invocation_metadata(), "authorization")
    scheme, _, key = str(presented).partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthenticatedError(
            "this RPC needs an admin key: send 'authorization: Bearer <key>'",
            reason="ADMIN_KEY_MISSING",
        )
    if hashlib.sha256(key.strip().encode()).hexdigest() not in admin_digests:
        raise PermissionDeniedError(
            "this key may not call admin RPCs", reason="ADMIN_KEY_INVALID"
        )


class RpcEnvelope:
    """What every RPC of one service passes through, wrapped around each handler.

    It binds the request id and method into the log context (not for an in-process
    call, which runs in its caller's context), checks admin keys and service
    identities, maps errors through the error table, and counts and traces
    the RPC. Handlers are wrapped once, when the service registers them (see
    :meth:`registrar`), rather than by a per-call interceptor: gRPC's interceptor
    chain and a separate initial metadata write cost more per RPC than the service's
    own work.
    """

    def __init__(
        self, app: ServiceApp, settings: ServerSettings, *, in_process: bool = False
    ) -> None:
        self._domain = f"{app.name}.tollgate"
        self._service = app.name
        self._admin_methods = app.admin_methods
        self._admin_digests = frozenset(d.lower() for d in settings.admin_key_sha256s)
        self._access_log = app.access_log
        # In-process calls (``tollgate serve all``) come from the gateway in this
        # very process: there is no peer to identify, and they run in the
        # gateway's task, whose context already names the request.
        self._identity = None if in_process else app.identity
        self._in_process = in_process
        self._operator_methods = app.operator_methods

    def registrar(self, server: Any) -> _EnvelopingRegistrar:
        """A stand-in for ``server`` that wraps what is registered on it."""
        return _EnvelopingRegistrar(server, self)

    def wrap_generic(self, handler: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
        """``handler`` with every method it serves wrapped in the envelope."""
        return _EnvelopedGenericHandler(handler, self)

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler
    ) -> grpc.RpcMethodHandler:
        """``handler`` of the full ``method`` path, inside the envelope."""
        # Requests are decoded inside the wrapper, not by gRPC before it, so that an
        # undecodable request (invalid UTF-8, a corrupt wire format) is answered
        # INVALID_ARGUMENT like any bad input instead of gRPC's UNKNOWN.
        decode = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, decode),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, decode),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _begin(self, context: grpc.aio.ServicerContext[Any, Any], method: str) -> str:
        """Bind the RPC's request id (presented or made) and method; return the id.

        The id is echoed with the status, in the trailing metadata: no write of its
        own. An in-process call binds nothing: it runs in its caller's task, whose
        log context and request id are the request's, and must find them unchanged
        when the call returns.
        """
        presented = metadata_value(context.invocation_metadata(), REQUEST_ID_HEADER)
        request_id = str(presented)[:128] if isinstance(presented, str) else ""
        if self._in_process:
            return request_id
        structlog.contextvars.clear_contextvars()
        request_id = request_id or new_request_id()
        set_request_id(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
        if self._access_log:
            access_log.open_record()
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        return request_id

    def _authorize(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str
    ) -> None:
        if method in self._admin_methods:
            # An operator's act: the admin key is the credential, so `tollgate`
            # commands run from an operator's machine need no service identity.
            _check_admin(context, self._admin_digests)
        elif self._identity is not None:
            if method in self._operator_methods and _has_admin_key(
                context, self._admin_digests
            ):
                structlog.contextvars.bind_contextvars(caller="admin")
                return
            caller = self._identity.check(context, method)
            if caller is not None:
                structlog.contextvars.bind_contextvars(caller=caller)

    def _failure(self, error: Exception, started: float) -> TollgateError:
        if isinstance(error, NotImplementedError):
            error = UnimplementedError("this RPC is not implemented by this server")
        elif not isinstance(error, TollgateError):
            _log.error(
                "rpc_internal_error", error_type=type(error).__name__, exc_info=error
            )
            error = InternalError("internal error")
        record = access_log.current() if self._access_log else None
        if record is not None:
            record.reason = error.reason  # on the access line, not a line of its own
        else:
            _log.info(
                "rpc_failed",
                reason=error.reason,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return error

    async def _abort(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        failure: TollgateError,
        request_id: str,
    ) -> None:
        """End the RPC with ``failure``'s status (raises AbortError)."""
        status = to_grpc_status(failure, self._domain)
        echo = ((REQUEST_ID_HEADER, request_id),) if request_id else ()
        await context.abort_with_status(
            replace(status, trailing_metadata=(*status.trailing_metadata, *echo))
        )

    def _finish(
        self, method: str, code: grpc.StatusCode, started: float, span: trace.Span
    ) -> None:
        elapsed = time.perf_counter() - started
        metrics.observe_rpc(self._service, method, code, elapsed)
        if self._access_log:
            # Still inside the RPC's span: the line carries its trace and span ids.
            record = access_log.current()
            if record is not None:
                access_log.write(record, elapsed * 1000, code=code.name)
        tracing.end_rpc(span, code, server=True)

    def _wrap_unary(
        self,
        behavior: Callable[..., Awaitable[Any]],
        method: str,
        decode: Callable[[bytes], Any] | None,
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.CANCELLED
            request_id = ""
            with tracing.server_span(method, context.invocation_metadata()) as span:
                try:
                    request_id = self._begin(context, method)
                    self._authorize(context, method)
                    response = await behavior(_decoded(request, decode), context)
                    code = context.code() or grpc.StatusCode.OK
                    return response
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as error:
                    failure = self._failure(error, started)
                    code = status_code(failure)
                    await self._abort(context, failure, request_id)
                finally:
                    self._finish(method, code, started, span)

        return wrapped

    def _wrap_stream(
        self,
        behavior: Callable[..., AsyncIterator[Any]],
        method: str,
        decode: Callable[[bytes], Any] | None,
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.CANCELLED
            request_id = ""
            with tracing.server_span(method, context.invocation_metadata()) as span:
                try:
                    request_id = self._begin(context, method)
                    # A stream's caller gets the id before the first event, too.
                    with contextlib.suppress(Exception):
                        await context.send_initial_metadata(
                            ((REQUEST_ID_HEADER, request_id),)
                        )
                    self._authorize(context, method)
                    async for item in behavior(_decoded(request, decode), context):
                        yield item
                    code = context.code() or grpc.StatusCode.OK
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as error:
                    failure = self._failure(error, started)
                    code = status_code(failure)
                    await self._abort(context, failure, request_id)
                finally:
                    self._finish(method, code, started, span)

        return wrapped


class _EnvelopedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are wrapped in the envelope."""

    def __init__(self, inner: grpc.GenericRpcHandler, envelope: RpcEnvelope) -> None:
        self._inner = inner
        self._envelope = envelope
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            # Only methods the inner handler serves are kept: the map is bounded.
            wrapped = self._wrapped[method] = self._envelope.wrap(method, handler)
        return wrapped


class _EnvelopingRegistrar:
    """Stands in for a server while a service registers its servicers on it."""

    def __init__(self, server: Any, envelope: RpcEnvelope) -> None:
        self._server = server
        self._envelope = envelope

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        """Register ``handlers``, each wrapped in the envelope."""
        self._server.add_generic_rpc_handlers(
            tuple(self._envelope.wrap_generic(h) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Register the handlers of ``service`` by name, each wrapped."""
        self._server.add_registered_method_handlers(
            service,
            {
                name: self._envelope.wrap(f"/{service}/{name}", handler)
                for name, handler in method_handlers.items()
            },
        )


def _decoded(request: Any, decode: Callable[[bytes], Any] | None) -> Any:
    """The request message; raw bytes from the wire are decoded here.

    In-process calls (``tollgate serve all``) hand over the message itself.
    """
    if decode is None or not isinstance(request, bytes):
        return request
    try:
        return decode(request)
    except DecodeError as error:
        raise InvalidArgumentError(
            [FieldViolation("", "the request is not a valid protobuf message")],
            reason="UNDECODABLE_REQUEST",
        ) from error


@dataclass
class RunningServer:
    """A started server: its port, health tracker and the app it serves."""

    server: grpc.aio.Server
    port: int
    health: HealthTracker
    app: ServiceApp
    metrics: metrics.MetricsServer | None = None
    tracer_provider: TracerProvider | None = None
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    """The plaintext health-only port, when ``health_port`` is set."""

    @property
    def metrics_port(self) -> int | None:
        """The port of the Prometheus endpoint, None without one."""
        return None if self.metrics is None else self.metrics.port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, for clients on this machine."""
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Go NOT_SERVING, let in-flight RPCs finish within the grace, then stop."""
        await self.health.drain()
        if grace_seconds > 0:
            await asyncio.sleep(min(grace_seconds, 1.0))
        await self.server.stop(grace_seconds)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.app.on_stop is not None:
            await self.app.on_stop()
        if self.metrics is not None:
            await self.metrics.stop()
        tracing.shutdown(self.tracer_provider)


async def start_server(app: ServiceApp, settings: ServerSettings) -> RunningServer:
    """Start ``app`` on ``settings.host:settings.port`` (0 picks a free port)."""
    if app.counts_tokens:
        # Load the tokenizer's vocabulary now, not on the first request (~0.4 s).
        count_tokens("")
    server = grpc.aio.server(options=server_options(settings))
    app.register(RpcEnvelope(app, settings).registrar(server))
    if app.identity is not None:
        app.identity.log_start(app.name, settings.host)
    health = HealthTracker(app.service_names, settings.health_check_interval_seconds)
    for component, check in app.health_checks.items():
        health.add_check(component, check)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        [
            *app.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        port = add_port(server, f"{settings.host}:{settings.port}", settings)
    except RuntimeError as error:  # gRPC's "Failed to bind to address"
        raise ListenError(settings.host, settings.port, app.name) from error
    if port == 0:
        raise ListenError(settings.host, settings.port, app.name)
    tracer_provider = tracing.configure_tracing(app.name, settings.otlp_endpoint)
    metrics.set_build_info(app.name)
    health_server, health_port = None, None
    if settings.health_port is not None:
        health_server, health_port = _health_only_server(health, settings)
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = await metrics.start_metrics_server(
            settings.host, settings.metrics_port
        )
    await server.start()
    if health_server is not None:
        await health_server.start()
    await health.start()
    if app.on_start is not None:
        try:
            await app.on_start()
        except BaseException:
            # A start that fails (the HTTP door's port is taken) stops what runs.
            await server.stop(0)
            if health_server is not None:
                await health_server.stop(0)
            if metrics_server is not None:
                await metrics_server.stop()
            raise
    _log.info(
        "server_started",
        host=settings.host,
        port=port,
        app=app.name,
        metrics_port=metrics_server.port if metrics_server else None,
        health_port=health_port,
        tracing=tracer_provider is not None,
    )
    return RunningServer(
        server=server,
        port=port,
        health=health,
        app=app,
        metrics=metrics_server,
        tracer_provider=tracer_provider,
        health_server=health_server,
        health_port=health_port,
    )


def _health_only_server(
    health: HealthTracker, settings: ServerSettings
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server of grpc.health.v1 alone, sharing ``health``'s status.

    For probes that cannot present the certificates the main port asks for; it
    answers nothing but the status, which the main port's health service shows too.
    """
    server = grpc.aio.server(options=server_options(settings))
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    address = f"{settings.host}:{settings.health_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise ListenError(settings.host, settings.health_port, "health") from error
    if port == 0:
        raise ListenError(settings.host, settings.health_port, "health")
    return server, port


async def serve_until_signal(
    app: ServiceApp,
    settings: ServerSettings,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then drain gracefully.

    ``on_ready`` runs once it serves (a worker tells its supervisor).
    """
    running = await start_server(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready()
    await stop.wait()
    _log.info("server_draining", grace_seconds=settings.grace_seconds)
    await running.stop(settings.grace_seconds)
    _log.info("server_stopped")
