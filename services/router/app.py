"""Wires the router: routing table and its watcher, stores, classifier, servicer."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from tollgate.router.v1 import router_pb2_grpc

from services.core.clock import Clock, SystemClock
from services.core.server import ServiceApp
from services.router.adapters.encoder import LazyComplexityEncoder
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import EncoderHead, load_complexity_model
from services.router.config import RouterSettings
from services.router.domain import Classifier, Router
from services.router.ports import ControlStore, MetricsStore
from services.router.servicer import SERVICE_NAME, RouterServicer
from services.router.table import TableWatcher, load_routing_table


async def build_app(settings: RouterSettings, clock: Clock | None = None) -> ServiceApp:
    """Build the router service from ``settings``.

    Raises:
        RoutingTableError: the routing table cannot be read or is invalid, so the
            service refuses to start rather than misroute.
        OSError: a configured complexity model file cannot be read.
        ValueError: a complexity model file is not a valid model.
    """
    identity = settings.identity_policy(clock)
    holder: list[Router] = []
    watcher = (
        TableWatcher(settings.routing_file, lambda t: holder[0].replace_table(t))
        if settings.routing_file is not None
        else None
    )
    table = load_routing_table(settings.routing_file)
    health_checks = {}
    control: ControlStore
    metrics: MetricsStore
    close_redis = None
    if settings.redis_url:
        from services.router.adapters.redis_store import (
            RedisControlStore,
            RedisMetricsStore,
            connect,
        )

        client = connect(settings.redis_url)
        redis_control = RedisControlStore(client)
        control, metrics = redis_control, RedisMetricsStore(client)
        health_checks["redis"] = redis_control.ping
        close_redis = client.aclose
    else:
        control, metrics = InMemoryControlStore(), InMemoryMetricsStore()
    model = load_complexity_model(settings.complexity_model_file)
    shadow_model = (
        load_complexity_model(settings.shadow_complexity_model_file)
        if settings.shadow_complexity_model_file is not None
        else None
    )
    encoders: dict[str, LazyComplexityEncoder] = {}

    def encoder(head: EncoderHead) -> LazyComplexityEncoder | None:
        """One encoder per model file, shared by models that name the same one."""
        if not settings.complexity_encoder:
            return None
        if head.sha256 not in encoders:
            encoders[head.sha256] = LazyComplexityEncoder(head.path, head.sha256)
        return encoders[head.sha256]

    classifier = Classifier(
        model,
        encoder(model.encoder),
        settings.quality_bias,
        settings.complexity_student_confidence,
    )
    shadow = (
        Classifier(
            shadow_model, encoder(shadow_model.encoder), settings.shadow_quality_bias
        )
        if shadow_model is not None
        else None
    )
    router = Router(
        table,
        control,
        metrics,
        classifier,
        clock or SystemClock(),
        shadow=shadow,
        route_lease_seconds=settings.route_lease_seconds,
    )
    holder.append(router)
    servicer = RouterServicer(router)
    watch_task: asyncio.Task[None] | None = None

    async def watch(table_watcher: TableWatcher) -> None:
        while True:
            await asyncio.sleep(settings.routing_file_check_interval_seconds)
            table_watcher.check()

    async def on_start() -> None:
        nonlocal watch_task
        if watcher is not None:
            watch_task = asyncio.create_task(watch(watcher))

    async def on_stop() -> None:
        if watch_task is not None:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
        for loaded in encoders.values():
            await loaded.close()
        if close_redis is not None:
            await close_redis()

    def register(server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="router",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"routing_table": router.routing_table_healthy, **health_checks},
        on_start=on_start,
        on_stop=on_stop,
        # Every other RPC is the gateway's: its callers prove a service identity.
        identity=identity,
        # Status an operator may read with an admin key too (`tollgate status`).
        operator_methods=frozenset(
            {
                f"/{SERVICE_NAME}/GetDeploymentStatus",
                f"/{SERVICE_NAME}/GetRoutingStats",
            }
        ),
        # Changing traffic or the service level is an operator's act: admin key only.
        admin_methods=frozenset(
            {
                f"/{SERVICE_NAME}/SetTrafficSplit",
                f"/{SERVICE_NAME}/SetDegradationLevel",
            }
        ),
    )
