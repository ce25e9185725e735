"""Wiring of the cache service: settings → store → domain → servicer."""

from __future__ import annotations

import grpc
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc

from services.cache.adapters.memory import MemoryExactStore
from services.cache.config import CacheSettings
from services.cache.domain import ResponseCache
from services.cache.servicer import CacheServicer
from services.core.clock import Clock, SystemClock
from services.core.server import ServiceApp

SERVICE_NAME = cache_pb.DESCRIPTOR.services_by_name["CacheService"].full_name


async def build_app(settings: CacheSettings, clock: Clock | None = None) -> ServiceApp:
    """Build the cache service with its in-process exact tier.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.
    """
    store = MemoryExactStore(settings.exact_max_bytes)
    cache = ResponseCache(
        store,
        clock or SystemClock(),
        default_ttl_seconds=settings.default_ttl_seconds,
        max_ttl_seconds=settings.max_ttl_seconds,
    )
    servicer = CacheServicer(cache)

    def register(server: grpc.aio.Server) -> None:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="cache",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"exact_store": store.ping},
    )
