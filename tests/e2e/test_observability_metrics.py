"""The suite as `tollgate dev` starts it exports metrics on every service."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import SERVICES, Suite
from tests.e2e.conftest import E2E_KEY

pytestmark = pytest.mark.e2e

RPCS = {
    "gateway": "/tollgate.gateway.v1.GatewayService/CreateResponse",
    "ratelimit": "/tollgate.ratelimit.v1.RateLimitService/AcquireBatch",
    "cache": "/tollgate.cache.v1.CacheService/Lookup",
    "router": "/tollgate.router.v1.RouterService/Route",
    "costs": "/tollgate.costs.v1.CostsService/RecordBatch",
}


def _requests_ok(suite: Suite, service: str) -> float:
    url = f"http://127.0.0.1:{suite.ports[f'{service}_metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tollgate_rpc_requests_total" and sample.labels == {
                "service": service,
                "method": RPCS[service],
                "code": "OK",
            }:
                return sample.value
    return 0.0


async def test_every_service_counts_the_rpcs_of_a_gateway_request(suite: Suite) -> None:
    before = {name: _requests_ok(suite, name) for name in SERVICES}

    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        await gateway_pb2_grpc.GatewayServiceStub(channel).CreateResponse(
            # "auto" is routed per prompt, never from a lease a request before
            # this one left the gateway holding.
            gateway_pb.CreateResponseRequest(
                input="Which port serves metrics?", model="auto"
            ),
            metadata=(("authorization", f"Bearer {E2E_KEY}"),),
            timeout=30,
        )

    # Record is booked before the reply, so every count is final now.
    after = {name: _requests_ok(suite, name) for name in SERVICES}
    assert {name: after[name] - before[name] for name in SERVICES} == dict.fromkeys(
        SERVICES, 1.0
    )


def test_every_service_exports_its_process_and_build(suite: Suite) -> None:
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for service in SERVICES:
        url = f"http://127.0.0.1:{suite.ports[f'{service}_metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {
            sample.name: sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

        assert samples["process_cpu_seconds_total"].value > 0, service
        assert samples["process_resident_memory_bytes"].value > 10_000_000, service
        build = samples["tollgate_build_info"]
        assert build.value == 1
        assert build.labels == {
            "service": service,
            "version": importlib.metadata.version("tollgate"),
            # The suite runs from this checkout: the commit checked out.
            "git_sha": commit,
            "python_version": platform.python_version(),
        }
