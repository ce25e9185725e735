"""The suite as `tollgate dev --tls` runs it: mutual TLS on every gRPC hop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services import cli
from services.core.tls import ClientTls, aio_channel
from services.devcerts import make_dev_certs
from services.devsuite import (
    DEFAULT_PORTS,
    SERVICES,
    Suite,
    load_client_tls,
    start_suite,
)
from tests.e2e.conftest import E2E_KEY, free_ports

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
DOWNSTREAMS = ("ratelimit", "cache", "router", "costs")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    running = start_suite(
        tmp_path_factory.mktemp("mtls-suite"),
        E2E_KEY,
        ports=ports,
        base_env=clean_env,
        tls=True,
    )
    yield running
    running.stop()


def _client_tls(suite: Suite) -> ClientTls:
    assert suite.client_tls is not None
    return suite.client_tls


async def _create(address: str, tls: ClientTls | None, text: str) -> object:
    """The reply, or the status code the call failed with."""
    async with aio_channel(address, tls) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            return await stub.CreateResponse(
                gateway_pb.CreateResponseRequest(input=text), metadata=AUTH, timeout=30
            )
        except grpc.aio.AioRpcError as error:
            return error.code()


async def test_create_response_end_to_end_with_mutual_tls_on_every_hop(
    suite: Suite,
) -> None:
    tls = _client_tls(suite)
    question = "What does mutual TLS prove?"

    first = await _create(suite.gateway_address, tls, question)
    second = await _create(suite.gateway_address, tls, question)

    assert isinstance(first, gateway_pb.CreateResponseResponse)
    assert isinstance(second, gateway_pb.CreateResponseResponse)
    assert first.output_text.startswith('Simulated answer to "What does')
    assert first.cost_micros > 0
    # The hit proves the gateway reached the cache over mutual TLS.
    assert second.cache_status == common_pb.CACHE_STATUS_EXACT
    async with aio_channel(suite.gateway_address, tls) as channel:
        status = await gateway_pb2_grpc.GatewayServiceStub(channel).GetStatus(
            gateway_pb.GetStatusRequest(), metadata=AUTH, timeout=5
        )
    failures = {b.name: b.failure_count for b in status.breakers}
    assert {name: failures[name] for name in DOWNSTREAMS} == dict.fromkeys(
        DOWNSTREAMS, 0
    )
    assert status.outbox_depth == 0, "the ledger took the usage records"


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_speaks_only_mutual_tls(suite: Suite, service: str) -> None:
    address = f"127.0.0.1:{suite.ports[service]}"
    tls = _client_tls(suite)

    async def health(client: ClientTls | None) -> object:
        async with aio_channel(address, client) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
        return reply.status

    assert await health(tls) == health_pb2.HealthCheckResponse.SERVING
    assert await health(None) == grpc.StatusCode.UNAVAILABLE
    assert await health(ClientTls(tls.ca_file)) == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_is_refused(suite: Suite) -> None:
    reply = await _create(suite.gateway_address, None, "hello in the clear")
    assert reply == grpc.StatusCode.UNAVAILABLE


async def test_client_without_a_certificate_is_refused(suite: Suite) -> None:
    no_cert = ClientTls(_client_tls(suite).ca_file)
    reply = await _create(suite.gateway_address, no_cert, "hello without a cert")
    assert reply == grpc.StatusCode.UNAVAILABLE


async def test_client_certificate_from_another_ca_is_refused(
    suite: Suite, tmp_path: Path
) -> None:
    other = make_dev_certs(tmp_path / "other-ca")
    stranger = ClientTls(
        _client_tls(suite).ca_file, other.cert_file("client"), other.key_file("client")
    )
    reply = await _create(suite.gateway_address, stranger, "hello from elsewhere")
    assert reply == grpc.StatusCode.UNAVAILABLE


def test_tollgate_ask_uses_the_tls_dev_recorded(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_client_tls(suite.state_dir) == suite.client_tls
    monkeypatch.setenv("TOLLGATE_STATE_DIR", str(suite.state_dir))

    code = cli.main(["ask", "Is ask encrypted?", "--address", suite.gateway_address])

    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith('Simulated answer to "Is ask')


def test_tollgate_ask_takes_tls_files_as_flags(
    suite: Suite,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    tls = _client_tls(suite)
    assert tls.cert_file is not None and tls.key_file is not None
    # A state dir without the record: the flags alone switch TLS on.
    monkeypatch.setenv("TOLLGATE_STATE_DIR", str(tmp_path))
    base = ["ask", "Flags?", "--key", E2E_KEY, "--address", suite.gateway_address]

    assert cli.main(base) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    files = ["--ca", str(tls.ca_file), "--cert", str(tls.cert_file)]
    assert cli.main([*base, *files, "--cert-key", str(tls.key_file)]) == 0
    assert capsys.readouterr().out.startswith('Simulated answer to "Flags')


async def test_only_the_gateways_certificate_opens_the_services_data_rpcs(
    suite: Suite,
) -> None:
    """--tls turns service identity on: the application's certificate is not enough."""
    address = f"127.0.0.1:{suite.ports['ratelimit']}"
    request = ratelimit_pb.AcquireRequest(
        request_id="req_e2e",
        caller=common_pb.Caller(tenant_id="dev", user_id="someone-else"),
        model="gpt-4.1",
        estimated_tokens=10,
    )
    client = _client_tls(suite)
    gateway = ClientTls(
        client.ca_file,
        suite.state_dir / "tls" / "gateway.pem",
        suite.state_dir / "tls" / "gateway-key.pem",
    )

    async def acquire(tls: ClientTls) -> object:
        async with aio_channel(address, tls) as channel:
            stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
            try:
                return await stub.Acquire(request, timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()

    assert await acquire(client) == grpc.StatusCode.PERMISSION_DENIED
    assert isinstance(await acquire(gateway), ratelimit_pb.AcquireResponse)


async def test_an_operator_reaches_admin_rpcs_with_the_admin_key(suite: Suite) -> None:
    """`tollgate` commands on admin RPCs present the client certificate and the key."""
    async with aio_channel(
        f"127.0.0.1:{suite.ports['router']}", _client_tls(suite)
    ) as channel:
        reply = await router_pb2_grpc.RouterServiceStub(channel).SetDegradationLevel(
            router_pb.SetDegradationLevelRequest(
                level=common_pb.DEGRADATION_LEVEL_FULL_SERVICE, reason="e2e check"
            ),
            metadata=AUTH,
            timeout=10,
        )
    assert reply.level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
