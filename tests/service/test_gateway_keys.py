"""API keys as data: two gateway replicas sharing one key store (SQLite and Postgres).

Keys are made, listed, revoked and rotated through the admin RPCs of one replica
and take effect on the other, before the real downstream services and the
simulator.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
import yaml
from google.protobuf import duration_pb2
from structlog.testing import capture_logs
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services import cli
from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.clock import Clock, FakeClock
from services.core.metrics import REGISTRY
from services.core.server import RunningServer
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
from tests.conftest import ServeApp
from tests.grpc_helpers import (
    ADMIN_KEY,
    ADMIN_KEY_SHA256S,
    admin_channel,
    error_details,
)

FILE_KEY = "tg-keys-test-file-key"
# A create or revoke must reach every replica within this many seconds.
PROPAGATION_SECONDS = 5.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Downstreams:
    """Addresses of the four downstream services."""

    ratelimit: str
    cache: str
    router: str
    costs: str


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(port=0, latency_ms=0)
    async with await start_simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def downstreams(serve_app: ServeApp, tmp_path: Path) -> Downstreams:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        yaml.safe_dump({"tiers": {"free": {"rpm": 100}, "paid": {"rpm": 100}}}),
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
    return Downstreams(ratelimit.address, cache.address, router.address, costs.address)


def _keys_file(path: Path) -> Path:
    entry = {"sha256": hash_key(FILE_KEY), "tenant_id": "seed", "user_tier": "paid"}
    path.write_text(yaml.safe_dump({"keys": [entry]}), encoding="utf-8")
    return path


StartGateway = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """Where the replicas keep their keys: one SQLite file, or one Postgres schema."""
    if request.param == "sqlite":
        yield {"key_store_path": tmp_path / "keys" / "gateway-keys.sqlite3"}
        return
    import psycopg

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"keys_{uuid.uuid4().hex[:12]}"
    yield {"postgres_dsn": dsn, "postgres_schema": schema}
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def start_gateway(
    serve_app: ServeApp,
    downstreams: Downstreams,
    sim: RunningSimulator,
    tmp_path: Path,
) -> StartGateway:
    """Starts a gateway replica; each has its own outbox and batch file."""
    count = 0

    async def start(clock: Clock | None = None, **overrides: Any) -> RunningServer:
        nonlocal count
        count += 1
        fields: dict[str, Any] = {
            "http_port": None,
            "port": 0,
            "ratelimit_address": downstreams.ratelimit,
            "cache_address": downstreams.cache,
            "router_address": downstreams.router,
            "costs_address": downstreams.costs,
            "keys_file": _keys_file(tmp_path / "keys.yaml"),
            "openai_base_url": sim.base_url,
            "outbox_path": tmp_path / f"outbox-{count}.sqlite3",
            "batch_store_path": tmp_path / f"batches-{count}.sqlite3",
            "admin_key_sha256s": ADMIN_KEY_SHA256S,
            "costs_admin_key": ADMIN_KEY,
            "key_store_path": tmp_path / "gateway-keys.sqlite3",
            **overrides,
        }
        settings = GatewaySettings(**fields)
        return await serve_app(await build_gateway(settings, clock), settings)

    return start


@pytest.fixture
async def replicas(
    start_gateway: StartGateway, store_settings: dict[str, Any]
) -> tuple[RunningServer, RunningServer]:
    """Two gateways sharing the key store."""
    first = await start_gateway(**store_settings)
    second = await start_gateway(**store_settings)
    return first, second


@pytest.fixture
async def channels(
    replicas: tuple[RunningServer, RunningServer],
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    async with (
        grpc.aio.insecure_channel(replicas[0].address) as first,
        grpc.aio.insecure_channel(replicas[1].address) as second,
    ):
        yield first, second


@pytest.fixture
async def admin(
    replicas: tuple[RunningServer, RunningServer],
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    """Replica A's admin RPCs, called with the admin key."""
    async with admin_channel(replicas[0].address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _auth(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def _status_code(channel: grpc.aio.Channel, secret: str) -> grpc.StatusCode:
    """What the gateway answers a caller with ``secret`` (GetStatus authenticates)."""
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    try:
        await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth(secret))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _refusal(channel: grpc.aio.Channel, secret: str) -> grpc.aio.AioRpcError:
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth(secret))
    return raised.value


async def _seconds_until(
    channel: grpc.aio.Channel, secret: str, code: grpc.StatusCode
) -> float:
    """Seconds until the gateway answers ``secret`` with ``code`` (fails past 5 s)."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < PROPAGATION_SECONDS:
        if await _status_code(channel, secret) == code:
            return elapsed
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"no {code.name} within {PROPAGATION_SECONDS} s")


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_details(error)["google.rpc.ErrorInfo"]
    return str(info.reason)


async def test_a_key_made_on_one_replica_works_on_the_other_until_revoked(
    admin: gateway_pb2_grpc.GatewayServiceStub,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
) -> None:
    first, second = channels

    created = await admin.CreateKey(
        gateway_pb.CreateKeyRequest(
            tenant_id="acme",
            service="chat",
            user_id="alice",
            user_tier="paid",
            models=["auto", "gpt-4.1-mini"],
        )
    )
    secret = created.secret
    works_here = await _status_code(first, secret)
    works_there_after = await _seconds_until(second, secret, grpc.StatusCode.OK)
    answer = await gateway_pb2_grpc.GatewayServiceStub(second).CreateResponse(
        gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
        metadata=_auth(secret),
    )

    key = created.key
    assert key.key_id.startswith("tk_") and len(key.key_id) == 19
    assert secret.startswith(key.key_id + "_") and len(secret) > 60
    assert (key.tenant_id, key.service, key.user_id, key.user_tier) == (
        "acme",
        "chat",
        "alice",
        "paid",
    )
    assert list(key.models) == ["auto", "gpt-4.1-mini"]
    assert key.source == gateway_pb.API_KEY_SOURCE_STORE
    assert key.HasField("create_time") and not key.HasField("expire_time")
    assert works_here == grpc.StatusCode.OK  # at once on the replica that made it
    assert works_there_after < PROPAGATION_SECONDS
    assert answer.output_text

    revoked = await admin.RevokeKey(gateway_pb.RevokeKeyRequest(key_id=key.key_id))
    refused_here = await _refusal(first, secret)  # at once, no poll
    refused_there_after = await _seconds_until(
        second, secret, grpc.StatusCode.UNAUTHENTICATED
    )
    refused_there = await _refusal(second, secret)

    assert revoked.key.HasField("revoke_time")
    assert refused_here.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _reason(refused_here) == "API_KEY_REVOKED"
    assert f"API key {key.key_id} was revoked" in (refused_here.details() or "")
    assert refused_there_after < PROPAGATION_SECONDS
    assert _reason(refused_there) == "API_KEY_REVOKED"

    listed = await admin.ListKeys(gateway_pb.ListKeysRequest(tenant_id="acme"))
    with_revoked = await admin.ListKeys(
        gateway_pb.ListKeysRequest(tenant_id="acme", include_revoked=True)
    )
    again = await admin.RevokeKey(gateway_pb.RevokeKeyRequest(key_id=key.key_id))
    assert list(listed.keys) == []
    assert [k.key_id for k in with_revoked.keys] == [key.key_id]
    assert again.key.revoke_time == revoked.key.revoke_time  # revoking is idempotent


async def test_a_rotated_key_keeps_its_id_and_refuses_its_old_secret(
    admin: gateway_pb2_grpc.GatewayServiceStub,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
) -> None:
    first, second = channels
    created = await admin.CreateKey(
        gateway_pb.CreateKeyRequest(tenant_id="acme", user_id="bob")
    )
    old = created.secret
    await _seconds_until(second, old, grpc.StatusCode.OK)

    rotated = await admin.RotateKey(
        gateway_pb.RotateKeyRequest(key_id=created.key.key_id)
    )
    new = rotated.secret
    old_here = await _refusal(first, old)
    new_here = await _status_code(first, new)
    new_there_after = await _seconds_until(second, new, grpc.StatusCode.OK)
    old_there_after = await _seconds_until(second, old, grpc.StatusCode.UNAUTHENTICATED)

    assert rotated.key.key_id == created.key.key_id
    assert (rotated.key.tenant_id, rotated.key.user_id) == ("acme", "bob")
    assert rotated.key.HasField("rotate_time")
    assert not rotated.key.HasField("previous_secret_expire_time")
    assert new != old and new.startswith(created.key.key_id + "_")
    assert _reason(old_here) == "API_KEY_ROTATED"
    assert new_here == grpc.StatusCode.OK
    assert new_there_after < PROPAGATION_SECONDS
    assert old_there_after < PROPAGATION_SECONDS


async def test_an_expired_key_and_an_old_secret_past_its_grace_are_refused(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    clock = FakeClock()
    gateway = await start_gateway(clock)
    async with (
        admin_channel(gateway.address) as admin_ch,
        grpc.aio.insecure_channel(gateway.address) as channel,
    ):
        admin = gateway_pb2_grpc.GatewayServiceStub(admin_ch)
        expiring = await admin.CreateKey(
            gateway_pb.CreateKeyRequest(
                tenant_id="acme", ttl=duration_pb2.Duration(seconds=3600)
            )
        )
        lasting = await admin.CreateKey(gateway_pb.CreateKeyRequest(tenant_id="acme"))
        rotated = await admin.RotateKey(
            gateway_pb.RotateKeyRequest(
                key_id=lasting.key.key_id,
                grace_period=duration_pb2.Duration(seconds=600),
            )
        )

        before = await _status_code(channel, expiring.secret)
        old_in_grace = await _status_code(channel, lasting.secret)
        clock.advance(601)
        old_after_grace = await _refusal(channel, lasting.secret)
        new_after_grace = await _status_code(channel, rotated.secret)
        clock.advance(3000)
        expired = await _refusal(channel, expiring.secret)

    assert expiring.key.expire_time.ToSeconds() == int(FakeClock().now()) + 3600
    assert rotated.key.previous_secret_expire_time.ToSeconds() == (
        rotated.key.rotate_time.ToSeconds() + 600
    )
    assert before == grpc.StatusCode.OK
    assert old_in_grace == grpc.StatusCode.OK
    assert _reason(old_after_grace) == "API_KEY_ROTATED"
    assert new_after_grace == grpc.StatusCode.OK
    assert expired.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _reason(expired) == "API_KEY_EXPIRED"
    assert f"API key {expiring.key.key_id} expired at 2026-01-01T01:00:00" in (
        expired.details() or ""
    )


async def test_the_key_rpcs_need_the_admin_key(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    calls: list[tuple[str, Any]] = [
        ("CreateKey", gateway_pb.CreateKeyRequest(tenant_id="acme")),
        ("ListKeys", gateway_pb.ListKeysRequest()),
        ("RevokeKey", gateway_pb.RevokeKeyRequest(key_id="tk_0123456789abcdef")),
        ("RotateKey", gateway_pb.RotateKeyRequest(key_id="tk_0123456789abcdef")),
    ]
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for rpc, request in calls:
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await getattr(stub, rpc)(request)
            with pytest.raises(grpc.aio.AioRpcError) as ordinary:
                await getattr(stub, rpc)(request, metadata=_auth(FILE_KEY))

            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED, rpc
            assert ordinary.value.code() == grpc.StatusCode.PERMISSION_DENIED, rpc
        listed = await stub.ListKeys(
            gateway_pb.ListKeysRequest(), metadata=_auth(ADMIN_KEY)
        )
    assert [k.key_id for k in listed.keys] == [key_id_of(hash_key(FILE_KEY))]


async def test_keys_of_the_file_are_listed_and_only_their_file_changes_them(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    file_key_id = key_id_of(hash_key(FILE_KEY))
    async with admin_channel(gateway.address) as channel:
        admin = gateway_pb2_grpc.GatewayServiceStub(channel)
        stored = await admin.CreateKey(gateway_pb.CreateKeyRequest(tenant_id="acme"))
        listed = await admin.ListKeys(gateway_pb.ListKeysRequest())
        seed_only = await admin.ListKeys(gateway_pb.ListKeysRequest(tenant_id="seed"))
        refusals = []
        for call in (
            admin.RevokeKey(gateway_pb.RevokeKeyRequest(key_id=file_key_id)),
            admin.RotateKey(gateway_pb.RotateKeyRequest(key_id=file_key_id)),
            admin.RevokeKey(gateway_pb.RevokeKeyRequest(key_id="tk_0123456789abcdef")),
            admin.RevokeKey(gateway_pb.RevokeKeyRequest(key_id="not-a-key-id")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            refusals.append((raised.value.code(), _reason(raised.value)))
        file_key_still = await _status_code(channel, FILE_KEY)

    file_entry, stored_entry = listed.keys
    assert (file_entry.key_id, file_entry.source, file_entry.tenant_id) == (
        file_key_id,
        gateway_pb.API_KEY_SOURCE_FILE,
        "seed",
    )
    assert file_entry.user_tier == "paid"
    assert not file_entry.HasField("create_time")
    assert stored_entry.key_id == stored.key.key_id
    assert [k.key_id for k in seed_only.keys] == [file_key_id]
    assert refusals == [
        (grpc.StatusCode.FAILED_PRECONDITION, "KEY_FROM_FILE"),
        (grpc.StatusCode.FAILED_PRECONDITION, "KEY_FROM_FILE"),
        (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ]
    assert file_key_still == grpc.StatusCode.OK


async def test_create_key_names_every_bad_field(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    async with admin_channel(gateway.address) as channel:
        admin = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await admin.CreateKey(
                gateway_pb.CreateKeyRequest(
                    tenant_id="",
                    user_tier="t" * 65,
                    models=["auto", " "],
                    ttl=duration_pb2.Duration(seconds=-5),
                    budget_limit_micros=0,
                )
            )
        listed = await admin.ListKeys(gateway_pb.ListKeysRequest(tenant_id="acme"))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(raised.value)["google.rpc.BadRequest"].field_violations
    assert [v.field for v in violations] == [
        "tenant_id",
        "user_tier",
        "models[1]",
        "ttl",
        "budget_limit_micros",
    ]
    assert list(listed.keys) == []  # nothing was made


def _unbudgeted_checks() -> float:
    """Budget checks the costs servers of this process allowed with no budget."""
    value = REGISTRY.get_sample_value(
        "tollgate_costs_budget_checks_total", {"decided_by": "no_budget"}
    )
    return value or 0.0


async def test_a_key_budget_is_set_on_the_costs_service_and_enforced(
    start_gateway: StartGateway, downstreams: Downstreams
) -> None:
    gateway = await start_gateway()
    question = gateway_pb.CreateResponseRequest(input="What is a token bucket?")
    async with (
        admin_channel(gateway.address) as admin_ch,
        grpc.aio.insecure_channel(gateway.address) as channel,
        admin_channel(downstreams.costs) as costs_ch,
    ):
        admin = gateway_pb2_grpc.GatewayServiceStub(admin_ch)
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        free = await admin.CreateKey(gateway_pb.CreateKeyRequest(tenant_id="acme"))
        # Until the ledger has told this gateway that no budget covers acme (so it
        # stops asking for a while), answered without a budget check of its own.
        for n in range(100):
            before = _unbudgeted_checks()
            await stub.CreateResponse(
                gateway_pb.CreateResponseRequest(input=f"Warm-up {n}?"),
                metadata=_auth(free.secret),
            )
            if _unbudgeted_checks() > before:
                break
        # One micro-dollar: no request's worst case fits, from the first request.
        capped = await admin.CreateKey(
            gateway_pb.CreateKeyRequest(tenant_id="acme", budget_limit_micros=1)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateResponse(question, metadata=_auth(capped.secret))
        answered = await stub.CreateResponse(question, metadata=_auth(free.secret))
        budgets = await costs_pb2_grpc.CostsServiceStub(costs_ch).GetBudgetStatus(
            costs_pb.GetBudgetStatusRequest(
                caller={"tenant_id": "acme", "api_key_id": capped.key.key_id}
            )
        )

    assert capped.key.budget_limit_micros == 1
    assert not free.key.HasField("budget_limit_micros")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert answered.output_text
    (status,) = budgets.budgets
    assert status.budget.scope.kind == costs_pb.SCOPE_KIND_KEY
    assert status.budget.scope.api_key_id == capped.key.key_id
    assert status.budget.period == costs_pb.BUDGET_PERIOD_MONTH
    assert status.budget.hard


async def test_a_budget_without_the_costs_admin_key_makes_no_key(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(costs_admin_key=None)
    async with admin_channel(gateway.address) as channel:
        admin = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await admin.CreateKey(
                gateway_pb.CreateKeyRequest(tenant_id="acme", budget_limit_micros=5)
            )
        listed = await admin.ListKeys(gateway_pb.ListKeysRequest(tenant_id="acme"))

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(raised.value) == "KEY_BUDGETS_UNCONFIGURED"
    assert list(listed.keys) == []


async def test_secrets_never_reach_the_logs(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    secrets: list[str] = []
    with capture_logs() as logs:
        async with (
            admin_channel(gateway.address) as admin_ch,
            grpc.aio.insecure_channel(gateway.address) as channel,
        ):
            admin = gateway_pb2_grpc.GatewayServiceStub(admin_ch)
            created = await admin.CreateKey(
                gateway_pb.CreateKeyRequest(tenant_id="acme", user_id="carol")
            )
            secrets.append(created.secret)
            await gateway_pb2_grpc.GatewayServiceStub(channel).CreateResponse(
                gateway_pb.CreateResponseRequest(input="What is a token bucket?"),
                metadata=_auth(created.secret),
            )
            rotated = await admin.RotateKey(
                gateway_pb.RotateKeyRequest(key_id=created.key.key_id)
            )
            secrets.append(rotated.secret)
            await _refusal(channel, created.secret)
            await admin.RevokeKey(
                gateway_pb.RevokeKeyRequest(key_id=created.key.key_id)
            )
            await _refusal(channel, rotated.secret)
            await admin.ListKeys(gateway_pb.ListKeysRequest())

    events = {entry["event"] for entry in logs}
    assert {"api_key_created", "api_key_rotated", "api_key_revoked"} <= events
    assert any(created.key.key_id in repr(entry) for entry in logs)
    text = repr(logs)
    for secret in [*secrets, ADMIN_KEY]:
        assert secret not in text
        # Nor the part after the public id.
        assert secret.removeprefix(created.key.key_id) not in text


async def test_the_keys_commands_against_a_running_gateway(
    replicas: tuple[RunningServer, RunningServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    first, second = replicas

    async def run(*argv: str) -> tuple[int, str, str]:
        # The servers' log lines, in this process, stay out of the CLI's output.
        capsys.readouterr()
        with capture_logs():
            status = await asyncio.to_thread(cli.main, ["keys", *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    # The admin key from --key, here for replica A.
    status, out, err = await run(
        "create",
        "--tenant",
        "acme",
        "--user",
        "dave",
        "--tier",
        "paid",
        "--models",
        "auto,gpt-4.1-mini",
        "--expires",
        "30d",
        "--budget-usd",
        "12.50",
        "--address",
        first.address,
        "--key",
        ADMIN_KEY,
    )
    assert status == 0, err
    fields = {
        name.strip(): value.strip()
        for name, value in (line.split(":", 1) for line in out.splitlines() if line)
    }
    key_id, secret = fields["key_id"], fields["secret"]
    assert key_id.startswith("tk_") and secret.startswith(key_id + "_")
    assert fields["models"] == "auto, gpt-4.1-mini"
    assert fields["budget"] == "$12.50/month"
    assert "shown once" in err
    async with grpc.aio.insecure_channel(second.address) as channel:
        assert await _seconds_until(channel, secret, grpc.StatusCode.OK) < 5

    # The admin key as `tollgate dev` leaves it: the dev key in the state dir.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dev-api-key").write_text(ADMIN_KEY, encoding="utf-8")
    monkeypatch.setenv("TOLLGATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TOLLGATE_GATEWAY_ADDRESS", second.address)
    status, out, err = await run("list")
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["KEY_ID", "SOURCE", "STATUS"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id[key_id][:7] == [
        key_id,
        "store",
        "active",
        "acme",
        "default",
        "dave",
        "paid",
    ]
    assert by_id[key_id][-1] == "$12.50/month"
    assert by_id[key_id_of(hash_key(FILE_KEY))][1] == "file"
    assert secret not in out

    status, out, err = await run("revoke", key_id)
    assert status == 0, err
    assert out.startswith(f"revoked {key_id} at ")
    async with grpc.aio.insecure_channel(first.address) as channel:
        refused_after = await _seconds_until(
            channel, secret, grpc.StatusCode.UNAUTHENTICATED
        )
    assert refused_after < 5

    status, out, _ = await run("list", "--all", "--tenant", "acme")
    assert status == 0
    assert [row.split()[:3] for row in out.splitlines()[1:]] == [
        [key_id, "store", "revoked"]
    ]

    # A key that is not the admin key, and bad input caught before any call.
    status, _, err = await run("list", "--key", FILE_KEY)
    assert status == 1
    assert "PERMISSION_DENIED" in err
    status, _, err = await run("create", "--tenant", "acme", "--expires", "soon")
    assert status == 2
    assert "not a duration" in err


async def test_the_http_door_takes_a_made_key_and_refuses_it_once_revoked(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(http_port=0)
    assert isinstance(gateway.app, GatewayApp)
    base_url = f"http://127.0.0.1:{gateway.app.http_port}/v1"
    question: list[Any] = [{"role": "user", "content": "What is a token bucket?"}]
    async with admin_channel(gateway.address) as channel:
        admin = gateway_pb2_grpc.GatewayServiceStub(channel)
        created = await admin.CreateKey(gateway_pb.CreateKeyRequest(tenant_id="acme"))
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key=created.secret, max_retries=0
        ) as client:
            answer = await client.chat.completions.create(
                model="auto", messages=question
            )
            await admin.RevokeKey(
                gateway_pb.RevokeKeyRequest(key_id=created.key.key_id)
            )
            with pytest.raises(openai.AuthenticationError) as refused:
                await client.chat.completions.create(model="auto", messages=question)

    assert answer.choices[0].message.content
    assert refused.value.status_code == 401
    assert f"API key {created.key.key_id} was revoked" in str(refused.value)
