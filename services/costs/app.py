"""Wiring of the costs service: settings → pricing and ledger store → servicer.

Two background tasks per replica: following the alerts other replicas fire (for
WatchAlerts), and the webhook dispatcher delivering queued alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import grpc
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core import metrics
from services.core.clock import Clock, SystemClock
from services.core.pricing import load_pricing
from services.core.server import ServiceApp
from services.costs.adapters.sql import SqlLedgerStore
from services.costs.adapters.sqlite import open_sqlite_store
from services.costs.adapters.webhook_http import AiohttpWebhookSender
from services.costs.config import CostsSettings
from services.costs.domain import CostLedger
from services.costs.servicer import CostsServicer
from services.costs.webhooks import (
    PayloadFormat,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
)

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
    clock = clock or SystemClock()
    identity = settings.identity_policy(clock)
    store = await open_store(settings)
    sender = AiohttpWebhookSender(settings.alert_webhook_timeout_seconds)
    webhooks = WebhookDispatcher(
        store,
        sender,
        clock,
        webhook_endpoints(settings),
        pricing.currency_code,
        policy=retry_policy(settings),
    )
    ledger = CostLedger(
        store,
        pricing,
        clock,
        settings.timezone,
        reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds),
        budget_refresh=timedelta(seconds=settings.budget_refresh_seconds),
        max_batch=settings.max_batch_size,
        linger_seconds=settings.batch_linger_ms / 1000,
        router=webhooks,
    )
    servicer = CostsServicer(ledger, webhooks)
    metrics.COSTS_BUDGETED_SCOPES.set_function(lambda: ledger.budgeted_scope_count)
    following: list[asyncio.Task[None]] = []

    async def start() -> None:
        if settings.budget_refresh_seconds > 0:
            following.append(asyncio.create_task(ledger.follow_budgets()))
        following.append(
            asyncio.create_task(
                ledger.follow_alerts(settings.alert_poll_interval_seconds)
            )
        )
        following.append(
            asyncio.create_task(
                webhooks.run(settings.alert_webhook_poll_interval_seconds)
            )
        )

    async def stop() -> None:
        for task in following:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ledger.close()
        await sender.close()
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
        # Every other RPC is the gateway's: its callers prove a service identity.
        identity=identity,
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


def webhook_endpoints(settings: CostsSettings) -> list[WebhookEndpoint]:
    """The alert webhook endpoints of the settings, with their secrets."""
    endpoints = []
    for endpoint in settings.alert_webhooks:
        secret = settings.webhook_secret(endpoint.name)
        endpoints.append(
            WebhookEndpoint(
                name=endpoint.name,
                url=endpoint.url,
                secret=secret.get_secret_value().encode() if secret else b"",
                format=PayloadFormat(endpoint.format),
                tenant_ids=frozenset(endpoint.tenant_ids),
                min_threshold_percent=endpoint.min_threshold_percent,
            )
        )
    return endpoints


def retry_policy(settings: CostsSettings) -> RetryPolicy:
    """When deliveries are retried and given up, from the settings."""
    timeout = timedelta(seconds=settings.alert_webhook_timeout_seconds)
    return RetryPolicy(
        max_attempts=settings.alert_webhook_max_attempts,
        max_age=timedelta(seconds=settings.alert_webhook_max_age_seconds),
        initial_backoff=timedelta(
            seconds=settings.alert_webhook_initial_backoff_seconds
        ),
        max_backoff=timedelta(seconds=settings.alert_webhook_max_backoff_seconds),
        # Past the request timeout, with a minute for replicas' clocks to disagree.
        lease=timeout + timedelta(minutes=1),
    )
