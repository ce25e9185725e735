"""After-the-answer reports (reconciles, outcomes) go in batches, each item applied;
and the route leases whose reuses those reports carry bind a level when they end.

Real ratelimit, cache, router, costs and gateway servers and the simulator; the
ratelimit's clock is frozen so its token buckets do not refill and the settled
amounts can be checked to the token.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.breaker import BreakerConfig
from services.core.clock import FakeClock
from services.core.metrics import REGISTRY
from services.core.server import RunningServer, start_server
from services.core.settings import ServerSettings
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key
from services.gateway.config import GatewaySettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details
from tests.logs import json_logs

API_KEY = "tg-batching-test-key"
CALLER = common_pb.Caller(
    tenant_id="acme", service="chat", user_id="alice", user_tier="paid"
)
RATELIMIT = "/tollgate.ratelimit.v1.RateLimitService/"
COSTS = "/tollgate.costs.v1.CostsService/"
ROUTER = "/tollgate.router.v1.RouterService/"


@dataclass
class Suite:
    ratelimit: RunningServer
    router: RunningServer
    cache: str
    costs: str


def _served(method: str) -> float:
    """RPCs of ``method`` served so far in this process (every code)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "tollgate_rpc_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("method") == method:
                total += sample.value
    return total


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(
        SimulatorSettings(port=0, latency_ms=0)
    ) as simulator:
        yield simulator


@pytest.fixture
async def suite(serve_app: ServeApp, tmp_path: Path) -> Suite:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        yaml.safe_dump(
            {"tiers": {"free": {"rpm": 10}, "paid": {"rpm": 1000, "tpm": 1_000_000}}}
        ),
        encoding="utf-8",
    )
    ratelimit = await serve_app(
        await build_ratelimit(
            RateLimitSettings(port=0, limits_file=limits), clock=FakeClock()
        )
    )
    router_settings = RouterSettings(port=0, admin_key_sha256s=ADMIN_KEY_SHA256S)
    router = await serve_app(await build_router(router_settings), router_settings)
    cache = await serve_app(await build_cache(CacheSettings(port=0)))
    costs = await serve_app(
        await build_costs(CostsSettings(port=0, database_path=tmp_path / "c.sqlite3"))
    )
    return Suite(ratelimit, router, cache.address, costs.address)


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def _gateway(
    suite: Suite, sim: RunningSimulator, tmp_path: Path, **overrides: Any
) -> RunningServer:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {
                        "sha256": hash_key(API_KEY),
                        "tenant_id": "acme",
                        "service": "chat",
                        "user_id": "alice",
                        "user_tier": "paid",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    settings = GatewaySettings(
        http_port=None,
        port=0,
        host="127.0.0.1",
        ratelimit_address=suite.ratelimit.address,
        cache_address=suite.cache,
        router_address=overrides.pop("router_address", suite.router.address),
        costs_address=overrides.pop("costs_address", suite.costs),
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        **overrides,
    )
    return await start_server(await build_gateway(settings), settings)


async def _ask(
    gateway: RunningServer, count: int
) -> list[gateway_pb.CreateResponseResponse]:
    """``count`` distinct requests (no cache hits), one after another."""
    answers = []
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for index in range(count):
            answers.append(
                await stub.CreateResponse(
                    gateway_pb.CreateResponseRequest(
                        input=f"Question number {index}: what does a gateway do?",
                        model="gpt-4.1-mini",
                    ),
                    metadata=(("authorization", f"Bearer {API_KEY}"),),
                )
            )
    return answers


async def _tokens_remaining(suite: Suite) -> tuple[int, int]:
    """The user's tokens bucket: (capacity, remaining)."""
    async with grpc.aio.insecure_channel(suite.ratelimit.address) as channel:
        status = await ratelimit_pb2_grpc.RateLimitServiceStub(channel).GetStatus(
            ratelimit_pb.GetStatusRequest(caller=CALLER, model="gpt-4.1-mini")
        )
    [bucket] = [
        b
        for b in status.buckets
        if b.layer == ratelimit_pb.LIMIT_LAYER_USER
        and b.metric == ratelimit_pb.LIMIT_METRIC_TOKENS
    ]
    return bucket.capacity, bucket.remaining


async def _outcomes_recorded(suite: Suite) -> int:
    async with admin_channel(suite.router.address) as channel:
        status = await router_pb2_grpc.RouterServiceStub(channel).GetDeploymentStatus(
            router_pb.GetDeploymentStatusRequest()
        )
    return sum(deployment.requests for deployment in status.deployments)


async def _routes_counted(suite: Suite) -> int:
    async with admin_channel(suite.router.address) as channel:
        stats = await router_pb2_grpc.RouterServiceStub(channel).GetRoutingStats(
            router_pb.GetRoutingStatsRequest()
        )
    return sum(count.requests for count in stats.by_tier)


async def _until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - a metric, no event to wait on
            await asyncio.sleep(0.01)


def _used(answers: list[gateway_pb.CreateResponseResponse]) -> int:
    return sum(a.usage.input_tokens + a.usage.output_tokens for a in answers)


async def test_reports_go_in_batches_and_every_item_settles_exactly(
    suite: Suite, sim: RunningSimulator, tmp_path: Path
) -> None:
    singles = _served(RATELIMIT + "Reconcile"), _served(ROUTER + "RecordOutcome")
    batches = _served(RATELIMIT + "ReconcileBatch")
    outcome_batches = _served(ROUTER + "RecordOutcomeBatch")
    before = await _outcomes_recorded(suite)
    routed_before = await _routes_counted(suite)
    # Batches go when full: six requests make two reconcile batches. The router
    # gets six outcomes and five reused routes (the first request's decision is
    # leased to the next five): three full batches, then the last two items once
    # the interval has passed.
    gateway = await _gateway(
        suite, sim, tmp_path, report_batch_interval_ms=1000, report_batch_max_items=3
    )
    try:
        answers = await _ask(gateway, 6)
        await _until(lambda: _served(RATELIMIT + "ReconcileBatch") == batches + 2)
        await _until(
            lambda: _served(ROUTER + "RecordOutcomeBatch") == outcome_batches + 3
        )
        await _until(
            lambda: _served(ROUTER + "RecordOutcomeBatch") == outcome_batches + 4
        )
        capacity, remaining = await _tokens_remaining(suite)
        recorded = await _outcomes_recorded(suite)
        routed = await _routes_counted(suite)
    finally:
        await gateway.stop(0)

    assert (_served(RATELIMIT + "Reconcile"), _served(ROUTER + "RecordOutcome")) == (
        singles
    )
    # Every reservation settled to the tokens actually used (the clock is frozen:
    # no refill), and every call reached the deployment's metrics.
    assert remaining == capacity - _used(answers)
    assert recorded - before == 6
    # One Route call, five reuses: the routing stats count all six.
    assert routed - routed_before == 6


async def test_records_and_admissions_in_flight_together_share_batches(
    suite: Suite, sim: RunningSimulator, tmp_path: Path
) -> None:
    singles, batches = _served(COSTS + "Record"), _served(COSTS + "RecordBatch")
    acquires = _served(RATELIMIT + "Acquire")
    acquire_batches = _served(RATELIMIT + "AcquireBatch")
    gateway = await _gateway(suite, sim, tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            answers = await asyncio.gather(
                *(
                    stub.CreateResponse(
                        gateway_pb.CreateResponseRequest(
                            input=f"Concurrent question {index}: what is a ledger?",
                            model="gpt-4.1-mini",
                        ),
                        metadata=(("authorization", f"Bearer {API_KEY}"),),
                    )
                    for index in range(24)
                )
            )
    finally:
        await gateway.stop(0)
    async with grpc.aio.insecure_channel(suite.costs) as channel:
        report = await costs_pb2_grpc.CostsServiceStub(channel).GetReport(
            costs_pb.GetReportRequest(tenant_id="acme")
        )

    # Every answer was booked before it was sent, each at the cost it reports...
    assert report.total_requests == 24
    assert report.total_cost_micros == sum(a.cost_micros for a in answers) > 0
    # ...by fewer calls than answers: records that finished while a batch was in
    # flight went together in the next one; none went alone as a Record.
    assert _served(COSTS + "Record") == singles
    assert 1 <= _served(COSTS + "RecordBatch") - batches < 24
    # So were their admissions: those asked for while an AcquireBatch was in
    # flight went together in the next.
    assert _served(RATELIMIT + "Acquire") == acquires
    assert 1 <= _served(RATELIMIT + "AcquireBatch") - acquire_batches < 24


async def test_an_outbox_backlog_drains_in_record_batches(
    suite: Suite, sim: RunningSimulator, tmp_path: Path
) -> None:
    # The gateway's ledger is down while it answers: every record is outboxed.
    costs_address = _unused_address()
    gateway = await _gateway(
        suite,
        sim,
        tmp_path,
        costs_address=costs_address,
        outbox_replay_interval_seconds=0.05,
        downstream_breaker=BreakerConfig(failure_threshold=1000),
    )
    try:
        answers = await _ask(gateway, 12)
        singles, batches = _served(COSTS + "Record"), _served(COSTS + "RecordBatch")
        host, port = costs_address.rsplit(":", 1)
        costs = await start_server(
            await build_costs(
                CostsSettings(port=0, database_path=tmp_path / "late.sqlite3")
            ),
            ServerSettings(host=host, port=int(port)),
        )
        try:
            # Counted once served, so both calls have committed by then.
            await _until(lambda: _served(COSTS + "RecordBatch") >= batches + 2)
            report = await _report(costs_address)
        finally:
            await costs.stop(0)
    finally:
        await gateway.stop(0)

    # Every record was booked once, at the cost its answer stated...
    assert report.total_requests == 12
    assert report.total_cost_micros == sum(a.cost_micros for a in answers) > 0
    # ...the oldest alone (the probe), the eleven others together in one call.
    assert _served(COSTS + "Record") == singles
    assert _served(COSTS + "RecordBatch") - batches == 2


async def _report(costs_address: str) -> costs_pb.GetReportResponse:
    async with grpc.aio.insecure_channel(costs_address) as channel:
        report: costs_pb.GetReportResponse = await costs_pb2_grpc.CostsServiceStub(
            channel
        ).GetReport(costs_pb.GetReportRequest(tenant_id="acme"))
    return report


async def test_stopping_the_gateway_sends_the_pending_reports(
    suite: Suite, sim: RunningSimulator, tmp_path: Path
) -> None:
    batches = _served(RATELIMIT + "ReconcileBatch")
    before = await _outcomes_recorded(suite)
    # The interval never elapses during the test: only the drain can send them.
    gateway = await _gateway(
        suite, sim, tmp_path, report_batch_interval_ms=1000, report_batch_max_items=100
    )
    answers = await _ask(gateway, 2)
    assert _served(RATELIMIT + "ReconcileBatch") == batches
    await gateway.stop(0)

    capacity, remaining = await _tokens_remaining(suite)
    assert _served(RATELIMIT + "ReconcileBatch") == batches + 1
    assert remaining == capacity - _used(answers)
    assert await _outcomes_recorded(suite) - before == 2


async def test_a_down_ratelimit_or_router_drops_the_batch_as_before(
    suite: Suite,
    sim: RunningSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with json_logs(capsys) as logs:
        # The router is down from the start: requests still get answered (the
        # gateway routes on its own); their outcomes are logged and dropped.
        gateway = await _gateway(
            suite,
            sim,
            tmp_path,
            router_address=_unused_address(),
            report_batch_interval_ms=1000,
            report_batch_max_items=100,
        )
        answers = await _ask(gateway, 2)
        # Ratelimit goes down after admitting them: the reconciles are dropped,
        # their reservations expire as estimated, and the drain does not hang.
        await suite.ratelimit.stop(0)
        async with asyncio.timeout(5):
            await gateway.stop(0)
        lines = logs.read()

    assert all(answer.output_text for answer in answers)
    skipped = [(line["event"], line.get("items")) for line in lines]
    assert skipped.count(("reconcile_skipped_ratelimit_unavailable", 2)) == 1
    assert skipped.count(("outcome_report_skipped", 2)) == 1


async def test_an_invalid_item_fails_the_batch_naming_its_index(
    suite: Suite,
) -> None:
    async with grpc.aio.insecure_channel(suite.ratelimit.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ratelimit_pb2_grpc.RateLimitServiceStub(channel).ReconcileBatch(
                ratelimit_pb.ReconcileBatchRequest(
                    items=[
                        ratelimit_pb.ReconcileRequest(
                            reservation_id="r-0", actual_tokens=1
                        ),
                        ratelimit_pb.ReconcileRequest(
                            reservation_id="", actual_tokens=-1
                        ),
                    ]
                )
            )
    async with admin_channel(suite.router.address) as channel:
        router = router_pb2_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused_outcome:
            await router.RecordOutcomeBatch(
                router_pb.RecordOutcomeBatchRequest(
                    items=[
                        router_pb.RecordOutcomeRequest(deployment="gpt-4.1-mini"),
                        router_pb.RecordOutcomeRequest(),
                    ]
                )
            )
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await router.RecordOutcomeBatch(router_pb.RecordOutcomeBatchRequest())

    def violations(error: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> list[str]:
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return [
            v.field
            for v in error_details(error.value)[
                "google.rpc.BadRequest"
            ].field_violations
        ]

    assert violations(refused) == ["items[1].reservation_id", "items[1].actual_tokens"]
    assert violations(refused_outcome) == ["items[1].deployment"]
    assert violations(empty) == ["items"]


async def test_a_level_set_on_the_router_binds_the_gateway_when_its_lease_ends(
    suite: Suite, sim: RunningSimulator, tmp_path: Path
) -> None:
    gateway = await _gateway(suite, sim, tmp_path)
    try:
        (first,) = await _ask(gateway, 1)
        started = asyncio.get_running_loop().time()
        async with admin_channel(suite.router.address) as channel:
            await router_pb2_grpc.RouterServiceStub(channel).SetDegradationLevel(
                router_pb.SetDegradationLevelRequest(
                    level=common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK, reason="drill"
                )
            )
        (leased,) = await _ask(gateway, 1)
        within_lease = asyncio.get_running_loop().time() - started < 1.0
        await asyncio.sleep(1.0)  # the router's default lease
        (after,) = await _ask(gateway, 1)
    finally:
        await gateway.stop(0)

    full = common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert first.degradation_level == full
    if within_lease:  # a slow machine may take longer than the lease
        assert leased.degradation_level == full
        assert leased.output_text.startswith("Simulated")
    assert after.degradation_level == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK
