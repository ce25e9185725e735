"""Standard gRPC health that tracks real components.

A service registers checks (``sqlite``, ``redis``, ...) as async callables. A
background task runs them; the overall status ("") and each service's status are
SERVING only while every check passes. On drain, everything goes NOT_SERVING for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

HealthCheck = Callable[[], Awaitable[bool]]

_log = structlog.get_logger("tollgate.health")


class HealthTracker:
    """Runs component checks and publishes the result through grpc.health.v1."""

    def __init__(self, service_names: list[str], interval_seconds: float) -> None:
        self.servicer = HealthServicer()
        self._service_names = ["", *service_names]
        self._interval = interval_seconds
        self._checks: dict[str, HealthCheck] = {}
        self._component_ok: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    def add_check(self, component: str, check: HealthCheck) -> None:
        """Track ``component`` with ``check``; a check that raises counts as down."""
        self._checks[component] = check

    @property
    def components(self) -> dict[str, bool]:
        """The last result of each check."""
        return dict(self._component_ok)

    async def refresh(self) -> bool:
        """Run every check now and publish; returns whether all pass."""
        for name, check in self._checks.items():
            try:
                ok = await check()
            except Exception:  # a failing check is a health result, not a crash
                ok = False
            if self._component_ok.get(name) != ok:
                _log.info("health_component_changed", component=name, healthy=ok)
            self._component_ok[name] = ok
        healthy = all(self._component_ok.values())
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self.servicer.set(name, status)
        return healthy

    async def start(self) -> None:
        """Publish once, then keep checking in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def drain(self) -> None:
        """Go NOT_SERVING permanently (graceful shutdown)."""
        await self.stop()
        await self.servicer.enter_graceful_shutdown()

    async def stop(self) -> None:
        """Stop the background checks."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
