"""Wiring of the gateway: settings to clients, orchestrator and servicer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import openai
import structlog
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.core import metrics
from services.core.breaker import CircuitBreaker
from services.core.clock import Clock, SystemClock
from services.core.context import new_request_id
from services.core.pricing import load_pricing
from services.core.prompt_tokens import count_prompt
from services.core.server import ServiceApp
from services.gateway.adapters.batch_store import SqliteBatchStore
from services.gateway.adapters.batch_store_sql import SqlBatchStore
from services.gateway.adapters.input_files import DirectoryInputFiles
from services.gateway.adapters.key_store import (
    SqlKeyStore,
    open_postgres_key_store,
    open_sqlite_key_store,
)
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.auth import ApiKeyStore
from services.gateway.batches import BatchConfig, BatchItemRequest, BatchService
from services.gateway.budget_estimate import EstimatingLedger
from services.gateway.clients import (
    CacheClient,
    CostsClient,
    DownstreamClient,
    KeyBudgetClient,
    RateLimitClient,
    RouterClient,
)
from services.gateway.config import GatewaySettings
from services.gateway.domain import Principal, Priority, ResponseRequest
from services.gateway.fallbacks import LocalLimiter, local_route
from services.gateway.http.batches import FilesAndBatches
from services.gateway.http.embeddings import Embeddings
from services.gateway.http.server import HttpDoor
from services.gateway.http.usage import UsageRoute
from services.gateway.keys import KeyService
from services.gateway.orchestrator import FlowConfig, Orchestrator
from services.gateway.ports import DependencyUnavailableError
from services.gateway.queue import AdmissionQueue
from services.gateway.servicer import GatewayServicer
from services.gateway.upstream import OpenAIUpstream
from services.gateway.usage import UsageReader

_log = structlog.get_logger("tollgate.gateway")

SERVICE_NAME = gateway_pb.DESCRIPTOR.services_by_name["GatewayService"].full_name


@dataclass
class GatewayApp(ServiceApp):
    """The gateway's ServiceApp, with its OpenAI-compatible HTTP door (if on)."""

    http_door: HttpDoor | None = None
    counts_tokens: bool = True

    @property
    def http_port(self) -> int | None:
        """The HTTP door's bound port once started; None without a door."""
        return None if self.http_door is None else self.http_door.port


def http_ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """The HTTP door's TLS: the same certificate (and client CA) as the gRPC port."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def build_app(
    settings: GatewaySettings,
    clock: Clock | None = None,
    channels: Mapping[str, grpc.aio.Channel] | None = None,
) -> GatewayApp:
    """Build the gateway from its settings.

    ``channels`` maps downstream names ("ratelimit", "cache", "router", "costs") to
    channels used instead of dialling their addresses: ``tollgate serve all`` passes
    in-process ones.
    """
    clock = clock or SystemClock()
    channels = channels or {}
    file_keys = ApiKeyStore.load(settings.keys_file)

    downstream_tls = settings.downstream_tls()
    # The gateway's service identity towards the four, when a token secret is set
    # (with mutual TLS its certificate proves it already).
    signer = settings.service_token_signer(clock)

    def downstream(
        name: str, address: str, renames: dict[str, str] | None = None
    ) -> DownstreamClient:
        return DownstreamClient(
            name,
            address,
            CircuitBreaker(name, settings.downstream_breaker, clock),
            settings.downstream_timeout_seconds,
            renames,
            channels.get(name),
            downstream_tls,
            signer,
        )

    downstreams = [
        downstream("ratelimit", settings.ratelimit_address),
        downstream("cache", settings.cache_address),
        downstream("router", settings.router_address, {"requested_model": "model"}),
        downstream("costs", settings.costs_address),
    ]
    ratelimit, cache, router, costs = downstreams
    openai_client = openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=0,
        # aiohttp under the SDK: less CPU per call than its default transport
        # (docs/performance.md).
        http_client=openai.DefaultAioHttpClient(),
    )
    upstream = OpenAIUpstream(
        openai_client, max_retries=settings.upstream_max_retries, clock=clock
    )
    outbox = SqliteOutbox(settings.outbox_path)
    router_client = RouterClient(
        router,
        settings.router_admin_key.get_secret_value()
        if settings.router_admin_key
        else "",
    )
    costs_client = CostsClient(costs)
    pricing = load_pricing(settings.pricing_file)
    # Budget checks go on from the local spend estimate while costs is down.
    ledger = EstimatingLedger(costs_client, pricing, clock)
    key_store = await asyncio.to_thread(open_key_store, settings)
    keys = KeyService(
        key_store,
        file_keys,
        clock,
        KeyBudgetClient(
            costs, settings.costs_admin_key.get_secret_value(), ledger.budget_set
        )
        if settings.costs_admin_key is not None
        else None,
    )
    await keys.refresh()

    async def choose_batch_model(principal: Principal, item: BatchItemRequest) -> str:
        request = ResponseRequest(
            prompt=item.prompt,
            model=item.model,
            priority=Priority.BATCH,
            request_type=item.request_type,
            max_output_tokens=item.max_output_tokens,
            temperature=item.temperature,
            user_id="",
            metadata={},
            cache_bypass=True,
        )
        try:
            route = await router_client.route(
                new_request_id(),
                principal,
                request,
                count_prompt(item.prompt).conversation,
            )
        except DependencyUnavailableError:
            route = local_route(
                Priority.BATCH, item.request_type, item.model, item.max_output_tokens
            )
        return route.model

    batch_store = await asyncio.to_thread(open_batch_store, settings)
    batches = BatchService(
        store=batch_store,
        client=openai_client,
        ledger=costs_client,
        clock=clock,
        config=BatchConfig(
            poll_initial_seconds=settings.batch_poll_initial_seconds,
            poll_max_seconds=settings.batch_poll_max_seconds,
            tick_seconds=settings.batch_tick_seconds,
            request_timeout_seconds=settings.batch_request_timeout_seconds,
            lease_seconds=settings.batch_lease_seconds,
        ),
        choose_model=choose_batch_model,
        # Unique per process, and readable in the store: which replica holds what.
        owner=f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}",
    )
    # In one process (tollgate serve all) an admission is no RPC: a batch would
    # save nothing and cost its task (docs/performance.md, AcquireBatch).
    ratelimit_client = RateLimitClient(
        ratelimit, batch_admissions="ratelimit" not in channels
    )
    usage_reader = UsageReader(costs_client, ratelimit_client)
    local_limiter = LocalLimiter(settings.local_limit_rpm_per_user, clock)
    orchestrator = Orchestrator(
        ratelimit=ratelimit_client,
        cache=CacheClient(cache),
        router=router_client,
        ledger=ledger,
        upstream=upstream,
        outbox=outbox,
        tickets=batches,
        local_limiter=local_limiter,
        prices=pricing,
        queue=AdmissionQueue(
            max_concurrency=settings.upstream_max_concurrency,
            max_depth=settings.queue_max_depth,
            aging_seconds=settings.queue_aging_seconds,
            clock=clock,
        ),
        downstream_breakers=[d.breaker for d in downstreams],
        config=FlowConfig(
            ratelimit_fail_open=settings.ratelimit_failure_mode == "open",
            upstream_timeout_seconds=settings.upstream_timeout_seconds,
            upstream_breaker=settings.upstream_breaker,
            report_batch_interval_seconds=settings.report_batch_interval_ms / 1000,
            report_batch_max_items=settings.report_batch_max_items,
            auto_degradation_hold_seconds=(
                settings.auto_degradation_hold_seconds
                if settings.router_admin_key is not None
                else 0.0
            ),
        ),
        clock=clock,
    )
    door: HttpDoor | None = None
    if settings.http_port is not None:
        door = HttpDoor(
            keys=keys,
            orchestrator=orchestrator,
            models=sorted(pricing.models),
            extensions=[
                FilesAndBatches(
                    batches,
                    # Shared by the replicas with the batches, or beside this one.
                    batch_store
                    if settings.postgres_dsn is not None
                    else DirectoryInputFiles(settings.http_files_dir),
                ),
                Embeddings(
                    client=openai_client,
                    admission=orchestrator.admission,
                    ratelimit=ratelimit_client,
                    ledger=ledger,
                    outbox=outbox,
                    clock=clock,
                    timeout_seconds=settings.upstream_timeout_seconds,
                ),
                UsageRoute(usage_reader),
            ],
        )
    background: list[asyncio.Task[None]] = []

    async def replay_forever() -> None:
        while True:
            await asyncio.sleep(settings.outbox_replay_interval_seconds)
            try:
                await orchestrator.replay_outbox()
            except Exception as error:  # the loop must outlive one bad round
                _log.error("outbox_replay_failed", error_type=type(error).__name__)

    async def on_start() -> None:
        metrics.on_scrape(orchestrator.export_metrics)
        background.append(asyncio.create_task(replay_forever()))
        background.append(asyncio.create_task(batches.run()))
        background.append(asyncio.create_task(refresh_keys_forever()))
        if door is not None and settings.http_port is not None:
            await door.start(
                settings.host,
                settings.http_port,
                http_ssl_context(settings),
                reuse_port=settings.reuse_port,
            )

    async def on_stop() -> None:
        if door is not None:
            await door.stop()
        await stop_rest()

    async def stop_rest() -> None:
        metrics.off_scrape(orchestrator.export_metrics)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await orchestrator.drain_background()
        await drain_outbox()
        for client in downstreams:
            await client.close()
        await upstream.close()
        outbox.close()
        batch_store.close()
        key_store.close()

    async def drain_outbox() -> None:
        # Hand the ledger what it could not take before, while it is still dialled;
        # what it cannot take now stays in the file for the next start.
        try:
            async with asyncio.timeout(settings.outbox_drain_seconds):
                while await orchestrator.replay_outbox():
                    pass
        except TimeoutError:
            pass
        except Exception as error:  # shutdown goes on; the records stay durable
            _log.error("outbox_drain_failed", error_type=type(error).__name__)
        with contextlib.suppress(Exception):
            _log.info("outbox_drained", remaining=await orchestrator.outbox_depth())

    async def refresh_keys_forever() -> None:
        # Keys made, revoked or rotated on other replicas take effect here within
        # one poll; a poll that finds nothing changed reads one row.
        while True:
            await asyncio.sleep(settings.key_refresh_seconds)
            try:
                await keys.refresh()
            except Exception as error:  # keep serving the last index; retry
                _log.warning("key_refresh_failed", error_type=type(error).__name__)

    async def outbox_healthy() -> bool:
        await orchestrator.outbox_depth()
        return True

    def register(server: object) -> None:
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
            GatewayServicer(
                keys,
                orchestrator,
                batches,
                usage=usage_reader,
                key_admin=keys,
            ),
            server,
        )

    return GatewayApp(
        name="gateway",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks={"outbox": outbox_healthy},
        on_start=on_start,
        on_stop=on_stop,
        access_log=True,
        admin_methods=frozenset(
            f"/{SERVICE_NAME}/{rpc}"
            for rpc in (
                "CreateKey",
                "ListKeys",
                "RevokeKey",
                "RotateKey",
                "GetUsageReport",
            )
        ),
        http_door=door,
    )


def open_batch_store(settings: GatewaySettings) -> SqlBatchStore:
    """The batch store the settings select: Postgres if a DSN is set, else SQLite.

    Blocks until the store's schema exists: call it from a thread in async code.

    Raises:
        BackendUnavailableError: the database cannot be reached or prepared.
    """
    if settings.postgres_dsn is not None:
        # Imported only when selected: psycopg is an optional dependency, and the
        # embedded default needs nothing beyond the standard library.
        from services.gateway.adapters.batch_store_postgres import (
            open_postgres_batch_store,
        )

        return open_postgres_batch_store(
            settings.postgres_dsn.get_secret_value(),
            schema=settings.postgres_schema,
            pool_size=settings.postgres_pool_size,
        )
    return SqliteBatchStore(settings.batch_store_path)


def open_key_store(settings: GatewaySettings) -> SqlKeyStore:
    """The API key store: Postgres (beside the batches) if a DSN is set, else SQLite.

    Blocks until the store's tables exist: call it from a thread in async code.

    Raises:
        BackendUnavailableError: the database cannot be reached or prepared.
    """
    if settings.postgres_dsn is not None:
        return open_postgres_key_store(
            settings.postgres_dsn.get_secret_value(), schema=settings.postgres_schema
        )
    return open_sqlite_key_store(settings.key_store_path)
