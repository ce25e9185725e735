"""Only the gateway may call the internal services' data RPCs (issue #15, point 6).

Real servers of ratelimit, cache, router and costs, each required to check service
identities, by mutual TLS (the client certificate's names) or by a signed service
token: calls without the gateway's identity are refused before the servicer runs,
calls with it are answered, and health, reflection and the admin RPCs (admin key)
stay as they were.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr
from structlog.testing import capture_logs
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.allinone import _serve_with_channel
from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.identity import (
    SERVICE_TOKEN_HEADER,
    ServiceIdentityConfigError,
    ServiceTokenSigner,
    mint_service_token,
)
from services.core.server import RunningServer, ServiceApp
from services.core.settings import InternalServerSettings
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
from tests.grpc_helpers import ADMIN_KEY, ADMIN_KEY_SHA256S, error_details

SECRET = secrets.token_urlsafe(48)
SERVICES = ("ratelimit", "cache", "router", "costs")
API_KEY = "tg-identity-test-key"
CALLER = common_pb.Caller(tenant_id="acme", user_id="user_0001", user_tier="paid")
OK = "OK"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


def _mutual_tls(certs: DevCerts, name: str) -> dict[str, Any]:
    return {
        "tls_cert_file": certs.cert_file(name),
        "tls_key_file": certs.key_file(name),
        "tls_client_ca_file": certs.ca_file,
    }


def _tokens() -> dict[str, Any]:
    return {"service_token_secret": SecretStr(SECRET)}


async def _build(
    name: str, tmp_path: Path, **fields: Any
) -> tuple[ServiceApp, InternalServerSettings]:
    """The service ``name``, built and configured as its ``__main__`` would."""
    fields["admin_key_sha256s"] = ADMIN_KEY_SHA256S
    if name == "ratelimit":
        ratelimit = RateLimitSettings(**fields)
        return await build_ratelimit(ratelimit), ratelimit
    if name == "cache":
        # The exact tier alone: the semantic tier has nothing to do with identity.
        cache = CacheSettings(semantic_backend="disabled", **fields)
        return await build_cache(cache), cache
    if name == "router":
        router = RouterSettings(**fields)
        return await build_router(router), router
    costs = CostsSettings(database_path=tmp_path / "costs.sqlite3", **fields)
    return await build_costs(costs), costs


async def _serve(
    serve_app: ServeApp, name: str, tmp_path: Path, **fields: Any
) -> RunningServer:
    app, settings = await _build(name, tmp_path, **fields)
    return await serve_app(app, settings)


# One data RPC per service (two for costs), each a valid request the service answers.
async def _acquire(channel: grpc.aio.Channel, metadata: Metadata) -> object:
    return await ratelimit_pb2_grpc.RateLimitServiceStub(channel).Acquire(
        ratelimit_pb.AcquireRequest(
            request_id="req_1", caller=CALLER, model="gpt-4.1", estimated_tokens=10
        ),
        metadata=metadata,
        timeout=10,
    )


async def _store(channel: grpc.aio.Channel, metadata: Metadata) -> object:
    return await cache_pb2_grpc.CacheServiceStub(channel).Store(
        cache_pb.StoreRequest(
            request_id="req_1",
            request=cache_pb.CacheableRequest(
                tenant_id="acme", model="gpt-4.1-mini", input="What is 2 + 2?"
            ),
            response=cache_pb.CachedResponse(output_text="5", model="gpt-4.1-mini"),
            complete=True,
        ),
        metadata=metadata,
        timeout=10,
    )


async def _route(channel: grpc.aio.Channel, metadata: Metadata) -> object:
    return await router_pb2_grpc.RouterServiceStub(channel).Route(
        router_pb.RouteRequest(request_id="req_1", caller=CALLER, input="Hi"),
        metadata=metadata,
        timeout=10,
    )


async def _record(channel: grpc.aio.Channel, metadata: Metadata) -> object:
    return await costs_pb2_grpc.CostsServiceStub(channel).Record(
        costs_pb.RecordRequest(
            request_id="req_1",
            caller=CALLER,
            model="gpt-4.1",
            deployment="blue",
            usage=common_pb.Usage(input_tokens=1000, output_tokens=500),
        ),
        metadata=metadata,
        timeout=10,
    )


async def _report(channel: grpc.aio.Channel, metadata: Metadata) -> object:
    now = datetime.now(UTC)
    request = costs_pb.GetReportRequest()
    request.start_time.FromDatetime(now - timedelta(days=1))
    request.end_time.FromDatetime(now + timedelta(days=1))
    return await costs_pb2_grpc.CostsServiceStub(channel).GetReport(
        request, metadata=metadata, timeout=10
    )


Call = Callable[[grpc.aio.Channel, Metadata], Awaitable[object]]
DATA_RPCS: dict[str, tuple[str, Call]] = {
    "ratelimit.Acquire": ("ratelimit", _acquire),
    "cache.Store": ("cache", _store),
    "router.Route": ("router", _route),
    "costs.Record": ("costs", _record),
    "costs.GetReport": ("costs", _report),
}


async def _outcome(
    address: str, call: Call, tls: ClientTls | None = None, metadata: Metadata = ()
) -> tuple[str, str]:
    """("OK", "") when answered, else the status code's name and the reason."""
    async with aio_channel(address, tls) as channel:
        try:
            await call(channel, metadata)
        except grpc.aio.AioRpcError as error:
            info = error_details(error).get("google.rpc.ErrorInfo")
            return error.code().name, info.reason if info is not None else ""
    return OK, ""


def _token(name: str, *, secret: str = SECRET, lifetime: int = 300) -> Metadata:
    expires_at = int(datetime.now(UTC).timestamp()) + lifetime
    return (
        (SERVICE_TOKEN_HEADER, mint_service_token(secret.encode(), name, expires_at)),
    )


async def _health(address: str, tls: ClientTls | None) -> object:
    async with aio_channel(address, tls) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return reply.status


async def _reflected_services(address: str, tls: ClientTls | None) -> list[str]:
    async with aio_channel(address, tls) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            return [s.name for s in reply.list_services_response.service]
    return []


@pytest.mark.parametrize("rpc", DATA_RPCS)
async def test_with_tokens_only_the_gateways_token_is_answered(
    serve_app: ServeApp, tmp_path: Path, rpc: str
) -> None:
    service, call = DATA_RPCS[rpc]
    server = await _serve(serve_app, service, tmp_path, **_tokens())
    forged = _token("gateway", secret=secrets.token_urlsafe(48))

    assert await _outcome(server.address, call) == (
        "UNAUTHENTICATED",
        "SERVICE_IDENTITY_MISSING",
    )
    assert await _outcome(server.address, call, metadata=forged) == (
        "UNAUTHENTICATED",
        "SERVICE_TOKEN_INVALID",
    )
    assert await _outcome(
        server.address, call, metadata=_token("gateway", lifetime=0)
    ) == (
        "UNAUTHENTICATED",
        "SERVICE_TOKEN_EXPIRED",
    )
    # A genuine token, but of an identity the allow-list does not name.
    assert await _outcome(server.address, call, metadata=_token("client")) == (
        "PERMISSION_DENIED",
        "SERVICE_IDENTITY_NOT_ALLOWED",
    )
    signer = ServiceTokenSigner(SECRET.encode(), "gateway")
    assert await _outcome(server.address, call, metadata=signer.metadata()) == (OK, "")


@pytest.mark.parametrize("rpc", DATA_RPCS)
async def test_with_mutual_tls_only_the_gateways_certificate_is_answered(
    serve_app: ServeApp, tmp_path: Path, certs: DevCerts, rpc: str
) -> None:
    service, call = DATA_RPCS[rpc]
    server = await _serve(serve_app, service, tmp_path, **_mutual_tls(certs, service))

    # Signed by the same CA, so the handshake succeeds; the names are not allowed.
    assert await _outcome(server.address, call, certs.client_tls("client")) == (
        "PERMISSION_DENIED",
        "SERVICE_IDENTITY_NOT_ALLOWED",
    )
    assert await _outcome(server.address, call, certs.client_tls(service)) == (
        "PERMISSION_DENIED",
        "SERVICE_IDENTITY_NOT_ALLOWED",
    )
    # No certificate at all: refused at the handshake, before any RPC.
    no_cert = ClientTls(certs.ca_file)
    assert (await _outcome(server.address, call, no_cert))[0] == "UNAVAILABLE"
    assert await _outcome(server.address, call, certs.client_tls("gateway")) == (OK, "")


@pytest.mark.parametrize("service", SERVICES)
async def test_health_and_reflection_need_no_identity(
    serve_app: ServeApp, tmp_path: Path, certs: DevCerts, service: str
) -> None:
    tls_server = await _serve(
        serve_app, service, tmp_path / "tls", **_mutual_tls(certs, service)
    )
    token_server = await _serve(serve_app, service, tmp_path / "token", **_tokens())
    client = certs.client_tls("client")

    serving = health_pb2.HealthCheckResponse.SERVING
    assert await _health(tls_server.address, client) == serving
    assert await _health(token_server.address, None) == serving
    assert "grpc.health.v1.Health" in await _reflected_services(
        token_server.address, None
    )
    assert "grpc.health.v1.Health" in await _reflected_services(
        tls_server.address, client
    )


async def test_admin_rpcs_take_the_admin_key_without_a_service_identity(
    serve_app: ServeApp, tmp_path: Path, certs: DevCerts
) -> None:
    """An operator's `tollgate` command presents the admin key, not the gateway's."""
    server = await _serve(serve_app, "router", tmp_path, **_mutual_tls(certs, "router"))
    request = router_pb.SetDegradationLevelRequest(
        level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY, reason="drill"
    )

    async def set_level(channel: grpc.aio.Channel, metadata: Metadata) -> object:
        return await router_pb2_grpc.RouterServiceStub(channel).SetDegradationLevel(
            request, metadata=metadata, timeout=10
        )

    operator = certs.client_tls("client")
    admin = (("authorization", f"Bearer {ADMIN_KEY}"),)
    assert await _outcome(server.address, set_level, operator, admin) == (OK, "")
    assert await _outcome(server.address, set_level, operator) == (
        "UNAUTHENTICATED",
        "ADMIN_KEY_MISSING",
    )
    # The gateway's identity is no admin key.
    assert await _outcome(server.address, set_level, certs.client_tls("gateway")) == (
        "UNAUTHENTICATED",
        "ADMIN_KEY_MISSING",
    )


async def test_an_operator_reads_status_with_the_admin_key_but_no_data(
    serve_app: ServeApp, tmp_path: Path, certs: DevCerts
) -> None:
    """`tollgate status` reads the router's level; the admin key opens no data RPC."""
    server = await _serve(serve_app, "router", tmp_path, **_mutual_tls(certs, "router"))

    async def stats(channel: grpc.aio.Channel, metadata: Metadata) -> object:
        return await router_pb2_grpc.RouterServiceStub(channel).GetRoutingStats(
            router_pb.GetRoutingStatsRequest(tenant_id="-"),
            metadata=metadata,
            timeout=10,
        )

    operator = certs.client_tls("client")
    admin = (("authorization", f"Bearer {ADMIN_KEY}"),)
    wrong_key = (("authorization", "Bearer not-the-admin-key"),)
    assert await _outcome(server.address, stats, operator, admin) == (OK, "")
    assert (await _outcome(server.address, stats, operator, wrong_key))[0] == (
        "PERMISSION_DENIED"
    )
    assert (await _outcome(server.address, stats, operator))[0] == "PERMISSION_DENIED"
    assert (await _outcome(server.address, _route, operator, admin))[0] == (
        "PERMISSION_DENIED"
    )


async def test_an_rpc_can_name_its_own_callers(
    serve_app: ServeApp, tmp_path: Path, certs: DevCerts
) -> None:
    server = await _serve(
        serve_app,
        "ratelimit",
        tmp_path,
        allowed_clients_by_rpc={"GetStatus": ["client"]},
        **_mutual_tls(certs, "ratelimit"),
    )

    async def status(channel: grpc.aio.Channel, metadata: Metadata) -> object:
        return await ratelimit_pb2_grpc.RateLimitServiceStub(channel).GetStatus(
            ratelimit_pb.GetStatusRequest(model="gpt-4.1"), timeout=10
        )

    client, gateway = certs.client_tls("client"), certs.client_tls("gateway")
    # The operator's identity is allowed GetStatus, and nothing else.
    assert await _outcome(server.address, status, client) == (OK, "")
    assert (await _outcome(server.address, _acquire, client))[0] == "PERMISSION_DENIED"
    # The RPC's own list replaces the default one: the gateway is not on it.
    assert (await _outcome(server.address, status, gateway))[0] == "PERMISSION_DENIED"
    assert await _outcome(server.address, _acquire, gateway) == (OK, "")


async def test_without_mutual_tls_or_a_secret_the_service_is_open_and_says_so(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        server = await _serve(serve_app, "cache", tmp_path)

    assert await _outcome(server.address, _store) == (OK, "")
    warnings = [log for log in logs if log["event"] == "service_identity_off"]
    assert [(w["service"], w["log_level"]) for w in warnings] == [("cache", "warning")]


async def test_a_short_or_unreadable_secret_stops_the_service_at_start_up(
    tmp_path: Path,
) -> None:
    with pytest.raises(ServiceIdentityConfigError, match="shorter than 32"):
        await _build("router", tmp_path, service_token_secret=SecretStr("short"))
    with pytest.raises(ServiceIdentityConfigError, match="cannot read"):
        await _build(
            "costs", tmp_path, service_token_secret_file=tmp_path / "no-such-file"
        )


async def test_in_process_calls_of_tollgate_serve_all_need_no_identity(
    tmp_path: Path,
) -> None:
    """The gateway in the same process calls through the envelope, with no peer."""
    app, settings = await _build("cache", tmp_path, **_tokens())
    running, in_process = await _serve_with_channel(
        app, settings.model_copy(update={"host": "127.0.0.1", "port": 0})
    )
    try:
        assert (await _outcome(running.address, _store))[0] == "UNAUTHENTICATED"
        stored = await _store(in_process, ())
        assert isinstance(stored, cache_pb.StoreResponse) and stored.stored
    finally:
        await running.stop(0)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimulatorSettings(port=0, latency_ms=0)) as s:
        yield s


async def _gateway_status(
    serve_app: ServeApp,
    sim: RunningSimulator,
    tmp_path: Path,
    downstreams: dict[str, RunningServer],
    **fields: Any,
) -> tuple[int, dict[str, int], int]:
    """Ask a gateway twice: second cache status, breaker failures, outbox depth."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump({"keys": [{"sha256": hash_key(API_KEY), "tenant_id": "acme"}]}),
        encoding="utf-8",
    )
    settings = GatewaySettings(
        http_port=None,
        ratelimit_address=downstreams["ratelimit"].address,
        cache_address=downstreams["cache"].address,
        router_address=downstreams["router"].address,
        costs_address=downstreams["costs"].address,
        keys_file=keys,
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        upstream_max_retries=0,
        **fields,
    )
    gateway = await serve_app(await build_gateway(settings))
    auth = (("authorization", f"Bearer {API_KEY}"),)
    request = gateway_pb.CreateResponseRequest(input="Who may book this usage?")
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await stub.CreateResponse(request, metadata=auth, timeout=30)
        second = await stub.CreateResponse(request, metadata=auth, timeout=30)
        status = await stub.GetStatus(
            gateway_pb.GetStatusRequest(), metadata=auth, timeout=5
        )
    failures = {b.name: b.failure_count for b in status.breakers if b.name in SERVICES}
    return second.cache_status, failures, status.outbox_depth


@pytest.fixture
async def token_downstreams(
    serve_app: ServeApp, tmp_path: Path
) -> dict[str, RunningServer]:
    """The four services, each requiring the gateway's service token."""
    return {
        name: await _serve(serve_app, name, tmp_path / name, **_tokens())
        for name in SERVICES
    }


async def test_the_gateway_proves_its_identity_with_its_service_token(
    serve_app: ServeApp,
    sim: RunningSimulator,
    tmp_path: Path,
    token_downstreams: dict[str, RunningServer],
) -> None:
    cache_status, failures, outbox_depth = await _gateway_status(
        serve_app,
        sim,
        tmp_path,
        token_downstreams,
        service_token_secret=SecretStr(SECRET),
    )

    assert cache_status == common_pb.CACHE_STATUS_EXACT  # the cache took the Store
    assert failures == dict.fromkeys(SERVICES, 0)
    assert outbox_depth == 0  # the ledger took the Records


async def test_a_gateway_without_the_secret_is_refused_by_every_service(
    serve_app: ServeApp,
    sim: RunningSimulator,
    tmp_path: Path,
    token_downstreams: dict[str, RunningServer],
) -> None:
    # Answered on the fallbacks (fail-open limiter, local route, outbox), no cache.
    cache_status, _, outbox_depth = await _gateway_status(
        serve_app, sim, tmp_path, token_downstreams
    )

    assert cache_status != common_pb.CACHE_STATUS_EXACT
    assert outbox_depth == 2
