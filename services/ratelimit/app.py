"""Wiring of the ratelimit service: settings → rules and store → domain → servicer."""

from __future__ import annotations

import grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core.clock import Clock, SystemClock
from services.core.server import ServiceApp
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.config import RateLimitSettings
from services.ratelimit.domain import RateLimiter
from services.ratelimit.limits import load_limits
from services.ratelimit.servicer import RateLimitServicer

SERVICE_NAME = ratelimit_pb.DESCRIPTOR.services_by_name["RateLimitService"].full_name


async def build_app(
    settings: RateLimitSettings, clock: Clock | None = None
) -> ServiceApp:
    """Build the ratelimit service on the in-process counter store.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.

    Raises:
        OSError: the limits file cannot be read.
        yaml.YAMLError: the limits file is not valid YAML.
        pydantic.ValidationError: the limits file's rules are invalid.
    """
    clock = clock or SystemClock()
    store = MemoryCounterStore(clock)
    limiter = RateLimiter(
        store,
        load_limits(settings.limits_file),
        clock,
        reservation_ttl_seconds=settings.reservation_ttl_seconds,
    )
    servicer = RateLimitServicer(limiter)

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="ratelimit",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"store": store.ping},
    )
