"""Wiring of the costs service: settings → pricing and ledger store → servicer."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import grpc
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import Clock, SystemClock
from services.core.pricing import load_pricing
from services.core.server import ServiceApp
from services.costs.adapters.sql import SqlLedgerStore
from services.costs.adapters.sqlite import open_sqlite_store
from services.costs.config import CostsSettings
from services.costs.domain import CostLedger
from services.costs.servicer import CostsServicer

SERVICE_NAME = costs_pb.DESCRIPTOR.services_by_name["CostsService"].full_name


async def build_app(settings: CostsSettings, clock: Clock | None = None) -> ServiceApp:
    """Build the costs service on its ledger: Postgres if a DSN is set, else SQLite.

    The pricing table is loaded and validated first, so a bad pricing file fails
    start-up before the database is touched.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.

    Raises:
        pydantic.ValidationError: the pricing file is invalid.
        OSError: the pricing file cannot be read.
        BackendUnavailableError: the database cannot be opened or migrated.
    """
    pricing = load_pricing(settings.pricing_file)
    store = await open_store(settings)
    ledger = CostLedger(
        store,
        pricing,
        clock or SystemClock(),
        settings.timezone,
        reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds),
        max_batch=settings.max_batch_size,
    )
    servicer = CostsServicer(ledger)
    following: list[asyncio.Task[None]] = []

    async def start() -> None:
        following.append(
            asyncio.create_task(
                ledger.follow_alerts(settings.alert_poll_interval_seconds)
            )
        )

    async def stop() -> None:
        for task in following:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ledger.close()
        await store.close()

    def register(server: grpc.aio.Server) -> None:
        costs_pb2_grpc.add_CostsServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="costs",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"ledger": store.ping},
        on_start=start,
        on_stop=stop,
        # Budgets are set by finance and platform owners: admin key only.
        admin_methods=frozenset({f"/{SERVICE_NAME}/SetBudget"}),
    )


async def open_store(settings: CostsSettings) -> SqlLedgerStore:
    """The ledger store the settings select, opened and migrated.

    Raises:
        BackendUnavailableError: the database cannot be opened or migrated.
    """
    if settings.postgres_dsn:
        # Imported only when selected: psycopg comes with the `costs` extra, and the
        # embedded default needs nothing beyond the standard library.
        from services.costs.adapters.postgres import open_postgres_store

        return await open_postgres_store(
            settings.postgres_dsn, settings.postgres_pool_size
        )
    return await open_sqlite_store(settings.database_path)
