"""The Prometheus endpoint of real served services, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.breaker import BreakerConfig
from services.core.server import RunningServer
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
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

METRICS_ON = ServerSettings(metrics_port=0)
ACQUIRE = "/tollgate.ratelimit.v1.RateLimitService/Acquire"
CREATE = "/tollgate.gateway.v1.GatewayService/CreateResponse"
API_KEY = "tg-metrics-test-key"
# Identifiers that must never show up in metrics, as labels or values.
TENANT, USER = "tenant-metrics-acme", "user-metrics-alice"
FORBIDDEN_LABELS = {"tenant", "tenant_id", "user", "user_id", "key", "request_id"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraper:
    """Scrapes one endpoint and keeps the text for inspection."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._url = f"http://127.0.0.1:{port}/metrics"
        self.text = ""

    async def scrape(self) -> Samples:
        async with self._session.get(self._url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            self.text = await response.text()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
        }

    def assert_no_caller_identities(self) -> None:
        assert TENANT not in self.text
        assert USER not in self.text
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                assert not set(sample.labels) & FORBIDDEN_LABELS, sample


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _metrics_port(server: RunningServer) -> int:
    assert server.metrics_port is not None
    return server.metrics_port


async def test_no_endpoint_unless_a_metrics_port_is_set(serve_app: ServeApp) -> None:
    running = await serve_app(await build_ratelimit(RateLimitSettings()))

    assert running.metrics_port is None


async def test_rpcs_and_limiter_decisions_are_counted_by_method_code_and_layer(
    serve_app: ServeApp, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        yaml.safe_dump({"tiers": {"free": {"rpm": 20}, "trial": {"rpm": 1}}}), "utf-8"
    )
    running = await serve_app(
        await build_ratelimit(RateLimitSettings(limits_file=limits)), METRICS_ON
    )
    scraper = Scraper(http, _metrics_port(running))
    caller = common_pb.Caller(tenant_id=TENANT, user_id=USER, user_tier="trial")
    acquire = ratelimit_pb.AcquireRequest(caller=caller, model="gpt-4.1-mini")
    before = await scraper.scrape()

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        allowed = await stub.Acquire(acquire)
        denied = await stub.Acquire(acquire)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Acquire(ratelimit_pb.AcquireRequest())
    after = await scraper.scrape()

    assert allowed.decision == ratelimit_pb.DECISION_ALLOW
    assert denied.decision == ratelimit_pb.DECISION_DENY

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    rpc = {"service": "ratelimit", "method": ACQUIRE}
    assert delta("tollgate_rpc_requests_total", **rpc, code="OK") == 2
    assert delta("tollgate_rpc_requests_total", **rpc, code="INVALID_ARGUMENT") == 1
    assert delta("tollgate_rpc_duration_seconds_count", **rpc, code="OK") == 2
    assert (
        delta("tollgate_rpc_duration_seconds_bucket", **rpc, code="OK", le="+Inf") == 2
    )
    assert delta("tollgate_rpc_duration_seconds_sum", **rpc, code="OK") > 0
    decisions = "tollgate_ratelimit_decisions_total"
    assert (
        delta(decisions, api="acquire", decision="allow", layer="none", metric="none")
        == 1
    )
    assert (
        delta(
            decisions, api="acquire", decision="deny", layer="user", metric="requests"
        )
        == 1
    )
    assert _value(after, "tollgate_ratelimit_degraded") == 0
    scraper.assert_no_caller_identities()


async def test_routes_are_counted_by_tier_complexity_and_lane(
    serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    running = await serve_app(await build_router(RouterSettings()), METRICS_ON)
    scraper = Scraper(http, _metrics_port(running))
    labels = {"tier": "economy", "complexity": "trivial", "lane": "sync"}
    before = await scraper.scrape()

    async with grpc.aio.insecure_channel(running.address) as channel:
        response = await router_pb2_grpc.RouterServiceStub(channel).Route(
            router_pb.RouteRequest(
                request_id="req_metrics_1",
                caller=common_pb.Caller(tenant_id=TENANT, user_id=USER),
                requested_model="auto",
                input="hi",
                input_tokens=1,
            )
        )
    after = await scraper.scrape()

    assert (response.tier, response.complexity) == (
        "economy",
        router_pb.COMPLEXITY_TRIVIAL,
    )
    routes = "tollgate_router_routes_total"
    assert _value(after, routes, **labels) - _value(before, routes, **labels) == 1
    # The distilled student was sure of "hi": the encoder did not run.
    by_student = {"classifier": "student"}
    classified = "tollgate_router_classifications_total"
    assert (
        _value(after, classified, **by_student)
        - _value(before, classified, **by_student)
        == 1
    )
    assert _value(after, "tollgate_router_degradation_level") == 0
    scraper.assert_no_caller_identities()


async def test_spend_and_savings_are_counted_once_per_request_id(
    serve_app: ServeApp, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    running = await serve_app(
        await build_costs(CostsSettings(database_path=tmp_path / "costs.sqlite3")),
        METRICS_ON,
    )
    scraper = Scraper(http, _metrics_port(running))

    def record(
        request_id: str, status: common_pb.CacheStatus
    ) -> costs_pb.RecordRequest:
        return costs_pb.RecordRequest(
            request_id=request_id,
            caller=common_pb.Caller(tenant_id=TENANT, user_id=USER),
            model="gpt-4.1",
            usage=common_pb.Usage(input_tokens=1000, output_tokens=500),
            cache_status=status,
        )

    before = await scraper.scrape()
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = costs_pb2_grpc.CostsServiceStub(channel)
        booked = await stub.Record(record("req-metrics-1", common_pb.CACHE_STATUS_MISS))
        replay = await stub.Record(record("req-metrics-1", common_pb.CACHE_STATUS_MISS))
        hit = await stub.Record(record("req-metrics-2", common_pb.CACHE_STATUS_EXACT))
    after = await scraper.scrape()

    assert replay.duplicate
    assert booked.cost_micros > 0
    assert hit.saved_micros > 0

    def delta(name: str) -> float:
        return _value(after, name, model="gpt-4.1") - _value(
            before, name, model="gpt-4.1"
        )

    assert delta("tollgate_costs_spend_micros_total") == booked.cost_micros
    assert delta("tollgate_costs_saved_micros_total") == hit.saved_micros
    scraper.assert_no_caller_identities()


async def test_budget_checks_are_counted_by_what_decided_them(
    serve_app: ServeApp, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    settings = CostsSettings(
        database_path=tmp_path / "costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        budget_refresh_seconds=0.05,
        metrics_port=0,
    )
    running = await serve_app(await build_costs(settings), settings)
    scraper = Scraper(http, _metrics_port(running))
    checks = "tollgate_costs_budget_checks_total"

    def check(user_id: str) -> costs_pb.CheckBudgetRequest:
        return costs_pb.CheckBudgetRequest(
            request_id=f"check-{user_id}",
            caller=common_pb.Caller(tenant_id=TENANT, user_id=user_id),
            model="gpt-4.1",
            input_tokens=1000,
            max_output_tokens=500,
        )

    async with admin_channel(running.address) as channel:
        stub = costs_pb2_grpc.CostsServiceStub(channel)
        await stub.SetBudget(
            costs_pb.SetBudgetRequest(
                budget=costs_pb.Budget(
                    scope=costs_pb.BudgetScope(
                        kind=costs_pb.SCOPE_KIND_USER, tenant_id=TENANT, user_id=USER
                    ),
                    period=costs_pb.BUDGET_PERIOD_DAY,
                    limit_micros=1_000_000,
                    hard=True,
                )
            )
        )
        # The first read of the budgeted scopes lands within a refresh or two.
        for _ in range(100):
            before = await scraper.scrape()
            unbudgeted = await stub.CheckBudget(check("someone-else"))
            after = await scraper.scrape()
            if _value(after, checks, decided_by="no_budget") > _value(
                before, checks, decided_by="no_budget"
            ):
                break
            await asyncio.sleep(0.05)
        budgeted = await stub.CheckBudget(check(USER))
        last = await scraper.scrape()

    assert (
        _value(after, checks, decided_by="no_budget")
        == _value(before, checks, decided_by="no_budget") + 1
    ), "a caller without a budget was never decided without the ledger"
    assert unbudgeted.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert unbudgeted.reservation_id == ""
    assert budgeted.reservation_id != ""
    assert (
        _value(last, checks, decided_by="store")
        == _value(after, checks, decided_by="store") + 1
    )
    assert _value(last, "tollgate_costs_budgeted_scopes") == 1
    scraper.assert_no_caller_identities()


# -- the gateway


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(
        SimulatorSettings(port=0, latency_ms=0)
    ) as running:
        yield running


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


async def test_gateway_breaker_gauges_flip_when_downstreams_fail(
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.yaml"
    entry = {"sha256": hash_key(API_KEY), "tenant_id": TENANT, "user_id": USER}
    keys.write_text(yaml.safe_dump({"keys": [entry]}), "utf-8")
    # Nothing listens on the downstream addresses: every call fails UNAVAILABLE and
    # the gateway answers on its fallbacks (local route and limiter, no cache, outbox).
    settings = GatewaySettings(
        http_port=None,  # the HTTP door has its own tests
        ratelimit_address=_unused_address(),
        cache_address=_unused_address(),
        router_address=_unused_address(),
        costs_address=_unused_address(),
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        downstream_breaker=BreakerConfig(failure_threshold=1),
        metrics_port=0,
    )
    running = await serve_app(await build_gateway(settings), settings)
    scraper = Scraper(http, _metrics_port(running))
    before = await scraper.scrape()

    async with grpc.aio.insecure_channel(running.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).CreateResponse(
            gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
    after = await scraper.scrape()

    breaker = "tollgate_breaker_state"
    for name in ("ratelimit", "cache", "router", "costs"):
        assert _value(before, breaker, breaker=name) == 0, name
        assert _value(after, breaker, breaker=name) == 2, name
    model = reply.model
    assert _value(after, breaker, breaker=f"upstream:{model}") == 0

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert (
        delta(
            "tollgate_rpc_requests_total", service="gateway", method=CREATE, code="OK"
        )
        == 1
    )
    attempts = "tollgate_upstream_attempt_duration_seconds_count"
    assert delta(attempts, model=model, outcome="ok") == 1
    tokens = "tollgate_upstream_tokens_total"
    assert delta(tokens, model=model, kind="input") == reply.usage.input_tokens > 0
    assert delta(tokens, model=model, kind="output") == reply.usage.output_tokens > 0
    assert delta("tollgate_queue_wait_seconds_count", priority="standard") == 1
    assert _value(after, "tollgate_queue_depth", priority="standard") == 0
    assert _value(after, "tollgate_queue_in_flight") == 0
    scraper.assert_no_caller_identities()


async def test_upstream_retries_and_failed_attempts_are_counted(
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.yaml"
    entry = {"sha256": hash_key(API_KEY), "tenant_id": TENANT}
    keys.write_text(yaml.safe_dump({"keys": [entry]}), "utf-8")
    settings = GatewaySettings(
        http_port=None,  # the HTTP door has its own tests
        ratelimit_address=_unused_address(),
        cache_address=_unused_address(),
        router_address=_unused_address(),
        costs_address=_unused_address(),
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        upstream_max_retries=2,
        metrics_port=0,
    )
    running = await serve_app(await build_gateway(settings), settings)
    scraper = Scraper(http, _metrics_port(running))
    async with http.post(
        f"{sim.root_url}/_sim/faults", json={"kind": "unavailable", "count": 1}
    ) as scheduled:
        assert scheduled.status == 200
    before = await scraper.scrape()

    async with grpc.aio.insecure_channel(running.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).CreateResponse(
            gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
    after = await scraper.scrape()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    model = reply.model
    attempts = "tollgate_upstream_attempt_duration_seconds_count"
    assert delta(attempts, model=model, outcome="error") == 1
    assert delta(attempts, model=model, outcome="ok") == 1
    assert (
        delta("tollgate_upstream_retries_total", model=model, reason="transient") == 1
    )
