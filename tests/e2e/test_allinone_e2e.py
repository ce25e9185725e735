"""`tollgate serve all`: the five services in one process against the simulator.

The gateway must reach the others in-process (no connection to their ports), while
each still serves its contract, health and reflection on its own port, on the
same state the gateway uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEFAULT_PORTS, SERVICES, Suite, start_suite
from tests.e2e.conftest import E2E_KEY, free_ports
from tests.grpc_helpers import error_details

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
SERVICE_NAMES = {
    "ratelimit": "tollgate.ratelimit.v1.RateLimitService",
    "cache": "tollgate.cache.v1.CacheService",
    "router": "tollgate.router.v1.RouterService",
    "costs": "tollgate.costs.v1.CostsService",
    "gateway": "tollgate.gateway.v1.GatewayService",
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The simulator, and the five services in one process."""
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    running = start_suite(
        tmp_path_factory.mktemp("allinone"),
        E2E_KEY,
        ports=ports,
        base_env=clean_env,
        all_in_one=True,
    )
    yield running
    running.stop()


@pytest.fixture
async def gateway(suite: Suite) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def simulator_requests(suite: Suite) -> int:
    url = f"http://127.0.0.1:{suite.ports['simulator']}/_sim/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(json.load(response)["requests"])


def test_one_process_serves_every_port_and_dials_none_of_them(suite: Suite) -> None:
    assert set(suite.processes) == {"simulator", "all"}
    process = psutil.Process(suite.processes["all"].process.pid)
    connections = process.net_connections(kind="tcp")
    listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    assert {suite.ports[name] for name in SERVICES} <= listening
    downstream_ports = {suite.ports[name] for name in SERVICES if name != "gateway"}
    dialled = {c.raddr.port for c in connections if c.raddr}
    assert not dialled & downstream_ports, "the gateway must not dial its downstreams"


async def test_one_metrics_endpoint_serves_every_services_series(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    request = gateway_pb.CreateResponseRequest(input="metrics?", cache_bypass=True)
    await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    process = psutil.Process(suite.processes["all"].process.pid)
    listening = {
        c.laddr.port
        for c in process.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert suite.ports["gateway_metrics"] in listening
    others = {suite.ports[f"{name}_metrics"] for name in SERVICES if name != "gateway"}
    assert not others & listening, "one process, one registry: one endpoint"
    text = await asyncio.to_thread(_metrics_text, suite.ports["gateway_metrics"])
    (build_info,) = [
        line for line in text.splitlines() if line.startswith("tollgate_build_info{")
    ]
    assert 'service="all"' in build_info
    for series in (
        "tollgate_upstream_tokens_total",
        "tollgate_ratelimit_decisions_total",
        "tollgate_router_routes_total",
        "tollgate_costs_spend_micros_total",
    ):
        assert f"\n{series}{{" in text, series


async def test_answer_then_exact_hit_through_the_in_process_downstreams(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    request = gateway_pb.CreateResponseRequest(input="How does serve all wire things?")
    before = simulator_requests(suite)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports['cache']}") as ch:
        cache = cache_pb2_grpc.CacheServiceStub(ch)
        stats_before = await cache.GetStats(cache_pb.GetStatsRequest(), timeout=5)

        first = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)
        second = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

        # Over its own port, the cache answers from the state the gateway used.
        stats_after = await cache.GetStats(cache_pb.GetStatsRequest(), timeout=5)
    assert simulator_requests(suite) == before + 1
    assert first.cache_status == common_pb.CACHE_STATUS_MISS
    assert first.output_text.startswith('Simulated answer to "How does serve all')
    assert first.cost_micros > 0
    assert second.cache_status == common_pb.CACHE_STATUS_EXACT
    assert second.output_text == first.output_text
    assert second.cost_micros == 0
    assert stats_after.exact_hits == stats_before.exact_hits + 1
    assert stats_after.stores >= stats_before.stores + 1

    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports['costs']}") as ch:
        report = await costs_pb2_grpc.CostsServiceStub(ch).GetReport(
            costs_pb.GetReportRequest(tenant_id="dev"), metadata=AUTH, timeout=5
        )
    assert report.total_requests >= 2
    assert report.total_cost_micros >= first.cost_micros


async def test_a_downstream_refusal_keeps_its_status_and_field_in_process(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.CreateResponse(
            gateway_pb.CreateResponseRequest(input="hi", model="no-such-model"),
            metadata=AUTH,
            timeout=30,
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details(caught.value)["google.rpc.BadRequest"]
    assert [v.field for v in bad_request.field_violations] == ["model"]


@pytest.mark.parametrize("service", sorted(SERVICE_NAMES))
async def test_each_service_keeps_health_and_reflection_on_its_port(
    suite: Suite, service: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.ports[service]}") as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAMES[service]), timeout=5
        )
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        listed = [
            s.name
            async for reply in replies
            for s in reply.list_services_response.service
        ]

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE_NAMES[service] in listed


async def test_in_one_process_admissions_are_asked_one_by_one(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    # An in-process admission is no RPC: a batch would only add its task.
    request = gateway_pb.CreateResponseRequest(input="one by one?", cache_bypass=True)
    await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    text = await asyncio.to_thread(_metrics_text, suite.ports["gateway_metrics"])
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("tollgate_rpc_requests_total{")
    }
    assert "/tollgate.ratelimit.v1.RateLimitService/Acquire" in methods
    assert "/tollgate.ratelimit.v1.RateLimitService/AcquireBatch" not in methods
