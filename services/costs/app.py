"""Wiring of the costs service: settings → pricing and SQLite ledger → servicer."""

from __future__ import annotations

import grpc
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import Clock, SystemClock
from services.core.server import ServiceApp
from services.costs.adapters.sqlite import SqliteLedgerStore
from services.costs.config import CostsSettings
from services.costs.domain import CostLedger
from services.costs.pricing import load_pricing
from services.costs.servicer import CostsServicer

SERVICE_NAME = costs_pb.DESCRIPTOR.services_by_name["CostsService"].full_name


async def build_app(settings: CostsSettings, clock: Clock | None = None) -> ServiceApp:
    """Build the costs service on its SQLite ledger.

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
    store = await SqliteLedgerStore.open(settings.database_path)
    ledger = CostLedger(store, pricing, clock or SystemClock(), settings.timezone)
    servicer = CostsServicer(ledger)

    def register(server: grpc.aio.Server) -> None:
        costs_pb2_grpc.add_CostsServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="costs",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"ledger": store.ping},
        on_stop=store.close,
    )
