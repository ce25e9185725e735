"""Wires the router: routing table, stores, domain and servicer."""

from __future__ import annotations

import grpc
from tollgate.router.v1 import router_pb2_grpc

from services.core.server import ServiceApp
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.config import RouterSettings
from services.router.domain import Router
from services.router.servicer import SERVICE_NAME, RouterServicer
from services.router.table import load_routing_table


async def build_app(settings: RouterSettings) -> ServiceApp:
    """Build the router service from ``settings``.

    Raises:
        RoutingTableError: the routing table cannot be read or is invalid, so the
            service refuses to start rather than misroute.
    """
    table = load_routing_table(settings.routing_file)
    router = Router(table, InMemoryControlStore(), InMemoryMetricsStore())
    servicer = RouterServicer(router)

    def register(server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="router",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"routing_table": router.routing_table_healthy},
    )
