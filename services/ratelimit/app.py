"""Wiring of the ratelimit service: settings → rules and store → domain → servicers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import grpc
from envoy.service.ratelimit.v3 import (
    rls_pb2 as envoy_rls_pb,
)
from envoy.service.ratelimit.v3 import (
    rls_pb2_grpc as envoy_rls_pb2_grpc,
)
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core import metrics
from services.core.clock import Clock, SystemClock
from services.core.server import ServiceApp
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.config import RateLimitSettings
from services.ratelimit.domain import LocalFallback, RateLimiter
from services.ratelimit.limits import LimitsWatcher, load_limits
from services.ratelimit.ports import CounterStore
from services.ratelimit.servicer import EnvoyRateLimitServicer, RateLimitServicer

if TYPE_CHECKING:
    from services.ratelimit.adapters.redis_store import RedisCounterStore

SERVICE_NAME = ratelimit_pb.DESCRIPTOR.services_by_name["RateLimitService"].full_name
ENVOY_SERVICE_NAME = envoy_rls_pb.DESCRIPTOR.services_by_name[
    "RateLimitService"
].full_name


async def build_app(
    settings: RateLimitSettings, clock: Clock | None = None
) -> ServiceApp:
    """Build the ratelimit service: Redis store when ``redis_url`` is set, else memory.

    Health: component ``store``. On memory it is always up. On Redis it probes
    Redis and moves the limiter into and out of degraded mode; failing closed it is
    down while Redis is (NOT_SERVING: the service cannot answer), failing open it
    stays up, because the service still answers, and the degradation shows in
    GetStatus, in every answer's ``degraded`` flag and in the logs.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.

    Raises:
        OSError: the limits file cannot be read.
        yaml.YAMLError: the limits file is not valid YAML.
        pydantic.ValidationError: the limits file's rules are invalid.
    """
    clock = clock or SystemClock()
    identity = settings.identity_policy(clock)
    limits = load_limits(settings.limits_file)
    store: CounterStore
    redis_store: RedisCounterStore | None = None
    fallback: LocalFallback | None = None
    if settings.redis_url is None:
        store = MemoryCounterStore(clock)
    else:
        # Imported when chosen: the embedded default never loads the redis client.
        from services.ratelimit.adapters.redis_store import RedisCounterStore, connect

        redis_store = RedisCounterStore(
            connect(
                settings.redis_url,
                socket_timeout_ms=settings.redis_socket_timeout_ms,
                connect_timeout_ms=settings.redis_connect_timeout_ms,
            ),
            settings.redis_key_prefix,
        )
        store = redis_store
        if settings.failure_mode == "open":
            fallback = LocalFallback(
                store=MemoryCounterStore(clock),
                replicas=settings.replicas,
                retry_interval_seconds=settings.redis_retry_interval_ms / 1000,
            )
    limiter = RateLimiter(
        store,
        limits,
        clock,
        reservation_ttl_seconds=settings.reservation_ttl_seconds,
        fallback=fallback,
    )
    servicer = RateLimitServicer(limiter)
    envoy_servicer = EnvoyRateLimitServicer(limiter)
    tasks: list[asyncio.Task[None]] = []

    def report_degraded() -> None:
        metrics.RATELIMIT_DEGRADED.set(limiter.degraded)

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
        envoy_rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
            envoy_servicer, server
        )

    async def on_start() -> None:
        metrics.on_scrape(report_degraded)
        if settings.limits_file is not None:
            watcher = LimitsWatcher(settings.limits_file, limiter.replace_limits)
            tasks.append(
                asyncio.create_task(
                    watcher.run(settings.limits_reload_interval_seconds)
                )
            )

    async def on_stop() -> None:
        metrics.off_scrape(report_degraded)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if redis_store is not None:
            await redis_store.close()

    return ServiceApp(
        name="ratelimit",
        service_names=[SERVICE_NAME, ENVOY_SERVICE_NAME],
        register=register,
        health_checks={"store": limiter.check_backend},
        on_start=on_start,
        on_stop=on_stop,
        # Every RPC needs a service identity: the gateway's, and Envoy's for
        # ShouldRateLimit alone when allowed_clients_by_rpc says so.
        identity=identity,
        # Bucket status an operator may read with an admin key too.
        operator_methods=frozenset({f"/{SERVICE_NAME}/GetStatus"}),
    )
