"""OpenTelemetry tracing: off unless an OTLP endpoint is configured.

One trace per gateway request: the RPC envelope continues the caller's trace
from the W3C ``traceparent`` in gRPC metadata (or starts one) with a SERVER span per
RPC, and the HTTP door does the same from its headers (:func:`http_server_span`);
:func:`client_span` puts a CLIENT span around every downstream call and gives the
metadata that carries its context; the gateway's upstream client puts a CLIENT span
with OpenTelemetry's GenAI attributes around each model call
(:func:`start_client_span`) and an INTERNAL span around each attempt of it. While
tracing is off every entry point returns at once: no propagation, no spans, no
exporter.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    # The SDK (about 2 MB resident) is imported by configure_tracing, only when
    # tracing is on; everything else here is the API, a no-op without it.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_PROPAGATOR = TraceContextTextMapPropagator()
_INSTRUMENTATION = "tollgate"
_NOOP_TRACER: trace.Tracer = trace.NoOpTracer()

# Server spans are errors only for codes that say the server failed (OpenTelemetry's
# gRPC conventions); a caller's bad request or exhausted quota is not a server fault.
_SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

_provider: TracerProvider | None = None
_tracer: trace.Tracer = _NOOP_TRACER


def install(provider: TracerProvider | None) -> None:
    """Make ``provider`` the source of every Tollgate span; None turns tracing off."""
    global _provider, _tracer
    _provider = provider
    _tracer = (
        _NOOP_TRACER if provider is None else provider.get_tracer(_INSTRUMENTATION)
    )


def enabled() -> bool:
    """Whether spans are being recorded."""
    return _provider is not None


def configure_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider | None:
    """Export spans of ``service`` to ``otlp_endpoint`` (OTLP/gRPC); None: tracing off.

    The endpoint's scheme picks the transport: ``http://`` plaintext, ``https://``
    TLS. Spans leave in batches from a background thread, never on a request path.
    """
    if not otlp_endpoint:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"tollgate-{service}"})
    )
    provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    install(provider)
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Flush and stop ``provider``; turn tracing off if it was the one in use."""
    if provider is None:
        return
    if provider is _provider:
        install(None)
    provider.shutdown()


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[trace.Span]:
    """An INTERNAL span around a block, child of the current span.

    Exceptions are not recorded (their messages may quote upstream text); the
    caller marks the outcome with :func:`end_span`.
    """
    with _tracer.start_as_current_span(
        name,
        attributes=attributes,
        kind=trace.SpanKind.INTERNAL,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        yield current


def end_span(current: trace.Span, outcome: str) -> None:
    """Mark a span with its outcome; anything but "ok" is an error."""
    if not current.is_recording():
        return
    current.set_attribute("tollgate.outcome", outcome)
    if outcome != "ok":
        current.set_status(Status(StatusCode.ERROR, outcome))


def start_client_span(
    name: str, attributes: Mapping[str, AttributeValue]
) -> trace.Span:
    """A CLIENT span, child of the current span, that is not made current.

    For a call that outlives one block (a stream read by its caller): run the parts
    that should nest under it in :func:`use`, and end it with :func:`finish_span`.
    """
    if _provider is None:
        return trace.INVALID_SPAN
    return _tracer.start_span(
        name,
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )


@contextlib.contextmanager
def use(current: trace.Span) -> Iterator[None]:
    """Make ``current`` the current span for a block; leave it open on success.

    An exception ends it as an error typed by the exception's class name (never its
    message, which may quote upstream text), then propagates.
    """
    if not current.is_recording():
        yield
        return
    try:
        with trace.use_span(
            current,
            end_on_exit=False,
            record_exception=False,
            set_status_on_exception=False,
        ):
            yield
    except BaseException as error:
        finish_span(current, type(error).__name__)
        raise


def finish_span(current: trace.Span, error_type: str = "") -> None:
    """End ``current``: ok, or an error of ``error_type`` (``error.type``).

    Ending a span that has ended already does nothing.
    """
    if not current.is_recording():
        return
    if error_type:
        current.set_attribute("error.type", error_type)
        current.set_status(Status(StatusCode.ERROR, error_type))
    current.end()


def _rpc_attributes(method: str) -> dict[str, AttributeValue]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


@contextlib.contextmanager
def server_span(
    method: str, metadata: Iterable[tuple[str, str | bytes]] | None
) -> Iterator[trace.Span]:
    """The SERVER span of one RPC, continuing the trace named in ``metadata``."""
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    parent = _PROPAGATOR.extract(carrier)
    with _tracer.start_as_current_span(
        method,
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=_rpc_attributes(method),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        yield current


def end_rpc(current: trace.Span, code: grpc.StatusCode, *, server: bool) -> None:
    """Mark the RPC span with its final gRPC code."""
    if not current.is_recording():
        return
    current.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK and (not server or code in _SERVER_ERROR_CODES):
        current.set_status(Status(StatusCode.ERROR, code.name))


@contextlib.contextmanager
def http_server_span(
    method: str, route: str, headers: Mapping[str, str]
) -> Iterator[trace.Span]:
    """The SERVER span of one HTTP request, continuing the trace in ``headers``.

    ``route`` is the matched route's template (``/v1/batches/{batch_id}``), "" when
    none matched; the span is named ``<METHOD> <route>`` as OpenTelemetry's HTTP
    conventions ask, so ids in paths never make names unbounded.
    """
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    attributes: dict[str, AttributeValue] = {"http.request.method": method}
    if route:
        attributes["http.route"] = route
    with _tracer.start_as_current_span(
        f"{method} {route}" if route else method,
        context=_PROPAGATOR.extract(headers),
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        yield current


def end_http(current: trace.Span, status: int) -> None:
    """Mark the HTTP server span with its response status; 5xx is an error."""
    if not current.is_recording():
        return
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR, str(status)))


@functools.cache
def _rpc_of(descriptor: Descriptor) -> str:
    # Every RPC has its own request message (buf STANDARD), so the request's type
    # names the method.
    for service in descriptor.file.services_by_name.values():
        for method in service.methods:
            if method.input_type is descriptor:
                return f"/{service.full_name}/{method.name}"
    return f"/{descriptor.full_name}"


@contextlib.contextmanager
def client_span(request: Message) -> Iterator[tuple[tuple[str, str], ...]]:
    """A CLIENT span around one outgoing unary call of ``request``.

    Yields the metadata entries (``traceparent``) that carry the span's context to
    the server; nothing while tracing is off. The span ends with the call's code.
    """
    if _provider is None:
        yield ()
        return
    method = _rpc_of(request.DESCRIPTOR)
    with _tracer.start_as_current_span(
        method,
        kind=trace.SpanKind.CLIENT,
        attributes=_rpc_attributes(method),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        try:
            yield tuple(carrier.items())
        except grpc.aio.AioRpcError as error:
            end_rpc(current, error.code(), server=False)
            raise
        end_rpc(current, grpc.StatusCode.OK, server=False)


def _otlp_exporter(endpoint: str) -> SpanExporter:
    # Imported only when tracing is on: the exporter and its opentelemetry-proto
    # generated modules are not needed otherwise.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter,
    )

    return OTLPSpanExporter(endpoint=endpoint)
