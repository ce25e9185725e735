"""``tollgate serve all``: the five services in one process, the seed's monolith.

Each service is built and served exactly as on its own (its contract, health and
reflection on its own port, for outside callers; the one metrics registry is
served once, on the gateway's metrics port), and the gateway reaches the
other four in-process: its typed clients keep their stubs, breakers and deadlines,
but their channel is an :class:`InProcessChannel` that hands the request message
to the servicer through the same RPC envelope, with no serialisation and
no network hop. A servicer's error comes back as the ``AioRpcError`` a network
call would raise (code, details, ``grpc-status-details-bin``), so the gateway's
per-dependency policies stay the same.

Run it with ``tollgate serve all [--host H] [--port N] [--workers N]``
(``--port``: the gateway; the others listen on their own settings' ports).
``--workers N`` runs N such processes on the same ports, only when the state is
shared (:func:`unshared_state`; docs/performance.md, "Workers").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import grpc
import structlog

from services.cache.config import CacheSettings
from services.core import metrics
from services.core.logging import configure_logging
from services.core.runner import run_event_loop
from services.core.server import (
    ListenError,
    RpcEnvelope,
    RunningServer,
    ServiceApp,
    start_server,
)
from services.core.settings import ServerSettings
from services.core.workers import (
    WorkerSettings,
    available_cpus,
    notify_ready,
    serve_workers,
)
from services.costs.config import CostsSettings
from services.gateway.config import GatewaySettings
from services.ratelimit.config import RateLimitSettings
from services.router.config import RouterSettings

_log = structlog.get_logger("tollgate.allinone")

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class _CallDetails:
    """What a server knows of a call before its handler (grpc.HandlerCallDetails)."""

    method: str
    invocation_metadata: Metadata


class _InProcessContext:
    """The part of ``grpc.aio.ServicerContext`` our servicers and envelope use."""

    def __init__(self, metadata: Metadata, deadline: float | None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self.initial_metadata: Metadata = ()
        self.trailing_metadata: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        """The caller's metadata."""
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def code(self) -> grpc.StatusCode | None:
        """The status code set so far (by ``set_code`` or an abort), or None."""
        return self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        """Set the status code of the call."""
        self._code = code

    def details(self) -> str:
        """The status details set so far."""
        return self._details

    def set_details(self, details: str) -> None:
        """Set the status details of the call."""
        self._details = details

    def peer(self) -> str:
        """Who called: always this process."""
        return "inprocess:"

    async def send_initial_metadata(self, metadata: Sequence[Any]) -> None:
        """Keep the initial metadata (there is no wire to send it on)."""
        self.initial_metadata = tuple(metadata)

    def set_trailing_metadata(self, metadata: Sequence[Any]) -> None:
        """Keep the trailing metadata for the caller's error."""
        self.trailing_metadata = tuple(metadata)

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[Any] = (),
    ) -> NoReturn:
        """End the call with ``code``, as ``grpc.aio`` does: by raising AbortError."""
        self._code, self._details = code, details
        if trailing_metadata:
            self.trailing_metadata = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """End the call with a ``grpc.Status`` (code, details, rich trailers)."""
        await self.abort(status.code, status.details, status.trailing_metadata)


class _UnaryUnary:
    """The multicallable a stub gets from ``channel.unary_unary(path, ...)``."""

    def __init__(self, channel: InProcessChannel, method: str) -> None:
        self._channel = channel
        self._method = method

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
        **_options: Any,  # credentials, wait_for_ready, compression: moot here
    ) -> Awaitable[Any]:
        return self._channel.unary_unary_call(
            self._method, request, timeout, tuple(metadata or ())
        )


class _Unimplemented:
    """Streaming multicallables: the gateway's clients make unary calls only."""

    def __init__(self, method: str) -> None:
        self._method = method

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNIMPLEMENTED,
            (),
            (),
            f"{self._method}: streaming calls are not served in-process",
        )


class InProcessChannel:
    """A channel whose calls run a service's handlers in this process.

    Stubs built on it call the handlers its ``register`` added, inside the same
    RPC envelope as the network server, under the caller's deadline. A call runs
    in the caller's own task, not a task of its own: the envelope built with
    ``in_process=True`` binds nothing, so the handler logs under the caller's
    context (the same request, the same request id) and leaves it as it was. A
    task and a fresh log context per call cost 7% of the all-in-one's CPU per
    request (1.48 → 1.37 ms, ``bench/results/hot_path_inprocess_no_task.json``).
    """

    def __init__(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._handlers = tuple(handlers)

    def unary_unary(self, method: str, *_args: Any, **_kwargs: Any) -> _UnaryUnary:
        """The multicallable of a unary RPC (serialisers are not needed)."""
        return _UnaryUnary(self, method)

    def unary_stream(self, method: str, *_args: Any, **_kwargs: Any) -> _Unimplemented:
        """Server-streaming RPCs are not called in-process."""
        return _Unimplemented(method)

    async def close(self) -> None:
        """Nothing to release."""

    def _lookup(self, details: _CallDetails) -> grpc.RpcMethodHandler | None:
        for handler in self._handlers:
            found = handler.service(details)
            if found is not None:
                return found
        return None

    async def _serve(
        self, method: str, request: Any, context: _InProcessContext
    ) -> Any:
        handler = self._lookup(_CallDetails(method, context.invocation_metadata()))
        if handler is None or handler.unary_unary is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served here"
            )
        return await handler.unary_unary(request, context)

    async def unary_unary_call(
        self,
        method: str,
        request: Any,
        timeout_seconds: float | None,
        metadata: Metadata,
    ) -> Any:
        """Run one unary call; failures raise ``AioRpcError`` like the network."""
        deadline = (
            None if timeout_seconds is None else time.monotonic() + timeout_seconds
        )
        context = _InProcessContext(metadata, deadline)
        try:
            async with asyncio.timeout(timeout_seconds):
                return await self._serve(method, request, context)
        except TimeoutError:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, (), (), "Deadline Exceeded"
            ) from None
        except grpc.aio.AbortError:
            raise grpc.aio.AioRpcError(
                context.code() or grpc.StatusCode.UNKNOWN,
                context.initial_metadata,
                context.trailing_metadata,
                context.details(),
            ) from None


class _RecordingServer:
    """Passes registrations on to the real server and keeps the generic handlers."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        self.handlers.extend(handlers)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(service, method_handlers)


async def _serve_with_channel(
    app: ServiceApp, settings: ServerSettings
) -> tuple[RunningServer, InProcessChannel]:
    """Serve ``app`` on its port; the channel reaches the same servicers in-process."""
    recorded: list[grpc.GenericRpcHandler] = []

    def register(server: grpc.aio.Server) -> None:
        recorder = _RecordingServer(server)
        app.register(recorder)
        recorded.extend(recorder.handlers)

    running = await start_server(replace(app, register=register), settings)
    # The gateway calling through this channel is this process: no identity to prove.
    envelope = RpcEnvelope(app, settings, in_process=True)
    return running, InProcessChannel([envelope.wrap_generic(h) for h in recorded])


@dataclass
class AllInOne:
    """The five running servers of one process; the gateway is ``servers[-1]``."""

    servers: list[RunningServer]

    @property
    def ports(self) -> dict[str, int]:
        """Each service's port, and the gateway's HTTP door as ``gateway_http``."""
        ports = {running.app.name: running.port for running in self.servers}
        http_port = getattr(self.servers[-1].app, "http_port", None)
        if http_port:
            ports["gateway_http"] = http_port
        return ports

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Drain the gateway first (it calls the others), then the rest together."""
        *downstreams, gateway = self.servers
        await gateway.stop(grace_seconds)
        await asyncio.gather(*(running.stop(0.0) for running in downstreams))


@dataclass(frozen=True)
class AllInOneSettings:
    """The five services' own settings, each read from its own environment prefix."""

    ratelimit: RateLimitSettings
    cache: CacheSettings
    router: RouterSettings
    costs: CostsSettings
    gateway: GatewaySettings

    @classmethod
    def load(
        cls, host: str | None = None, gateway_port: int | None = None
    ) -> AllInOneSettings:
        """Load every service's settings; ``host`` applies to all five.

        One process has one metrics registry: it is served once, on the gateway's
        metrics port. Five endpoints would each serve every series (a scrape of all
        would count each five times), and with ``--workers N`` each one's
        ``port + index`` would meet the next service's port.
        """
        common: dict[str, Any] = {} if host is None else {"host": host}
        downstream: dict[str, Any] = {**common, "metrics_port": None}
        ratelimit = RateLimitSettings(**downstream)
        cache = CacheSettings(**downstream)
        router = RouterSettings(**downstream)
        costs = CostsSettings(**downstream)
        if gateway_port is not None:
            common["port"] = gateway_port
        # The addresses are not dialled (the channels are in-process); they name
        # the services' own listeners, and spare the operator four settings.
        gateway = GatewaySettings(
            **common,
            ratelimit_address=f"{ratelimit.host}:{ratelimit.port}",
            cache_address=f"{cache.host}:{cache.port}",
            router_address=f"{router.host}:{router.port}",
            costs_address=f"{costs.host}:{costs.port}",
        )
        return cls(ratelimit, cache, router, costs, gateway)


async def start_all(settings: AllInOneSettings) -> AllInOne:
    """Serve the four downstream services, then the gateway wired to them in-process."""
    # Imported by the process that serves: the supervisor of N workers never does.
    from services.cache.app import build_app as build_cache
    from services.costs.app import build_app as build_costs
    from services.gateway.app import build_app as build_gateway
    from services.ratelimit.app import build_app as build_ratelimit
    from services.router.app import build_app as build_router

    downstreams: list[tuple[ServerSettings, Callable[[Any], Awaitable[ServiceApp]]]] = [
        (settings.ratelimit, build_ratelimit),
        (settings.cache, build_cache),
        (settings.router, build_router),
        (settings.costs, build_costs),
    ]
    servers: list[RunningServer] = []
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        for service_settings, build in downstreams:
            running, channel = await _serve_with_channel(
                await build(service_settings), service_settings
            )
            servers.append(running)
            channels[running.app.name] = channel
        gateway = await build_gateway(settings.gateway, channels=channels)
        servers.append(await start_server(gateway, settings.gateway))
    except BaseException:
        await asyncio.gather(
            *(running.stop(0.0) for running in reversed(servers)),
            return_exceptions=True,
        )
        raise
    return AllInOne(servers)


def unshared_state(settings: AllInOneSettings) -> list[str]:
    """What each worker would keep to itself, so N workers would not be one gateway.

    Empty when every limit, budget, routing decision and cache entry lives in a
    store the workers share: then ``--workers N`` behaves as one process.
    """
    problems = []
    if settings.ratelimit.redis_url is None:
        problems.append(
            "rate limits are counted in each worker's memory (N workers would admit "
            "N times the limits): set TOLLGATE_RATELIMIT_REDIS_URL"
        )
    if settings.router.redis_url is None:
        problems.append(
            "the router's degradation level, traffic split and outcomes live in "
            "each worker: set TOLLGATE_ROUTER_REDIS_URL"
        )
    if (
        settings.costs.postgres_dsn is None
        and str(settings.costs.database_path) == ":memory:"
    ):
        problems.append(
            "the ledger (budgets) is in memory: set TOLLGATE_COSTS_DATABASE_PATH to "
            "a file or TOLLGATE_COSTS_POSTGRES_DSN"
        )
    if settings.cache.exact_backend == "memory":
        problems.append(
            "the exact cache tier is in each worker's memory (an Invalidate would "
            "reach one worker): set TOLLGATE_CACHE_EXACT_BACKEND=redis"
        )
    if settings.cache.semantic_backend == "qdrant-edge":
        problems.append(
            "the embedded semantic index belongs to one process: set "
            "TOLLGATE_CACHE_SEMANTIC_BACKEND=qdrant (a Qdrant server) or disabled"
        )
    return problems


def worker_env(settings: AllInOneSettings, count: int) -> dict[str, str]:
    """Per-process limits divided among ``count`` workers (degraded modes only)."""
    return {
        # While Redis is down, each replica decides locally on limit / replicas.
        "TOLLGATE_RATELIMIT_REPLICAS": str(settings.ratelimit.replicas * count),
        "TOLLGATE_GATEWAY_LOCAL_LIMIT_RPM_PER_USER": str(
            max(1, settings.gateway.local_limit_rpm_per_user // count)
        ),
    }


async def _serve_until_signal(
    settings: AllInOneSettings, on_ready: Callable[[], None] | None = None
) -> None:
    suite = await start_all(settings)
    metrics.set_build_info("all")  # one process serves the five
    _log.info("allinone_started", ports=suite.ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready()
    await stop.wait()
    grace = settings.gateway.grace_seconds
    _log.info("server_draining", grace_seconds=grace)
    await suite.stop(grace)
    _log.info("server_stopped")


def main(argv: list[str] | None = None) -> int:
    """Serve the five services until SIGTERM or SIGINT, in one or N processes.

    ``--workers N`` (or ``TOLLGATE_WORKERS``) with N > 1 needs the state shared
    (:func:`unshared_state`), else it is refused; unset, N is the CPUs the container
    may use when the state is shared, else 1.
    """
    parser = argparse.ArgumentParser(prog="tollgate serve all")
    parser.add_argument(
        "--port", type=int, help="the gateway's port (the others: their settings)"
    )
    parser.add_argument("--host", help="interface every service listens on")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes sharing the ports; more than 1 needs shared state "
        "(Redis for limits, routing and the exact cache) (default: "
        "TOLLGATE_WORKERS, else one per CPU when the state is shared, else 1)",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    settings = AllInOneSettings.load(args.host, args.port)
    worker = WorkerSettings()
    if worker.worker_index is None:
        asked = args.workers or worker.workers
        problems = unshared_state(settings)
        if asked is not None and asked > 1 and problems:
            print(
                f"tollgate serve all: --workers {asked} needs state the workers "
                "share; " + "; ".join(problems),
                file=sys.stderr,
            )
            return 2
        count = asked or (1 if problems else available_cpus())
        configure_logging(settings.gateway.log_level, service="all")
        if asked is None and problems and available_cpus() > 1:
            _log.info("allinone_one_worker", reason="state kept in memory")
        if count > 1:
            services: dict[str, ServerSettings] = {
                "ratelimit": settings.ratelimit,
                "cache": settings.cache,
                "router": settings.router,
                "costs": settings.costs,
                "gateway": settings.gateway,
            }
            return serve_workers(
                "all",
                "services.allinone",
                services,
                count,
                worker_env(settings, count),
            )
    configure_logging(
        settings.gateway.log_level, service="all", worker=worker.worker_index
    )
    try:
        run_event_loop(_serve_until_signal(settings, lambda: notify_ready(worker)))
    except ListenError as error:
        print(f"tollgate serve all: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
