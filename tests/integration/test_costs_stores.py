"""The ledger's behaviour, run the same on SQLite and on Postgres.

Each test opens real stores through the service's own selection (``open_store``
with settings); "two replicas" are two ledgers on two stores sharing one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import FakeClock
from services.core.pricing import TokenUsage, load_pricing
from services.costs.alerts import AlertWatch
from services.costs.app import open_store
from services.costs.config import CostsSettings
from services.costs.domain import (
    BudgetDecision,
    BudgetRequest,
    Caller,
    CostLedger,
    UsageRecord,
)
from services.costs.ports import (
    Alert,
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    ScopeKind,
)
from tests.backends import free_port

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
ACME = Caller("acme", "chat", "u1")
USAGE = TokenUsage(1000, 0, 500)  # 6000 at gpt-4.1
# Micro-dollars per token, from default_pricing.yaml: input, cached input, output.
PRICES = {
    "gpt-4.1": (Fraction(2), Fraction(1, 2), Fraction(8)),
    "gpt-4.1-mini": (Fraction(2, 5), Fraction(1, 10), Fraction(8, 5)),
    "gpt-4.1-nano": (Fraction(1, 10), Fraction(1, 40), Fraction(2, 5)),
}


@dataclass
class Backend:
    """A ledger database: settings to open it in-process, env for a subprocess."""

    name: str
    settings: CostsSettings
    env: dict[str, str]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "costs.sqlite3")
        yield Backend(
            "sqlite",
            CostsSettings(database_path=path),
            {"TOLLGATE_COSTS_DATABASE_PATH": path},
        )
        return
    import psycopg

    base_dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    dsn = f"{base_dsn} options='-csearch_path={schema}'"
    yield Backend(
        "postgres",
        CostsSettings(postgres_dsn=dsn),
        {"TOLLGATE_COSTS_POSTGRES_DSN": dsn},
    )
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


OpenLedger = Callable[..., Awaitable[CostLedger]]


@pytest.fixture
async def open_ledger(backend: Backend) -> AsyncIterator[OpenLedger]:
    """Open ledgers (replicas) on the backend; each closed after the test."""
    opened: list[tuple[CostLedger, object]] = []

    async def open_one(clock: FakeClock | None = None, zone: str = "UTC") -> CostLedger:
        store = await open_store(backend.settings)
        ledger = CostLedger(
            store,
            load_pricing(),
            clock or FakeClock(),
            ZoneInfo(zone),
            reservation_ttl=timedelta(minutes=15),
            # As served: concurrent writes linger to share a commit.
            linger_seconds=backend.settings.batch_linger_ms / 1000,
        )
        opened.append((ledger, store))
        return ledger

    yield open_one
    for ledger, store in opened:
        await ledger.close()
        await store.close()  # type: ignore[attr-defined]


def _record(
    request_id: str,
    *,
    model: str = "gpt-4.1",
    usage: TokenUsage = USAGE,
    caller: Caller = ACME,
    batch: bool = False,
    cache_status: CacheStatus = CacheStatus.MISS,
    requested_model: str = "",
    reservation_id: str = "",
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        caller=caller,
        model=model,
        requested_model=requested_model,
        deployment="blue",
        usage=usage,
        batch=batch,
        cache_status=cache_status,
        occurred_at=None,
        reservation_id=reservation_id,
    )


def _full_price(model: str, usage: TokenUsage) -> Fraction:
    input_price, cached_price, output_price = PRICES[model]
    return (
        (usage.input_tokens - usage.cached_input_tokens) * input_price
        + usage.cached_input_tokens * cached_price
        + usage.output_tokens * output_price
    )


def _budget(scope: BudgetScope, limit_micros: int, *, hard: bool = True) -> Budget:
    return Budget(scope, BudgetPeriod.DAY, limit_micros, hard, (), "")


TENANT = BudgetScope(ScopeKind.TENANT, tenant_id="acme")


async def _drain(watch: AlertWatch) -> list[Alert]:
    """Every alert queued for a watch once the writes are done (none come later)."""
    seen: list[Alert] = []
    while True:
        try:
            seen.append(await asyncio.wait_for(watch.next(), timeout=0.05))
        except TimeoutError:
            return seen


async def test_concurrent_records_with_duplicates_are_exact_to_the_micro(
    open_ledger: OpenLedger,
) -> None:
    replicas = [await open_ledger(), await open_ledger()]
    models = list(PRICES)
    unique = [
        _record(
            f"req-{i}",
            model=models[i % 3],
            usage=TokenUsage(100 + 7 * i, i % 50, 3 * i + 1),
            caller=Caller(f"tenant-{i % 4}", f"svc-{i % 3}", f"user-{i % 11}"),
            batch=i % 5 == 0,
            cache_status=CacheStatus.EXACT if i % 9 == 0 else CacheStatus.MISS,
            requested_model="gpt-4.1" if i % 4 == 1 else "",
        )
        for i in range(1000)
    ]
    replays = unique[::10]  # 100 duplicates: 10% of the calls that book
    calls = unique + replays

    results = await asyncio.gather(
        *(replicas[i % 2].record(record) for i, record in enumerate(calls))
    )
    report = await replicas[0].report("", None, START + timedelta(days=1))

    expected_cost = expected_cache = expected_batch = expected_routing = 0
    for record in unique:
        full = math.ceil(_full_price(record.model, record.usage))
        billed = (
            math.ceil(_full_price(record.model, record.usage) / 2)
            if record.batch
            else full
        )
        if record.cache_status.is_hit:
            expected_cache += billed
            continue
        expected_cost += billed
        expected_batch += full - billed
        if record.requested_model and record.requested_model != record.model:
            requested = _full_price(record.requested_model, record.usage)
            requested_billed = math.ceil(requested / 2 if record.batch else requested)
            expected_routing += max(0, requested_billed - billed)
    summary = report.summary
    assert sum(result.duplicate for result in results) == 100
    assert [r.cost_micros for r in results[1000:]] == [
        r.cost_micros for r in results[:1000:10]
    ]
    assert summary.requests == 1000
    assert summary.cost_micros == expected_cost
    assert summary.cache_saved_micros == expected_cache
    assert summary.batch_saved_micros == expected_batch
    assert summary.routing_saved_micros == expected_routing
    assert sum(line.cost_micros for line in summary.by_tenant) == expected_cost
    assert sum(line.requests for line in summary.by_user) == 1000


async def test_concurrent_checks_cannot_overspend_the_chain_of_hard_budgets(
    open_ledger: OpenLedger,
) -> None:
    replicas = [await open_ledger(), await open_ledger()]
    u1, u2 = ACME, Caller("acme", "chat", "u2")
    await replicas[0].set_budget(_budget(TENANT, 90_000))
    for caller, limit in ((u1, 24_000), (u2, 60_000)):
        scope = BudgetScope(ScopeKind.USER, tenant_id="acme", user_id=caller.user_id)
        await replicas[0].set_budget(_budget(scope, limit))
    await replicas[0].record(_record("spent", caller=Caller("acme", "chat", "u3")))
    # 200 checks of 6000 each, callers and replicas interleaved.
    calls = [(replicas[i % 2], u1 if i % 4 < 2 else u2) for i in range(200)]

    verdicts = await asyncio.gather(
        *(
            replica.check_budget(BudgetRequest(f"c{i}", caller, "gpt-4.1", 1000, 500))
            for i, (replica, caller) in enumerate(calls)
        )
    )

    allowed = [
        (replica, caller, verdict)
        for (replica, caller), verdict in zip(calls, verdicts, strict=True)
        if verdict.decision is BudgetDecision.ALLOW
    ]
    # Each user's budget binds (4 and 10), and the tenant's 84 000 left fit 14:
    # whatever the order, one more grant anywhere would overspend a budget.
    assert sum(caller is u1 for _, caller, _ in allowed) == 4
    assert sum(caller is u2 for _, caller, _ in allowed) == 10
    assert len({verdict.reservation_id for _, _, verdict in allowed}) == 14
    assert sum(v.decision is BudgetDecision.DENY for v in verdicts) == 186

    # Settling at actual cost (2800 each) frees the difference at once.
    await asyncio.gather(
        *(
            replica.record(
                _record(
                    f"done-{i}",
                    usage=TokenUsage(1000, 0, 100),
                    caller=caller,
                    reservation_id=verdict.reservation_id,
                )
            )
            for i, (replica, caller, verdict) in enumerate(allowed)
        )
    )
    after = await replicas[1].check_budget(
        BudgetRequest("next", u2, "gpt-4.1", 1000, 500)
    )
    assert after.decision is BudgetDecision.ALLOW
    # u2's budget is now the tightest: 60 000 - 10 x 2800 - 6000.
    assert after.remaining_micros == 26_000


async def _collect(watch: AlertWatch, count: int) -> list[Alert]:
    """The next ``count`` alerts of a watch, then whatever else arrives soon after."""
    seen: list[Alert] = []
    async with asyncio.timeout(10):
        while len(seen) < count:
            seen.append(await watch.next())
    return seen + await _drain(watch)


@contextlib.asynccontextmanager
async def _following(*ledgers: CostLedger) -> AsyncIterator[None]:
    """Each ledger follows the alerts the others fire, as the service does."""
    tasks = [asyncio.create_task(ledger.follow_alerts(0.05)) for ledger in ledgers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_each_threshold_alert_fires_once_and_reaches_every_watcher_once(
    open_ledger: OpenLedger, backend: Backend
) -> None:
    a, b = await open_ledger(), await open_ledger()
    await a.set_budget(_budget(TENANT, 100_000, hard=False))
    async with _following(a, b):
        with (
            a.watch_alerts("") as wa1,
            a.watch_alerts("acme") as wa2,
            b.watch_alerts("") as wb,
            b.watch_alerts("other-tenant") as elsewhere,
        ):
            await asyncio.gather(
                *(
                    (a if i % 3 else b).record(
                        _record(f"r{i}", usage=output_tokens_usage(i))
                    )
                    for i in range(60)
                )
            )
            from_a, also_from_a, from_b = (
                await _collect(wa1, 4),
                await _collect(wa2, 4),
                await _collect(wb, 4),
            )
            assert await _drain(elsewhere) == []

    listed = await a.list_alerts("acme", None)
    assert sorted(alert.threshold_percent for alert in listed) == [50, 75, 90, 100]

    def by_threshold(alerts: list[Alert]) -> list[Alert]:
        return sorted(alerts, key=lambda alert: alert.threshold_percent)

    # Every watcher of both replicas got each alert once, wherever it fired.
    assert by_threshold(from_a) == by_threshold(also_from_a) == by_threshold(listed)
    assert by_threshold(from_b) == by_threshold(listed)

    # A restart fires nothing again in the same period.
    restarted = await open_ledger()
    await restarted.record(_record("after-restart"))
    assert await restarted.list_alerts("", None) == listed


def output_tokens_usage(i: int) -> TokenUsage:
    """6000 micro-dollars at gpt-4.1 each, in varied token mixes."""
    return TokenUsage(1000 + 4 * (i % 2), 0, 500 - (i % 2))


async def test_day_rolls_over_at_local_midnight_for_budgets_alerts_and_reports(
    open_ledger: OpenLedger,
) -> None:
    clock = FakeClock()
    ledger = await open_ledger(clock, "America/Los_Angeles")  # UTC-8 in January
    await ledger.set_budget(_budget(TENANT, 10_000))
    clock.advance(7.5 * 3600)  # 07:30 UTC = 23:30 on 2025-12-31 in Los Angeles
    await ledger.record(_record("late"))  # 6000: 50%
    denied = await ledger.check_budget(BudgetRequest("c1", ACME, "gpt-4.1", 1000, 500))

    clock.advance(1800)  # midnight in Los Angeles: a new day, a new budget period
    allowed = await ledger.check_budget(BudgetRequest("c2", ACME, "gpt-4.1", 1000, 500))
    await ledger.record(_record("early", reservation_id=allowed.reservation_id))
    clock.advance(1)  # a report ends before "now"
    report = await ledger.report("", None, None)
    alerts = await ledger.list_alerts("", None)

    midnight = START + timedelta(hours=8)
    assert denied.decision is BudgetDecision.DENY
    assert denied.resets_at == midnight
    assert allowed.decision is BudgetDecision.ALLOW
    assert [(line.key, line.cost_micros) for line in report.summary.by_day] == [
        ("2025-12-31", 6000),
        ("2026-01-01", 6000),
    ]
    assert [(a.threshold_percent, a.period_start) for a in alerts] == [
        (50, midnight - timedelta(days=1)),
        (50, midnight),
    ]


async def test_a_restart_keeps_entries_budgets_and_reservations(
    open_ledger: OpenLedger,
) -> None:
    clock = FakeClock()
    first = await open_ledger(clock)
    await first.set_budget(_budget(TENANT, 10_000))
    await first.record(_record("r1", usage=TokenUsage(500, 0, 250)))  # 3000
    held = await first.check_budget(BudgetRequest("c1", ACME, "gpt-4.1", 1000, 500))
    await first.close()

    second = await open_ledger(clock)
    denied = await second.check_budget(BudgetRequest("c2", ACME, "gpt-4.1", 500, 250))
    replay = await second.record(_record("r1", usage=TokenUsage(9, 9, 9)))
    settled = await second.record(_record("r2", reservation_id=held.reservation_id))

    assert held.decision is BudgetDecision.ALLOW
    assert denied.decision is BudgetDecision.DENY  # 3000 + 6000 held + 3000
    assert (replay.duplicate, replay.cost_micros) == (True, 3000)
    assert settled.reservation_settled


def _spawn(backend: Backend, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env |= backend.env | {"TOLLGATE_COSTS_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "services.costs", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _serve(backend: Backend, port: int) -> subprocess.Popen[bytes]:
    """Run the costs service as its own process; return once it is SERVING."""
    process = _spawn(backend, port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return process
            except grpc.aio.AioRpcError:
                pass
            assert process.poll() is None, "the costs service exited"
            await asyncio.sleep(0.1)  # waiting for a real process to start
    process.kill()
    raise TimeoutError("the costs service did not become SERVING")


def _wire_record(request_id: str) -> costs_pb.RecordRequest:
    return costs_pb.RecordRequest(
        request_id=request_id,
        caller=common_pb.Caller(tenant_id="acme", service="chat", user_id="u1"),
        model="gpt-4.1-mini",
        deployment="blue",
        usage=common_pb.Usage(input_tokens=1000, output_tokens=500),
    )


async def test_kill_9_during_writes_loses_no_acknowledged_record(
    backend: Backend,
) -> None:
    port = free_port()
    process = await _serve(backend, port)
    acknowledged: list[str] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = costs_pb2_grpc.CostsServiceStub(channel)

            async def writer(worker: int) -> None:
                for n in range(100_000):
                    request_id = f"w{worker}-{n}"
                    try:
                        await stub.Record(_wire_record(request_id), timeout=10)
                    except grpc.aio.AioRpcError:
                        return
                    acknowledged.append(request_id)

            writers = [asyncio.create_task(writer(w)) for w in range(16)]
            while len(acknowledged) < 400:
                assert not all(w.done() for w in writers)
                await asyncio.sleep(0.005)  # let the writers run against the process
            process.send_signal(signal.SIGKILL)
            await asyncio.gather(*writers)
    finally:
        process.kill()
        process.wait()

    restarted = await _serve(backend, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = costs_pb2_grpc.CostsServiceStub(channel)
            replays = await asyncio.gather(
                *(stub.Record(_wire_record(rid)) for rid in acknowledged)
            )
            report = await stub.GetReport(costs_pb.GetReportRequest())
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait()

    assert len(acknowledged) >= 400
    assert all(replay.duplicate for replay in replays)
    assert report.total_requests >= len(acknowledged)
    assert report.total_cost_micros == report.total_requests * 1200
