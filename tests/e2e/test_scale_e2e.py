"""The scaled topology as `tollgate dev --scale` starts it, held to docs/scaling.md.

Two gateways, two ratelimit and two costs replicas, one router and one cache, with
mutual TLS on every hop, ratelimit, router and the exact cache on one database of a
private redis-server, the ledger and the gateways' batches in one Postgres schema.
Each gateway reaches both ratelimit and both costs replicas (gRPC round robin).

Each test records its figures in FIGURES; with SCALE_E2E_FIGURES=<file> set they
are also written there as JSON (bench/scale_e2e.py turns them into
bench/results/scale_e2e.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import yaml
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.core.tls import aio_channel
from services.costs.config import CostsSettings
from services.devsuite import (
    DEFAULT_PORTS,
    DEV_TENANT,
    SCALE_PORTS,
    ScaleBackends,
    Suite,
    Supervisor,
    service_ready,
    start_suite,
)
from tests.backends import RedisServer
from tests.e2e.conftest import E2E_KEY, free_ports
from tests.grpc_helpers import error_details

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
# Reconnect quickly to a gateway that comes back.
CLIENT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
GATEWAYS = ("gateway", "gateway-2")
MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
LIMITED_USER = "scale-limited"
# Capacity 12 (burst multiplier 1.0), refilled at 0.2 requests a second.
LIMITED_RPM = 12
BUDGET_USER = "scale-budget"
BUDGET_REFRESH_SECONDS = CostsSettings().budget_refresh_seconds
BUDGET_MICROS = 1_000
SCALE_ENV = {
    "TOLLGATE_GATEWAY_OUTBOX_REPLAY_INTERVAL_SECONDS": "0.2",
    "TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__RECOVERY_TIMEOUT_SECONDS": "1",
    "TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__SUCCESS_THRESHOLD": "1",
    "TOLLGATE_GATEWAY_BATCH_POLL_INITIAL_SECONDS": "0.2",
    "TOLLGATE_GATEWAY_BATCH_POLL_MAX_SECONDS": "0.5",
    "TOLLGATE_GATEWAY_BATCH_TICK_SECONDS": "0.1",
    "TOLLGATE_SIMULATOR_BATCH_COMPLETION_SECONDS": "2",
}

FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _record_figures() -> Iterator[None]:
    yield
    print("\nscale e2e figures:", json.dumps(FIGURES, indent=2))
    target = os.environ.get("SCALE_E2E_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2), encoding="utf-8")


@pytest.fixture(scope="module")
def scaled(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    postgres_dsn: str,
) -> Iterator[Suite]:
    state = tmp_path_factory.mktemp("scale")
    limits = state / "limits.yaml"
    generous = {"rpm": 100_000, "tpm": 1_000_000_000}
    limits.write_text(
        yaml.safe_dump(
            {
                "burst_multiplier": 1.0,
                "tiers": {"free": generous, "paid": generous},
                "users": {f"{DEV_TENANT}:{LIMITED_USER}": {"rpm": LIMITED_RPM}},
                "models": dict.fromkeys(MODELS, generous),
            }
        ),
        encoding="utf-8",
    )
    names = [*DEFAULT_PORTS, *SCALE_PORTS]
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    running = start_suite(
        state / "suite",
        E2E_KEY,
        ports=dict(zip(names, free_ports(len(names)), strict=True)),
        extra_env={**SCALE_ENV, "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits)},
        base_env=clean_env,
        # The server without a database: the suite claims an empty one itself.
        scale=ScaleBackends(f"redis://127.0.0.1:{redis_server.port}", postgres_dsn),
    )
    assert running.scale is not None
    schema = running.scale.postgres_schema
    yield running
    running.stop()
    with psycopg.connect(postgres_dsn) as connection:
        left = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (schema,),
        ).fetchone()
    assert left == (0,), "stopping the suite drops its schema"


@pytest.fixture
async def gateways(
    scaled: Suite,
) -> AsyncIterator[list[gateway_pb2_grpc.GatewayServiceStub]]:
    channels = [
        aio_channel(
            f"127.0.0.1:{scaled.ports[name]}", scaled.client_tls, options=CLIENT_OPTIONS
        )
        for name in GATEWAYS
    ]
    yield [gateway_pb2_grpc.GatewayServiceStub(channel) for channel in channels]
    for channel in channels:
        await channel.close()


def _ledger(suite: Suite, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    assert suite.scale is not None
    with psycopg.connect(suite.scale.schema_dsn) as connection:
        return list(connection.execute(query, params).fetchall())


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_details(error).get("google.rpc.ErrorInfo")
    return str(info.reason) if info is not None else ""


async def _outboxes_drained(
    stubs: list[gateway_pb2_grpc.GatewayServiceStub], within: float = 30.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        depths = []
        for stub in stubs:
            try:
                status = await stub.GetStatus(
                    gateway_pb.GetStatusRequest(), metadata=AUTH, timeout=2
                )
                depths.append(status.outbox_depth)
            except grpc.aio.AioRpcError:
                depths.append(-1)
        if depths == [0] * len(stubs):
            return
        assert time.monotonic() < deadline, f"outboxes not drained: {depths}"
        await asyncio.sleep(0.2)


def _metric(suite: Suite, replica: str, pattern: str) -> float:
    """The sum of ``replica``'s samples whose line matches ``pattern`` (no value)."""
    url = f"http://127.0.0.1:{suite.ports[f'{replica}_metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = re.compile(rf"^{pattern} (\S+)$", re.MULTILINE)
    return sum(float(value) for value in samples.findall(text))


def _rpc_count(suite: Suite, replica: str, method: str) -> int:
    return int(
        _metric(
            suite,
            replica,
            rf'tollgate_rpc_requests_total\{{[^}}]*method="[^"]*{method}"[^}}]*\}}',
        )
    )


def _budgeted_scopes(suite: Suite, replicas: tuple[str, ...]) -> dict[str, float]:
    return {
        replica: _metric(suite, replica, "tollgate_costs_budgeted_scopes")
        for replica in replicas
    }


async def _budgets_known(
    suite: Suite, known_before: dict[str, float], within: float = 10.0
) -> None:
    """Wait until every costs replica knows one budgeted scope more than before."""
    deadline = time.monotonic() + within
    while any(
        known <= known_before[replica]
        for replica, known in _budgeted_scopes(suite, tuple(known_before)).items()
    ):
        assert time.monotonic() < deadline, "a costs replica never read the budget"
        await asyncio.sleep(0.1)


async def test_a_users_request_limit_holds_exactly_across_both_gateways(
    scaled: Suite, gateways: list[gateway_pb2_grpc.GatewayServiceStub]
) -> None:
    admitted = [0, 0]
    refusals: set[tuple[grpc.StatusCode, str]] = set()
    requests = 40
    started = time.monotonic()
    first_reply_at = last_sent_at = started
    for n in range(requests):
        last_sent_at = time.monotonic()
        try:
            await gateways[n % 2].CreateResponse(
                gateway_pb.CreateResponseRequest(
                    input="How does a shared token bucket refill?",
                    user_id=LIMITED_USER,
                    max_output_tokens=16,
                ),
                metadata=AUTH,
                timeout=10,
            )
            admitted[n % 2] += 1
        except grpc.aio.AioRpcError as error:
            refusals.add((error.code(), _reason(error)))
        if n == 0:
            first_reply_at = time.monotonic()
    ended = time.monotonic()

    rate = LIMITED_RPM / 60
    # Every Acquire fell between the first send and the last reply; the window
    # between the first reply and the last send surely lies within theirs.
    most = LIMITED_RPM + math.floor(rate * (ended - started))
    least = LIMITED_RPM + math.floor(rate * (last_sent_at - first_reply_at))
    FIGURES["request_limit"] = {
        "requests": requests,
        "capacity": LIMITED_RPM,
        "refill_per_second": rate,
        "seconds": round(ended - started, 2),
        "admitted": sum(admitted),
        "admitted_per_gateway": admitted,
        "allowed_least": least,
        "allowed_most": most,
    }
    assert least <= sum(admitted) <= most
    assert min(admitted) >= LIMITED_RPM // 2 - 1, "both gateways drew on one bucket"
    assert refusals == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")}


async def test_a_hard_budget_holds_across_both_costs_replicas_under_50_at_once(
    scaled: Suite, gateways: list[gateway_pb2_grpc.GatewayServiceStub]
) -> None:
    known_before = _budgeted_scopes(scaled, ("costs", "costs-2"))
    async with aio_channel(
        f"127.0.0.1:{scaled.ports['costs']}", scaled.client_tls
    ) as channel:
        await costs_pb2_grpc.CostsServiceStub(channel).SetBudget(
            costs_pb.SetBudgetRequest(
                budget=costs_pb.Budget(
                    scope=costs_pb.BudgetScope(
                        kind=costs_pb.SCOPE_KIND_USER,
                        tenant_id=DEV_TENANT,
                        user_id=BUDGET_USER,
                    ),
                    period=costs_pb.BUDGET_PERIOD_DAY,
                    limit_micros=BUDGET_MICROS,
                    hard=True,
                )
            ),
            metadata=AUTH,
            timeout=5,
        )
    # A budget set through one replica binds the other once it has read it, and the
    # gateways once the interval the ledger last gave them for an unbudgeted tenant
    # has passed: each at most TOLLGATE_COSTS_BUDGET_REFRESH_SECONDS (the default).
    await _budgets_known(scaled, known_before)
    await asyncio.sleep(BUDGET_REFRESH_SECONDS)
    checks_before = {
        r: _rpc_count(scaled, r, "CheckBudget") for r in ("costs", "costs-2")
    }

    async def one(n: int) -> gateway_pb.CreateResponseResponse | grpc.aio.AioRpcError:
        try:
            reply: gateway_pb.CreateResponseResponse = await gateways[
                n % 2
            ].CreateResponse(
                gateway_pb.CreateResponseRequest(
                    input=f"Budget question {n}: what does a ledger hold?",
                    model="gpt-4.1-mini",
                    user_id=BUDGET_USER,
                    max_output_tokens=64,
                ),
                metadata=AUTH,
                timeout=20,
            )
        except grpc.aio.AioRpcError as error:
            return error
        return reply

    outcomes = await asyncio.gather(*(one(n) for n in range(50)))
    await _outboxes_drained(gateways)

    replies = [o for o in outcomes if isinstance(o, gateway_pb.CreateResponseResponse)]
    refusals = {
        (o.code(), _reason(o)) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)
    }
    ((spent, booked),) = _ledger(
        scaled,
        "SELECT coalesce(sum(cost_micros), 0), count(*) FROM ledger_entries "
        "WHERE tenant_id = %s AND user_id = %s",
        (DEV_TENANT, BUDGET_USER),
    )
    checks = {
        r: _rpc_count(scaled, r, "CheckBudget") - before
        for r, before in checks_before.items()
    }
    FIGURES["hard_budget"] = {
        "concurrent": len(outcomes),
        "limit_micros": BUDGET_MICROS,
        "spent_micros": int(spent),
        "overshoot_micros": max(0, int(spent) - BUDGET_MICROS),
        "admitted": len(replies),
        "refused": len(outcomes) - len(replies),
        "booked": int(booked),
        "check_budget_calls_per_replica": checks,
    }
    assert spent <= BUDGET_MICROS
    assert replies, "the budget admits some"
    assert booked == len(replies)
    assert spent == sum(reply.cost_micros for reply in replies)
    assert refusals == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED")}
    assert min(checks.values()) > 0, f"both replicas decided: {checks}"


async def _until_batch(
    stub: gateway_pb2_grpc.GatewayServiceStub, batch_id: str, statuses: set[int]
) -> gateway_pb.Batch:
    for _ in range(300):
        response: gateway_pb.GetBatchResponse = await stub.GetBatch(
            gateway_pb.GetBatchRequest(batch_id=batch_id), metadata=AUTH, timeout=5
        )
        if response.batch.status in statuses:
            return response.batch
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} never reached {statuses}")


async def test_a_batch_submitted_through_one_gateway_is_served_by_the_other(
    gateways: list[gateway_pb2_grpc.GatewayServiceStub],
) -> None:
    one, other = gateways

    finished = await one.SubmitBatch(
        gateway_pb.SubmitBatchRequest(
            items=[
                gateway_pb.BatchItem(custom_id=f"item-{n}", input=f"batch question {n}")
                for n in range(3)
            ]
        ),
        metadata=AUTH,
        timeout=10,
    )
    cancelled = await one.SubmitBatch(
        gateway_pb.SubmitBatchRequest(
            items=[gateway_pb.BatchItem(custom_id="doomed", input="never mind")]
        ),
        metadata=AUTH,
        timeout=10,
    )
    cancel = await other.CancelBatch(
        gateway_pb.CancelBatchRequest(batch_id=cancelled.batch.batch_id),
        metadata=AUTH,
        timeout=10,
    )
    done = await _until_batch(
        other, finished.batch.batch_id, {gateway_pb.BATCH_STATUS_COMPLETED}
    )
    results = [
        r.custom_id
        async for r in other.ListBatchResults(
            gateway_pb.ListBatchResultsRequest(batch_id=finished.batch.batch_id),
            metadata=AUTH,
            timeout=10,
        )
    ]
    gone = await _until_batch(
        one, cancelled.batch.batch_id, {gateway_pb.BATCH_STATUS_CANCELLED}
    )

    FIGURES["batch_across_gateways"] = {
        "submitted_through": GATEWAYS[0],
        "fetched_listed_cancelled_through": GATEWAYS[1],
        "results_listed": len(results),
        "cancel_answer": gateway_pb.BatchStatus.Name(cancel.batch.status),
    }
    assert done.completed_items == 3
    assert results == ["item-0", "item-1", "item-2"]
    assert cancel.batch.status in (
        gateway_pb.BATCH_STATUS_CANCELLING,
        gateway_pb.BATCH_STATUS_CANCELLED,
    )
    assert gone.status == gateway_pb.BATCH_STATUS_CANCELLED


def _outboxed(suite: Suite) -> int:
    """Usage records the gateways have put in their outboxes so far (their logs)."""
    return sum(
        suite.processes[name]
        .log_path.read_text(encoding="utf-8")
        .count('"event": "ledger_unavailable_outboxed"')
        for name in GATEWAYS
    )


@dataclass(frozen=True)
class Sent:
    """One request of the load: which gateway, when, and how it ended."""

    gateway: int
    sent_at: float
    code: grpc.StatusCode
    reply: gateway_pb.CreateResponseResponse | None


async def _load(
    stubs: list[gateway_pb2_grpc.GatewayServiceStub],
    seconds: float,
    rate: float,
    kills: list[tuple[float, int]],
) -> list[Sent]:
    """Unique requests alternating between gateways; SIGKILL pids on schedule."""
    outcomes: list[Sent] = []

    async def one(n: int) -> None:
        sent = time.monotonic()
        try:
            reply = await stubs[n % 2].CreateResponse(
                gateway_pb.CreateResponseRequest(
                    input=f"Kill question {n}: why keep an outbox?",
                    user_id=f"kill-user-{n % 20}",
                    max_output_tokens=32,
                ),
                metadata=AUTH,
                timeout=5,
            )
            outcomes.append(Sent(n % 2, sent, grpc.StatusCode.OK, reply))
        except grpc.aio.AioRpcError as error:
            outcomes.append(Sent(n % 2, sent, error.code(), None))

    tasks = []
    start = time.monotonic()
    pending_kills = sorted(kills)
    n = 0
    while (now := time.monotonic()) < start + seconds:
        while pending_kills and now >= start + pending_kills[0][0]:
            os.kill(pending_kills.pop(0)[1], signal.SIGKILL)
        tasks.append(asyncio.create_task(one(n)))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return outcomes


async def test_kill_9_of_a_costs_replica_and_a_gateway_loses_and_doubles_no_record(
    scaled: Suite, gateways: list[gateway_pb2_grpc.GatewayServiceStub]
) -> None:
    outboxed_before = _outboxed(scaled)
    said: list[str] = []
    supervisor = Supervisor(scaled, said.append)
    stop = threading.Event()

    def supervise() -> None:
        while not stop.wait(0.2):
            supervisor.tick()

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    try:
        outcomes = await _load(
            gateways,
            seconds=8.0,
            rate=16.0,
            kills=[
                (2.0, scaled.processes["costs-2"].process.pid),
                (4.0, scaled.processes["gateway-2"].process.pid),
            ],
        )
        deadline = time.monotonic() + 60
        while not all(
            service_ready(scaled.ports[name], tls=scaled.client_tls)
            for name in ("costs-2", "gateway-2")
        ):
            assert time.monotonic() < deadline, "the supervisor brought them back"
            await asyncio.sleep(0.2)
        await _outboxes_drained(gateways)
    finally:
        stop.set()
        thread.join()

    replies = [o.reply for o in outcomes if o.reply is not None]
    failures: dict[str, int] = {}
    for o in outcomes:
        if o.reply is None:
            failures[o.code.name] = failures.get(o.code.name, 0) + 1
    booked = dict(
        _ledger(
            scaled,
            "SELECT request_id, cost_micros FROM ledger_entries "
            "WHERE tenant_id = %s AND user_id LIKE 'kill-user-%%'",
            (DEV_TENANT,),
        )
    )
    ((duplicates,),) = _ledger(
        scaled, "SELECT count(*) - count(DISTINCT request_id) FROM ledger_entries"
    )
    missing = [r.request_id for r in replies if r.request_id not in booked]
    wrong_cost = [
        r.request_id
        for r in replies
        if r.request_id in booked and booked[r.request_id] != r.cost_micros
    ]
    answered = {r.request_id for r in replies}
    FIGURES["kill_9"] = {
        "requests": len(outcomes),
        "replies": len(replies),
        "failures": failures,
        "replies_booked": len(replies) - len(missing),
        "replies_missing_from_ledger": len(missing),
        "replies_booked_at_another_cost": len(wrong_cost),
        "booked_without_reply": len(set(booked) - answered),
        "booked_twice": int(duplicates),
        "outboxed_while_a_costs_replica_died": _outboxed(scaled) - outboxed_before,
        "supervisor": said,
    }
    assert any(line.startswith("costs-2 exited with signal SIGKILL") for line in said)
    assert any(line.startswith("gateway-2 exited with signal SIGKILL") for line in said)
    assert replies
    assert missing == []
    assert wrong_cost == []
    assert duplicates == 0
    assert set(failures) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
