"""Budget alerts delivered to a real HTTP receiver, on SQLite and on Postgres.

Each test starts its own receiver (aiohttp's server on a free loopback port) and
the costs service (or its ledger and dispatcher) on a real database; time is a
FakeClock, so retries come when the test moves the clock, not after sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import FakeClock
from services.core.pricing import TokenUsage, load_pricing
from services.core.server import RunningServer, start_server
from services.costs.adapters.sql import SqlLedgerStore
from services.costs.adapters.webhook_http import AiohttpWebhookSender
from services.costs.app import build_app, open_store
from services.costs.config import CostsSettings
from services.costs.domain import Caller, CostLedger, UsageRecord
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    DeliveryQuery,
    ScopeKind,
)
from services.costs.webhooks import (
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    verify_signature,
)
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789abcdef"
ACME = common_pb.Caller(tenant_id="acme", service="chat", user_id="u1")
PENDING = costs_pb.ALERT_DELIVERY_STATE_PENDING
DELIVERED = costs_pb.ALERT_DELIVERY_STATE_DELIVERED
# Retries wait 5-10 s, then 10-20 s, ...: moving the clock by the upper bound makes
# the next attempt due whatever the jitter drew.
INITIAL_BACKOFF = timedelta(seconds=10)


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers the scripted statuses in turn, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    async def handle(self, request: web.Request) -> web.Response:
        got = Received(dict(request.headers), await request.read())
        self.received.append(got)
        self.arrivals.put_nowait(got)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def next(self) -> Received:
        """The next request to arrive."""
        return await asyncio.wait_for(self.arrivals.get(), timeout=10)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/hooks"
    yield receiver
    await runner.cleanup()


@dataclass
class Backend:
    """A ledger database; ``settings`` opens it with extra settings."""

    name: str
    location: dict[str, object]

    def settings(self, **values: object) -> CostsSettings:
        return CostsSettings(**self.location, **values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", {"database_path": tmp_path / "costs.sqlite3"})
        return
    import psycopg

    base_dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield Backend(
        "postgres", {"postgres_dsn": f"{base_dsn} options='-csearch_path={schema}'"}
    )
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _service_settings(
    backend: Backend, receiver: Receiver, *endpoints: dict[str, object]
) -> CostsSettings:
    return backend.settings(
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        alert_webhooks=list(endpoints)
        or [{"name": "ops", "url": f"{receiver.url}/ops", "secret": SECRET}],
        alert_webhook_initial_backoff_seconds=INITIAL_BACKOFF.total_seconds(),
        # How often the dispatcher looks for due retries, in real time; the FakeClock
        # decides what is due.
        alert_webhook_poll_interval_seconds=0.02,
    )


@contextlib.asynccontextmanager
async def _costs_service(
    settings: CostsSettings, clock: FakeClock
) -> AsyncIterator[costs_pb2_grpc.CostsServiceStub]:
    """The costs service on a loopback port until the block ends (a restart)."""
    loopback = settings.model_copy(update={"host": "127.0.0.1", "port": 0})
    server: RunningServer = await start_server(
        await build_app(settings, clock), loopback
    )
    try:
        async with admin_channel(server.address) as channel:
            yield costs_pb2_grpc.CostsServiceStub(channel)
    finally:
        await server.stop(0)


async def _set_budget(
    stub: costs_pb2_grpc.CostsServiceStub, limit_micros: int, *thresholds: int
) -> None:
    await stub.SetBudget(
        costs_pb.SetBudgetRequest(
            budget=costs_pb.Budget(
                scope=costs_pb.BudgetScope(
                    kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
                ),
                period=costs_pb.BUDGET_PERIOD_DAY,
                limit_micros=limit_micros,
                hard=False,
                alert_thresholds_percent=thresholds,
            )
        )
    )


async def _spend(
    stub: costs_pb2_grpc.CostsServiceStub, request_id: str, dollars: int
) -> None:
    """Book ``dollars`` of gpt-4.1 input (2 micro-dollars a token)."""
    await stub.Record(
        costs_pb.RecordRequest(
            request_id=request_id,
            caller=ACME,
            model="gpt-4.1",
            deployment="blue",
            usage=common_pb.Usage(input_tokens=dollars * 500_000),
        )
    )


async def _deliveries(
    stub: costs_pb2_grpc.CostsServiceStub, endpoint: str = ""
) -> list[costs_pb.AlertDelivery]:
    answer = await stub.ListAlertDeliveries(
        costs_pb.ListAlertDeliveriesRequest(endpoint=endpoint)
    )
    return list(answer.deliveries)


async def _eventually(
    read: Callable[[], Awaitable[list[costs_pb.AlertDelivery]]],
    done: Callable[[list[costs_pb.AlertDelivery]], bool],
) -> list[costs_pb.AlertDelivery]:
    """The deliveries once ``done`` holds: the log is written after the answer."""
    async with asyncio.timeout(10):
        while True:
            deliveries = await read()
            if done(deliveries):
                return deliveries
            await asyncio.sleep(0.01)  # the dispatcher commits in the background


def _attempts_logged(count: int) -> Callable[[list[costs_pb.AlertDelivery]], bool]:
    return lambda deliveries: (
        bool(deliveries) and all(len(d.attempts) == count for d in deliveries)
    )


def _verify(received: Received, clock: FakeClock) -> str:
    """Check the signature as a receiver would (by hand); return the timestamp."""
    timestamp = received.headers["X-Tollgate-Timestamp"]
    scheme, _, digest = received.headers["X-Tollgate-Signature"].partition("=")
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert scheme == "sha256"
    assert hmac.compare_digest(digest, expected)
    assert verify_signature(
        SECRET.encode(),
        received.body,
        timestamp,
        received.headers["X-Tollgate-Signature"],
        now=clock.now(),
    )
    return timestamp


async def test_an_alert_reaches_the_receiver_signed_and_is_logged(
    backend: Backend, receiver: Receiver
) -> None:
    clock = FakeClock()
    async with _costs_service(_service_settings(backend, receiver), clock) as stub:
        await _set_budget(stub, 100_000_000, 50, 90)
        await _spend(stub, "r1", 45)
        assert receiver.received == []  # 45%: no threshold yet
        await _spend(stub, "r2", 10)

        got = await receiver.next()
        deliveries = await _eventually(
            lambda: _deliveries(stub), lambda d: d[0].state == DELIVERED
        )

    alert = deliveries[0].alert
    _verify(got, clock)
    assert got.headers["X-Tollgate-Timestamp"] == str(int(clock.now()))
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Idempotency-Key"] == f"{alert.alert_id}:ops"
    assert got.document == {
        "type": "budget_alert",
        "alert_id": alert.alert_id,
        "idempotency_key": f"{alert.alert_id}:ops",
        "scope": {
            "kind": "tenant",
            "tenant_id": "acme",
            "service": "",
            "user_id": "",
            "api_key_id": "",
        },
        "period": "day",
        "period_start": "2026-01-01T00:00:00Z",
        "threshold_percent": 50,
        "spent_micros": 55_000_000,
        "limit_micros": 100_000_000,
        "currency_code": "USD",
        "hard": False,
        "fired_at": "2026-01-01T00:00:00Z",
        "summary": "Budget alert: tenant acme reached 50% of its daily budget: "
        "$55.00 spent of $100.00 (soft limit; period from 2026-01-01 00:00 UTC).",
    }
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert (delivery.endpoint, delivery.idempotency_key) == (
        "ops",
        f"{alert.alert_id}:ops",
    )
    assert [(a.attempt, a.http_status, a.error) for a in delivery.attempts] == [
        (1, 200, "")
    ]
    assert delivery.attempts[0].attempted_at.ToDatetime() == clock_time(clock)
    assert delivery.attempts[0].latency.ToTimedelta() >= timedelta(0)
    assert delivery.finished_at.ToDatetime() == clock_time(clock)
    assert not delivery.HasField("next_attempt_at")
    assert len(receiver.received) == 1


def clock_time(clock: FakeClock) -> datetime:
    """The FakeClock's now as a naive UTC datetime, as ToDatetime() returns."""
    return datetime.fromtimestamp(clock.now(), UTC).replace(tzinfo=None)


async def test_failed_attempts_are_retried_with_the_same_key_until_delivered(
    backend: Backend, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    clock = FakeClock()
    async with _costs_service(_service_settings(backend, receiver), clock) as stub:
        await _set_budget(stub, 10_000_000, 50)
        await _spend(stub, "r1", 6)
        first = await receiver.next()
        waiting = await _eventually(lambda: _deliveries(stub), _attempts_logged(1))

        # Not due again before the backoff: nothing more arrives without the clock.
        assert waiting[0].state == PENDING
        due = waiting[0].next_attempt_at.ToDatetime()
        assert clock_time(clock) + INITIAL_BACKOFF / 2 <= due
        assert due <= clock_time(clock) + INITIAL_BACKOFF
        clock.advance(INITIAL_BACKOFF.total_seconds())
        second = await receiver.next()
        await _eventually(lambda: _deliveries(stub), _attempts_logged(2))
        clock.advance(2 * INITIAL_BACKOFF.total_seconds())
        third = await receiver.next()
        done = await _eventually(
            lambda: _deliveries(stub), lambda d: d[0].state == DELIVERED
        )

    keys = {got.headers["Idempotency-Key"] for got in (first, second, third)}
    assert keys == {f"{done[0].alert.alert_id}:ops"}
    assert [got.headers["X-Tollgate-Attempt"] for got in (first, second, third)] == [
        "1",
        "2",
        "3",
    ]
    # The same body each time; a fresh timestamp and signature on each attempt.
    assert first.body == second.body == third.body
    assert len({_verify(got, clock) for got in (first, second, third)}) == 3
    log = done[0].attempts
    assert [(a.attempt, a.http_status) for a in log] == [(1, 500), (2, 500), (3, 200)]
    assert [a.attempted_at.ToDatetime() for a in log] == sorted(
        a.attempted_at.ToDatetime() for a in log
    )
    assert len(receiver.received) == 3


async def test_slack_endpoints_get_a_text_and_filters_pick_the_alerts(
    backend: Backend, receiver: Receiver
) -> None:
    clock = FakeClock()
    settings = _service_settings(
        backend,
        receiver,
        {"name": "ops", "url": f"{receiver.url}/ops", "secret": SECRET},
        {
            "name": "slack",
            "url": f"{receiver.url}/slack",
            "format": "slack",
            "min_threshold_percent": 90,
        },
        {
            "name": "globex",
            "url": f"{receiver.url}/globex",
            "format": "slack",
            "tenant_ids": ["globex"],
        },
    )
    async with _costs_service(settings, clock) as stub:
        await _set_budget(stub, 100_000_000, 50, 90)
        await _spend(stub, "r1", 55)
        await _spend(stub, "r2", 40)
        deliveries = await _eventually(
            lambda: _deliveries(stub),
            lambda d: len(d) == 3 and all(x.state == DELIVERED for x in d),
        )
        only_slack = await _deliveries(stub, endpoint="slack")

    routed = [(d.alert.threshold_percent, d.endpoint) for d in deliveries]
    assert routed == [(50, "ops"), (90, "ops"), (90, "slack")]
    assert [d.endpoint for d in only_slack] == ["slack"]
    slack = [
        got for got in receiver.received if "X-Tollgate-Signature" not in got.headers
    ]
    assert len(slack) == 1
    assert slack[0].document == {
        "text": "Budget alert: tenant acme reached 90% of its daily budget: "
        "$95.00 spent of $100.00 (soft limit; period from 2026-01-01 00:00 UTC)."
    }
    assert len(receiver.received) == 3


async def test_a_pending_delivery_survives_a_restart_of_the_service(
    backend: Backend, receiver: Receiver
) -> None:
    receiver.statuses = [503]
    clock = FakeClock()
    settings = _service_settings(backend, receiver)
    async with _costs_service(settings, clock) as stub:
        await _set_budget(stub, 10_000_000, 50)
        await _spend(stub, "r1", 6)
        before = await receiver.next()
        await _eventually(lambda: _deliveries(stub), _attempts_logged(1))

    clock.advance(INITIAL_BACKOFF.total_seconds())
    async with _costs_service(settings, clock) as restarted:
        after = await receiver.next()
        done = await _eventually(
            lambda: _deliveries(restarted), lambda d: d[0].state == DELIVERED
        )

    assert before.headers["Idempotency-Key"] == after.headers["Idempotency-Key"]
    assert after.headers["X-Tollgate-Attempt"] == "2"
    assert [(a.attempt, a.http_status) for a in done[0].attempts] == [
        (1, 503),
        (2, 200),
    ]


async def test_an_unreachable_receiver_is_logged_without_its_url(
    backend: Backend, receiver: Receiver
) -> None:
    clock = FakeClock()
    # Port 1 on loopback: nothing listens there, the connection is refused.
    closed = "http://127.0.0.1:1/hooks/SECRETPATH"
    settings = _service_settings(
        backend, receiver, {"name": "ops", "url": closed, "secret": SECRET}
    )
    async with _costs_service(settings, clock) as stub:
        await _set_budget(stub, 10_000_000, 50)
        await _spend(stub, "r1", 6)
        deliveries = await _eventually(lambda: _deliveries(stub), _attempts_logged(1))

    attempt = deliveries[0].attempts[0]
    assert deliveries[0].state == PENDING
    assert attempt.http_status == 0
    assert attempt.error.startswith("cannot connect")
    assert "SECRETPATH" not in attempt.error
    assert "127.0.0.1" not in attempt.error


@dataclass
class Replica:
    """A ledger and its dispatcher on a shared database."""

    ledger: CostLedger
    dispatcher: WebhookDispatcher
    store: SqlLedgerStore


Open = Callable[[], Awaitable[Replica]]


@pytest.fixture
async def open_replica(
    backend: Backend, receiver: Receiver, clock: FakeClock
) -> AsyncIterator[Open]:
    opened: list[tuple[Replica, AiohttpWebhookSender]] = []
    endpoint = WebhookEndpoint("ops", f"{receiver.url}/ops", SECRET.encode())

    async def open_one() -> Replica:
        store = await open_store(backend.settings())
        sender = AiohttpWebhookSender(timeout_seconds=5)
        dispatcher = WebhookDispatcher(
            store,
            sender,
            clock,
            [endpoint],
            "USD",
            policy=RetryPolicy(lease=timedelta(seconds=60)),
            batch_size=4,
        )
        ledger = CostLedger(
            store, load_pricing(), clock, ZoneInfo("UTC"), router=dispatcher
        )
        replica = Replica(ledger, dispatcher, store)
        opened.append((replica, sender))
        return replica

    yield open_one
    for replica, sender in opened:
        await replica.ledger.close()
        await sender.close()
        await replica.store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _fire(ledger: CostLedger, tenants: int) -> None:
    """Two alerts (50% and 100%) for each of ``tenants`` tenants."""
    for index in range(tenants):
        tenant = f"tenant-{index}"
        await ledger.set_budget(
            Budget(
                BudgetScope(ScopeKind.TENANT, tenant),
                BudgetPeriod.DAY,
                12_000,
                False,
                (50, 100),
                "",
            )
        )
        for request in range(2):
            await ledger.record(
                UsageRecord(
                    request_id=f"{tenant}-{request}",
                    caller=Caller(tenant, "chat", "u1"),
                    model="gpt-4.1",
                    requested_model="",
                    deployment="blue",
                    usage=TokenUsage(1000, 0, 500),  # 6000 micro-dollars
                    batch=False,
                    cache_status=CacheStatus.MISS,
                    occurred_at=None,
                )
            )


async def test_replicas_sharing_a_ledger_deliver_each_alert_once(
    open_replica: Open, receiver: Receiver
) -> None:
    replicas = [await open_replica() for _ in range(3)]
    await _fire(replicas[0].ledger, tenants=10)

    # Every replica claims and delivers at the same time until none finds any.
    while True:
        handled = await asyncio.gather(
            *(replica.dispatcher.deliver_due() for replica in replicas)
        )
        if not any(handled):
            break

    keys = [got.headers["Idempotency-Key"] for got in receiver.received]
    deliveries = await replicas[1].dispatcher.list_deliveries(DeliveryQuery())
    assert len(keys) == len(set(keys)) == 20
    assert len(deliveries) == 20
    assert all(len(d.attempts) == 1 for d in deliveries)


async def test_a_delivery_leased_by_a_dead_replica_is_taken_over_after_its_lease(
    open_replica: Open, receiver: Receiver, clock: FakeClock
) -> None:
    first = await open_replica()
    await _fire(first.ledger, tenants=1)
    # A replica claims both deliveries, then dies before attempting them.
    now = datetime.fromtimestamp(clock.now(), UTC)
    claimed = await first.store.claim_deliveries(
        ["ops"], now, now + timedelta(seconds=60), "dead-replica", 10
    )
    survivor = await open_replica()

    assert len(claimed) == 2
    assert await survivor.dispatcher.deliver_due() == 0  # still leased
    clock.advance(60)
    assert await survivor.dispatcher.deliver_due() == 2
    assert len(receiver.received) == 2


async def test_the_delivery_log_filters_and_refuses_oversized_filters(
    backend: Backend, receiver: Receiver
) -> None:
    clock = FakeClock()
    async with _costs_service(_service_settings(backend, receiver), clock) as stub:
        await _set_budget(stub, 10_000_000, 50, 100)
        await _spend(stub, "r1", 6)
        clock.advance(60)
        await _spend(stub, "r2", 6)
        both = await _eventually(
            lambda: _deliveries(stub),
            lambda d: len(d) == 2 and all(x.state == DELIVERED for x in d),
        )
        by_id = await stub.ListAlertDeliveries(
            costs_pb.ListAlertDeliveriesRequest(alert_id=both[1].alert.alert_id)
        )
        since = await stub.ListAlertDeliveries(
            costs_pb.ListAlertDeliveriesRequest(since=both[1].alert.fired_at)
        )
        other_tenant = await stub.ListAlertDeliveries(
            costs_pb.ListAlertDeliveriesRequest(tenant_id="globex")
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListAlertDeliveries(
                costs_pb.ListAlertDeliveriesRequest(alert_id="a" * 129)
            )

    assert [d.alert.threshold_percent for d in both] == [50, 100]
    assert [d.alert.threshold_percent for d in by_id.deliveries] == [100]
    assert [d.alert.threshold_percent for d in since.deliveries] == [100]
    assert list(other_tenant.deliveries) == []
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = status_pb2.Status.FromString(
        dict(refused.value.trailing_metadata())["grpc-status-details-bin"]
    )
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["alert_id"]
