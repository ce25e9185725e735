"""TLS and mutual TLS on real servers: who gets in, and the gateway's downstream hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict, Unpack

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.server import RunningServer, ServiceApp
from services.core.settings import ServerSettings
from services.core.tls import ClientTls, aio_channel
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.devcerts import DevCerts, make_dev_certs
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

SERVING = health_pb2.HealthCheckResponse.SERVING
DOWNSTREAMS = ("ratelimit", "cache", "router", "costs")
API_KEY = "tg-tls-test-key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """Another CA with certificates of the same names: trusted by nobody here."""
    return make_dev_certs(tmp_path_factory.mktemp("foreign"))


class _ServerTlsFields(TypedDict, total=False):
    tls_cert_file: Path
    tls_key_file: Path
    tls_client_ca_file: Path


class _DownstreamTlsFields(TypedDict, total=False):
    downstream_tls_ca_file: Path
    downstream_tls_cert_file: Path
    downstream_tls_key_file: Path


def _server_tls(certs: DevCerts, name: str, *, mutual: bool) -> _ServerTlsFields:
    files = _ServerTlsFields(
        tls_cert_file=certs.cert_file(name), tls_key_file=certs.key_file(name)
    )
    if mutual:
        files["tls_client_ca_file"] = certs.ca_file
    return files


def _toy() -> ServiceApp:
    return ServiceApp(name="toy", service_names=[], register=lambda server: None)


async def _health(address: str, tls: ClientTls | None) -> object:
    """SERVING, or the status code the call failed with."""
    async with aio_channel(address, tls) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return reply.status


async def test_tls_server_answers_clients_that_trust_its_ca_only(
    serve_app: ServeApp, certs: DevCerts, foreign: DevCerts
) -> None:
    server = await serve_app(
        _toy(), ServerSettings(**_server_tls(certs, "cache", mutual=False))
    )

    stranger = ClientTls(
        certs.ca_file, foreign.cert_file("client"), foreign.key_file("client")
    )

    assert await _health(server.address, ClientTls(certs.ca_file)) == SERVING
    assert await _health(f"localhost:{server.port}", ClientTls(certs.ca_file)) == (
        SERVING
    )
    # One-way TLS asks for no client certificate, so a stranger's does not matter.
    assert await _health(server.address, stranger) == SERVING
    # A client that trusts another CA does not trust this server.
    assert await _health(server.address, foreign.client_tls()) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert await _health(server.address, None) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_server_requires_a_client_certificate_from_its_ca(
    serve_app: ServeApp, certs: DevCerts, foreign: DevCerts
) -> None:
    server = await serve_app(
        _toy(), ServerSettings(**_server_tls(certs, "cache", mutual=True))
    )
    stranger = ClientTls(
        certs.ca_file, foreign.cert_file("client"), foreign.key_file("client")
    )

    assert await _health(server.address, certs.client_tls()) == SERVING
    assert await _health(server.address, ClientTls(certs.ca_file)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert await _health(server.address, stranger) == grpc.StatusCode.UNAVAILABLE
    assert await _health(server.address, None) == grpc.StatusCode.UNAVAILABLE


async def test_the_plaintext_health_port_answers_probes_and_nothing_else(
    serve_app: ServeApp, certs: DevCerts
) -> None:
    ledger_up = True

    async def ledger() -> bool:
        return ledger_up

    app = ServiceApp(
        name="toy",
        service_names=["tollgate.costs.v1.CostsService"],
        register=lambda server: None,
        health_checks={"ledger": ledger},
    )
    settings = ServerSettings(health_port=0, **_server_tls(certs, "costs", mutual=True))
    server = await serve_app(app, settings)
    assert server.health_port is not None
    probe = f"127.0.0.1:{server.health_port}"

    # The kubelet's probe: plaintext, no certificate.
    assert await _health(probe, None) == SERVING
    assert await _health(server.address, None) == grpc.StatusCode.UNAVAILABLE
    # Health only: the service's RPCs are not on the plaintext port.
    async with aio_channel(probe, None) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary("/tollgate.costs.v1.CostsService/GetReport")(
                b"", timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    # The same status as the main port: a failing component shows on both.
    ledger_up = False
    await server.health.refresh()
    assert await _health(probe, None) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _health(server.address, certs.client_tls()) == (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )


async def test_server_name_override_is_what_the_certificate_is_checked_against(
    serve_app: ServeApp, certs: DevCerts
) -> None:
    server = await serve_app(
        _toy(), ServerSettings(**_server_tls(certs, "cache", mutual=False))
    )

    named = ClientTls(certs.ca_file, server_name="cache")
    misnamed = ClientTls(certs.ca_file, server_name="router")
    assert await _health(server.address, named) == SERVING
    assert await _health(server.address, misnamed) == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimulatorSettings(port=0, latency_ms=0)) as s:
        yield s


@pytest.fixture
async def mtls_downstreams(
    serve_app: ServeApp, certs: DevCerts, tmp_path: Path
) -> dict[str, RunningServer]:
    """The four downstream services, each refusing clients without a certificate."""

    def tls(name: str) -> _ServerTlsFields:
        return _server_tls(certs, name, mutual=True)

    apps = {
        "ratelimit": await build_ratelimit(RateLimitSettings(**tls("ratelimit"))),
        "cache": await build_cache(CacheSettings(**tls("cache"))),
        "router": await build_router(RouterSettings(**tls("router"))),
        "costs": await build_costs(
            CostsSettings(database_path=tmp_path / "costs.sqlite3", **tls("costs"))
        ),
    }
    return {
        name: await serve_app(app, ServerSettings(**tls(name)))
        for name, app in apps.items()
    }


async def _gateway(
    serve_app: ServeApp,
    downstreams: dict[str, RunningServer],
    sim: RunningSimulator,
    tmp_path: Path,
    **tls: Unpack[_DownstreamTlsFields],
) -> RunningServer:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump({"keys": [{"sha256": hash_key(API_KEY), "tenant_id": "acme"}]}),
        encoding="utf-8",
    )
    settings = GatewaySettings(
        http_port=None,  # the HTTP door has its own tests
        ratelimit_address=downstreams["ratelimit"].address,
        cache_address=downstreams["cache"].address,
        router_address=downstreams["router"].address,
        costs_address=downstreams["costs"].address,
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        upstream_max_retries=0,
        **tls,
    )
    return await serve_app(await build_gateway(settings))


async def _ask_twice_then_status(
    gateway: RunningServer,
) -> tuple[int, dict[str, int], int]:
    """Second answer's cache status, downstream breaker failures, outbox depth."""
    auth = (("authorization", f"Bearer {API_KEY}"),)
    request = gateway_pb.CreateResponseRequest(input="Is this hop encrypted?")
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await stub.CreateResponse(request, metadata=auth, timeout=30)
        second = await stub.CreateResponse(request, metadata=auth, timeout=30)
        status = await stub.GetStatus(
            gateway_pb.GetStatusRequest(), metadata=auth, timeout=5
        )
    failures = {
        b.name: b.failure_count for b in status.breakers if b.name in DOWNSTREAMS
    }
    return second.cache_status, failures, status.outbox_depth


async def test_gateway_reaches_mutual_tls_downstreams_with_its_certificate(
    serve_app: ServeApp,
    certs: DevCerts,
    mtls_downstreams: dict[str, RunningServer],
    sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    gateway = await _gateway(
        serve_app,
        mtls_downstreams,
        sim,
        tmp_path,
        downstream_tls_ca_file=certs.ca_file,
        downstream_tls_cert_file=certs.cert_file("gateway"),
        downstream_tls_key_file=certs.key_file("gateway"),
    )

    cache_status, failures, outbox_depth = await _ask_twice_then_status(gateway)

    assert cache_status == common_pb.CACHE_STATUS_EXACT  # the cache answered
    assert failures == dict.fromkeys(DOWNSTREAMS, 0)
    assert outbox_depth == 0  # the ledger took the records


async def test_gateway_without_a_client_certificate_is_refused_by_downstreams(
    serve_app: ServeApp,
    certs: DevCerts,
    mtls_downstreams: dict[str, RunningServer],
    sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    gateway = await _gateway(
        serve_app,
        mtls_downstreams,
        sim,
        tmp_path,
        downstream_tls_ca_file=certs.ca_file,
    )

    # Answered on the fallbacks (fail-open limiter, local route, outbox), no cache.
    cache_status, failures, outbox_depth = await _ask_twice_then_status(gateway)

    assert cache_status != common_pb.CACHE_STATUS_EXACT
    assert all(failures[name] > 0 for name in DOWNSTREAMS), failures
    assert outbox_depth == 2
