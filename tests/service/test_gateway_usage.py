"""GetUsage and ``GET /v1/usage``: each key sees its own usage, and only its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import grpc
import pytest
import yaml
from google.protobuf import timestamp_pb2
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import GatewayApp
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key, key_id_of
from services.gateway.config import GatewaySettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.backends import free_port
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY, ADMIN_KEY_SHA256S, error_details

ALICE_KEY = "tg-usage-test-alice"
BOB_KEY = "tg-usage-test-bob"
ALICE_ID = key_id_of(hash_key(ALICE_KEY))
BOB_ID = key_id_of(hash_key(BOB_KEY))


@dataclass
class Suite:
    """The four services, the simulator, and what a gateway needs to reach them."""

    serve_app: ServeApp
    tmp_path: Path
    sim: RunningSimulator
    addresses: dict[str, str]

    async def gateway(self, **overrides: str) -> tuple[str, int]:
        """A gateway (gRPC address, HTTP port) over the suite, addresses overridable."""
        keys = self.tmp_path / "keys.yaml"
        entries = [
            {
                "sha256": hash_key(key),
                "tenant_id": "acme",
                "service": "chat",
                "user_id": user,
                "user_tier": "paid",
            }
            for key, user in ((ALICE_KEY, "alice"), (BOB_KEY, "bob"))
        ]
        keys.write_text(yaml.safe_dump({"keys": entries}), encoding="utf-8")
        addresses = {**self.addresses, **overrides}
        settings = GatewaySettings(
            port=0,
            http_port=0,
            http_files_dir=self.tmp_path / "files",
            ratelimit_address=addresses["ratelimit"],
            cache_address=addresses["cache"],
            router_address=addresses["router"],
            costs_address=addresses["costs"],
            keys_file=keys,
            openai_base_url=self.sim.base_url,
            outbox_path=self.tmp_path / f"outbox-{len(overrides)}.sqlite3",
            batch_store_path=self.tmp_path / f"batches-{len(overrides)}.sqlite3",
            upstream_max_retries=0,
            downstream_timeout_seconds=1.0,
            admin_key_sha256s=ADMIN_KEY_SHA256S,
        )
        running = await self.serve_app(await build_gateway(settings), settings)
        port = cast(GatewayApp, running.app).http_port
        assert port
        return running.address, port


@pytest.fixture
async def suite(serve_app: ServeApp, tmp_path: Path) -> AsyncIterator[Suite]:
    async with await start_simulator(SimulatorSettings(port=0, latency_ms=0)) as sim:
        limits = tmp_path / "limits.yaml"
        limits.write_text(
            yaml.safe_dump(
                {"tiers": {"free": {"rpm": 20}, "paid": {"rpm": 100, "tpm": 1_000_000}}}
            ),
            encoding="utf-8",
        )
        ratelimit = await serve_app(
            await build_ratelimit(RateLimitSettings(port=0, limits_file=limits))
        )
        cache = await serve_app(await build_cache(CacheSettings(port=0)))
        router = await serve_app(await build_router(RouterSettings(port=0)))
        costs_settings = CostsSettings(
            port=0,
            database_path=tmp_path / "costs.sqlite3",
            admin_key_sha256s=ADMIN_KEY_SHA256S,
        )
        costs = await serve_app(await build_costs(costs_settings), costs_settings)
        yield Suite(
            serve_app,
            tmp_path,
            sim,
            {
                "ratelimit": ratelimit.address,
                "cache": cache.address,
                "router": router.address,
                "costs": costs.address,
            },
        )


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def _ask(stub: gateway_pb2_grpc.GatewayServiceStub, key: str, text: str) -> int:
    reply: gateway_pb.CreateResponseResponse = await stub.CreateResponse(
        gateway_pb.CreateResponseRequest(input=text, cache_bypass=True),
        metadata=_auth(key),
    )
    return reply.cost_micros


async def _usage_once_booked(
    stub: gateway_pb2_grpc.GatewayServiceStub, key: str, requests: int
) -> gateway_pb.GetUsageResponse:
    """GetUsage once the ledger holds ``requests`` of the key's requests.

    Records are booked after each answer, off the response path.
    """
    usage = gateway_pb.GetUsageResponse()
    for _ in range(100):
        usage = await stub.GetUsage(gateway_pb.GetUsageRequest(), metadata=_auth(key))
        if usage.requests >= requests:
            break
        await asyncio.sleep(0.05)
    return usage


async def _set_budgets(costs_address: str) -> None:
    budgets = [
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
            ),
            period=costs_pb.BUDGET_PERIOD_MONTH,
            limit_micros=1_000_000,
            hard=True,
        ),
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_USER, tenant_id="acme", user_id="alice"
            ),
            period=costs_pb.BUDGET_PERIOD_DAY,
            limit_micros=200_000,
            hard=True,
        ),
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_KEY, tenant_id="acme", api_key_id=ALICE_ID
            ),
            period=costs_pb.BUDGET_PERIOD_MONTH,
            limit_micros=150_000,
            hard=True,
        ),
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(kind=costs_pb.SCOPE_KIND_GLOBAL),
            period=costs_pb.BUDGET_PERIOD_DAY,
            limit_micros=50_000_000,
        ),
    ]
    async with grpc.aio.insecure_channel(costs_address) as channel:
        stub = costs_pb2_grpc.CostsServiceStub(channel)
        for budget in budgets:
            await stub.SetBudget(
                costs_pb.SetBudgetRequest(budget=budget), metadata=_auth(ADMIN_KEY)
            )


async def test_each_key_sees_its_own_usage_budgets_and_headroom(suite: Suite) -> None:
    await _set_budgets(suite.addresses["costs"])
    address, _ = await suite.gateway()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        alice_costs = [
            await _ask(stub, ALICE_KEY, "What is a token bucket?"),
            await _ask(stub, ALICE_KEY, "Name three prime numbers."),
        ]
        bob_cost = await _ask(stub, BOB_KEY, "What is a circuit breaker?")
        alice = await _usage_once_booked(stub, ALICE_KEY, 2)
        bob = await _usage_once_booked(stub, BOB_KEY, 1)

    assert (alice.api_key_id, alice.tenant_id) == (ALICE_ID, "acme")
    assert (alice.requests, alice.cost_micros) == (2, sum(alice_costs))
    assert sum(line.requests for line in alice.by_model) == 2
    assert [line.requests for line in alice.by_day] == [2]
    assert sum(line.cost_micros for line in alice.by_day) == sum(alice_costs)
    assert (bob.api_key_id, bob.requests, bob.cost_micros) == (BOB_ID, 1, bob_cost)
    assert alice.start_time.ToSeconds() < alice.end_time.ToSeconds()
    assert alice.currency_code == "USD"

    # Budgets: the tenant's (both keys' spend), alice's and her key's; the operator's
    # global budget is not listed. Bob's chain has neither user nor key budget.
    tenant_spend = sum(alice_costs) + bob_cost
    assert [
        (
            gateway_pb.UsageBudgetScope.Name(b.scope),
            b.subject,
            gateway_pb.UsageBudgetPeriod.Name(b.period),
            b.spent_micros,
            b.remaining_micros,
        )
        for b in alice.budgets
    ] == [
        (
            "USAGE_BUDGET_SCOPE_TENANT",
            "acme",
            "USAGE_BUDGET_PERIOD_MONTH",
            tenant_spend,
            1_000_000 - tenant_spend,
        ),
        (
            "USAGE_BUDGET_SCOPE_USER",
            "alice",
            "USAGE_BUDGET_PERIOD_DAY",
            sum(alice_costs),
            200_000 - sum(alice_costs),
        ),
        (
            "USAGE_BUDGET_SCOPE_KEY",
            ALICE_ID,
            "USAGE_BUDGET_PERIOD_MONTH",
            sum(alice_costs),
            150_000 - sum(alice_costs),
        ),
    ]
    assert alice.budget_remaining_micros == 150_000 - sum(alice_costs)
    assert [gateway_pb.UsageBudgetScope.Name(b.scope) for b in bob.budgets] == [
        "USAGE_BUDGET_SCOPE_TENANT"
    ]
    assert bob.budget_remaining_micros == 1_000_000 - tenant_spend

    # Headroom: the key's own buckets (paid tier: 100 requests a minute).
    assert not alice.rate_headroom_unknown
    headroom = {h.metric: h for h in alice.rate_headroom}
    assert set(headroom) == {"requests", "tokens"}
    assert headroom["requests"].limit_per_minute == 100
    assert headroom["requests"].remaining < 100


async def test_a_window_before_the_requests_is_empty(suite: Suite) -> None:
    address, _ = await suite.gateway()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await _ask(stub, ALICE_KEY, "What is a token bucket?")
        await _usage_once_booked(stub, ALICE_KEY, 1)
        earlier = await stub.GetUsage(
            gateway_pb.GetUsageRequest(
                start_time=timestamp_pb2.Timestamp(seconds=1_600_000_000),
                end_time=timestamp_pb2.Timestamp(seconds=1_600_086_400),
            ),
            metadata=_auth(ALICE_KEY),
        )

    assert (earlier.requests, list(earlier.by_model)) == (0, [])
    assert earlier.start_time.seconds == 1_600_000_000
    assert not earlier.HasField("budget_remaining_micros")


async def test_bad_requests_are_refused(suite: Suite) -> None:
    address, _ = await suite.gateway()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await stub.GetUsage(gateway_pb.GetUsageRequest())
        with pytest.raises(grpc.aio.AioRpcError) as backwards:
            await stub.GetUsage(
                gateway_pb.GetUsageRequest(
                    start_time=timestamp_pb2.Timestamp(seconds=2_000_000_000),
                    end_time=timestamp_pb2.Timestamp(seconds=1_000_000_000),
                ),
                metadata=_auth(ALICE_KEY),
            )

    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(backwards.value)["google.rpc.BadRequest"]
    assert [v.field for v in violations.field_violations] == ["end_time"]


async def test_without_the_rate_limiter_the_headroom_is_unknown(suite: Suite) -> None:
    address, _ = await suite.gateway(ratelimit=f"127.0.0.1:{free_port()}")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        usage = await stub.GetUsage(
            gateway_pb.GetUsageRequest(), metadata=_auth(ALICE_KEY)
        )

    assert usage.rate_headroom_unknown
    assert list(usage.rate_headroom) == []
    assert usage.api_key_id == ALICE_ID


async def test_without_the_ledger_usage_is_unavailable(suite: Suite) -> None:
    address, _ = await suite.gateway(costs=f"127.0.0.1:{free_port()}")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetUsage(gateway_pb.GetUsageRequest(), metadata=_auth(ALICE_KEY))

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    details = error_details(error.value)
    assert details["google.rpc.ErrorInfo"].reason == "LEDGER_UNAVAILABLE"
    assert "google.rpc.RetryInfo" in details


async def test_the_http_door_answers_the_same_for_its_key(suite: Suite) -> None:
    address, http_port = await suite.gateway()
    base = f"http://127.0.0.1:{http_port}/v1"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        cost = await _ask(stub, BOB_KEY, "What is a circuit breaker?")
        await _usage_once_booked(stub, BOB_KEY, 1)

    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/usage", headers={"Authorization": f"Bearer {BOB_KEY}"}
        ) as answer:
            body: dict[str, Any] = await answer.json()
            headers = answer.headers
        async with session.get(
            f"{base}/usage",
            params={"start_time": "yesterday"},
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
        ) as bad:
            bad_status = bad.status
            bad_body = await bad.json()
        async with session.get(f"{base}/usage") as anonymous:
            anonymous_status = anonymous.status

    assert answer.status == 200
    assert (body["object"], body["api_key_id"]) == ("usage", BOB_ID)
    assert (body["requests"], body["cost_micros"]) == (1, cost)
    assert body["end_time"].endswith("Z")
    assert [line["requests"] for line in body["by_day"]] == [1]
    assert {h["metric"] for h in body["rate_headroom"]} == {"requests", "tokens"}
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert bad_status == 400
    assert bad_body["error"]["param"] == "start_time"
    assert anonymous_status == 401


async def test_an_operator_report_groups_every_keys_usage_each_way(
    suite: Suite,
) -> None:
    address, _ = await suite.gateway()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        costs = [
            await _ask(stub, ALICE_KEY, "What is a token bucket?"),
            await _ask(stub, ALICE_KEY, "Name three prime numbers."),
            await _ask(stub, BOB_KEY, "What is a circuit breaker?"),
        ]
        await _usage_once_booked(stub, ALICE_KEY, 2)
        await _usage_once_booked(stub, BOB_KEY, 1)
        reports = {
            grouping: await stub.GetUsageReport(
                gateway_pb.GetUsageReportRequest(group_by=grouping),
                metadata=_auth(ADMIN_KEY),
            )
            for grouping in (
                gateway_pb.USAGE_REPORT_GROUPING_TENANT,
                gateway_pb.USAGE_REPORT_GROUPING_API_KEY,
                gateway_pb.USAGE_REPORT_GROUPING_USER,
                gateway_pb.USAGE_REPORT_GROUPING_SERVICE,
                gateway_pb.USAGE_REPORT_GROUPING_DAY,
            )
        }
        by_model = await stub.GetUsageReport(
            gateway_pb.GetUsageReportRequest(), metadata=_auth(ADMIN_KEY)
        )
        other_tenant = await stub.GetUsageReport(
            gateway_pb.GetUsageReportRequest(tenant_id="globex"),
            metadata=_auth(ADMIN_KEY),
        )
        with pytest.raises(grpc.aio.AioRpcError) as not_admin:
            await stub.GetUsageReport(
                gateway_pb.GetUsageReportRequest(), metadata=_auth(ALICE_KEY)
            )

    def lines(
        grouping: gateway_pb.UsageReportGrouping,
    ) -> list[tuple[str, int]]:
        return [(line.key, line.requests) for line in reports[grouping].lines]

    assert lines(gateway_pb.USAGE_REPORT_GROUPING_TENANT) == [("acme", 3)]
    assert lines(gateway_pb.USAGE_REPORT_GROUPING_API_KEY) == sorted(
        [(ALICE_ID, 2), (BOB_ID, 1)]
    )
    assert lines(gateway_pb.USAGE_REPORT_GROUPING_USER) == [("alice", 2), ("bob", 1)]
    assert lines(gateway_pb.USAGE_REPORT_GROUPING_SERVICE) == [("chat", 3)]
    assert [
        line.requests for line in reports[gateway_pb.USAGE_REPORT_GROUPING_DAY].lines
    ] == [3]
    assert by_model.group_by == gateway_pb.USAGE_REPORT_GROUPING_MODEL
    assert sum(line.requests for line in by_model.lines) == 3
    assert sum(line.cost_micros for line in by_model.lines) == sum(costs)
    assert (by_model.total.key, by_model.total.requests) == ("total", 3)
    assert by_model.total.cost_micros == sum(costs)
    assert by_model.total.input_tokens == sum(
        line.input_tokens for line in by_model.lines
    )
    assert by_model.currency_code == "USD"
    assert by_model.HasField("start_time") and by_model.HasField("end_time")
    assert (list(other_tenant.lines), other_tenant.total.requests) == ([], 0)
    assert not_admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
