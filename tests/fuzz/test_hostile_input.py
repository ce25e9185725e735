"""Hostile input at every public RPC of every service, in process.

Hypothesis draws request messages from the contracts (tests/fuzz/hostile.py) and
throws them, with junk and oversized metadata, at the gateway (in front of the four
real downstream services and the simulator), ratelimit (and Envoy's
ShouldRateLimit on its port), cache, router and costs. Every answer must be a
decision or a proper status, never UNKNOWN or INTERNAL; after each batch every
server still answers its health check and the gateway still serves a normal
request; and memory stays bounded while the same hostile traffic repeats.

Hypothesis runs on a worker thread; each example's call runs on the test's event
loop, where the servers live, so examples shrink like any other Hypothesis test.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
import yaml
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.router.v1 import router_pb2 as router_pb

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.server import RunningServer, ServiceApp
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
from tests.fuzz.hostile import (
    MIB,
    SERVER_LIMIT_BYTES,
    Answer,
    Rpc,
    call_raw,
    corrupt_payloads,
    hostile_metadata,
    improper,
    invalid_utf8_payloads,
    messages,
    rpcs_of,
    rss_bytes,
    string_fields,
)
from tests.grpc_helpers import ADMIN_KEY, ADMIN_KEY_SHA256S

API_KEY = "tg-fuzz-test-key"
EXAMPLES = 30
MEMORY_EXAMPLES = 25
# Memory: the same hostile traffic, repeated, may not keep growing the process.
MEMORY_ROUNDS = 3
# Over the undecodable and oversized rounds (measured: about 1 MiB).
OVERSIZED_RSS_GROWTH_BOUND_BYTES = 96 * MIB
# Over the repeated random traffic (measured: about 0.2 MiB kept, RSS up to 130 MiB
# as glibc grows its per-thread arenas in 64 MiB steps).
PYTHON_HEAP_GROWTH_BOUND_BYTES = 4 * MIB
RSS_GROWTH_BOUND_BYTES = 320 * MIB
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * MIB)]

_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@dataclass(frozen=True)
class Target:
    """One server under fire: where it listens, its RPCs and its credentials."""

    name: str
    server: RunningServer
    rpcs: list[Rpc]
    auth: tuple[tuple[str, str], ...]


_SERVICES = {
    "gateway": gateway_pb.DESCRIPTOR.services_by_name["GatewayService"],
    "ratelimit": ratelimit_pb.DESCRIPTOR.services_by_name["RateLimitService"],
    "envoy": rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
    "cache": cache_pb.DESCRIPTOR.services_by_name["CacheService"],
    "router": router_pb.DESCRIPTOR.services_by_name["RouterService"],
    "costs": costs_pb.DESCRIPTOR.services_by_name["CostsService"],
}
# Envoy's RateLimitService is served on the ratelimit port.
_SERVER_OF = {name: "ratelimit" if name == "envoy" else name for name in _SERVICES}
_ADMIN_AUTH = (("authorization", f"Bearer {ADMIN_KEY}"),)


class Fleet:
    """Starts the servers a test fires at, each once, in this test's event loop."""

    def __init__(self, serve_app: ServeApp, tmp_path: Path) -> None:
        self._serve_app = serve_app
        self._tmp = tmp_path
        self._admin = ServerSettings(admin_key_sha256s=ADMIN_KEY_SHA256S)
        self._servers: dict[str, RunningServer] = {}
        self.simulator: RunningSimulator | None = None

    @property
    def servers(self) -> list[RunningServer]:
        """The servers started so far."""
        return list(self._servers.values())

    async def target(self, name: str) -> Target:
        """The server of ``name`` ("envoy": the ratelimit port), started if need be."""
        auth: tuple[tuple[str, str], ...] = _ADMIN_AUTH
        if name == "gateway":
            auth = (("authorization", f"Bearer {API_KEY}"),)
        elif name == "envoy":
            auth = ()
        server = await self._server(_SERVER_OF[name])
        return Target(name, server, rpcs_of(_SERVICES[name]), auth)

    async def _server(self, name: str) -> RunningServer:
        if name not in self._servers:
            app = await self._build(name)
            self._servers[name] = await self._serve_app(app, self._admin)
        return self._servers[name]

    async def _build(self, name: str) -> ServiceApp:
        tmp = self._tmp
        if name == "ratelimit":
            limits = tmp / "limits.yaml"
            generous = {"rpm": 100_000}
            limits.write_text(
                yaml.safe_dump({"tiers": {"paid": generous, "free": generous}}),
                encoding="utf-8",
            )
            return await build_ratelimit(RateLimitSettings(port=0, limits_file=limits))
        if name == "cache":
            # A small exact tier, so that its bound shows in the memory test.
            return await build_cache(
                CacheSettings(port=0, state_dir=tmp / "cache", exact_max_bytes=4 * MIB)
            )
        if name == "router":
            return await build_router(RouterSettings(port=0))
        if name == "costs":
            return await build_costs(
                CostsSettings(port=0, database_path=tmp / "costs.sqlite3")
            )
        keys = tmp / "keys.yaml"
        key = {
            "sha256": hash_key(API_KEY),
            "tenant_id": "fuzz",
            "service": "chat",
            "user_id": "mallory",
            "user_tier": "paid",
        }
        keys.write_text(yaml.safe_dump({"keys": [key]}), encoding="utf-8")
        self.simulator = await start_simulator(SimulatorSettings(port=0, latency_ms=0))
        return await build_gateway(
            GatewaySettings(
                http_port=None,  # the HTTP door has its own tests
                port=0,
                ratelimit_address=(await self._server("ratelimit")).address,
                cache_address=(await self._server("cache")).address,
                router_address=(await self._server("router")).address,
                costs_address=(await self._server("costs")).address,
                keys_file=keys,
                openai_base_url=self.simulator.base_url,
                outbox_path=tmp / "outbox.sqlite3",
                batch_store_path=tmp / "batches.sqlite3",
                upstream_max_retries=0,
                upstream_timeout_seconds=5,
            )
        )


@pytest.fixture
async def fleet(serve_app: ServeApp, tmp_path: Path) -> AsyncIterator[Fleet]:
    started = Fleet(serve_app, tmp_path)
    yield started
    if started.simulator is not None:
        await started.simulator.stop()


async def _assert_still_serving(fleet: Fleet) -> None:
    """Every server answers SERVING, and the gateway still answers a real request."""
    for server in fleet.servers:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING, server.app.name
    gateway = next((s for s in fleet.servers if s.app.name == "gateway"), None)
    if gateway is None:
        return
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).CreateResponse(
            gateway_pb.CreateResponseRequest(input="still there?", cache_bypass=True),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
            timeout=10,
        )
    assert reply.output_text


Draw = Callable[[st.DataObject, Target], tuple[Rpc, bytes, list[tuple[str, str]]]]


async def _fuzz(
    targets: Sequence[Target],
    draw: Draw,
    *,
    examples: int = EXAMPLES,
    shrink: bool = True,
) -> list[Answer]:
    """Run ``examples`` drawn calls against ``targets``; fail on an improper answer."""
    loop = asyncio.get_running_loop()
    channels = {
        t.name: grpc.aio.insecure_channel(t.server.address, options=CHANNEL_OPTIONS)
        for t in targets
    }
    answers: list[Answer] = []
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(_SETTINGS, max_examples=examples, phases=phases)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(targets), label="target")
        rpc, payload, metadata = draw(data, target)
        answer = asyncio.run_coroutine_threadsafe(
            call_raw(channels[target.name], rpc, payload, metadata), loop
        ).result()
        answers.append(answer)
        problem = improper(answer)
        assert problem is None, f"{rpc.path} answered {problem}"

    try:
        await asyncio.to_thread(run)
    finally:
        for channel in channels.values():
            await channel.close()
    return answers


_CALLER = {"tenant_id": "fuzz", "service": "chat", "user_id": "u1", "user_tier": "paid"}
_CACHEABLE = {"tenant_id": "fuzz", "model": "gpt-4.1-mini", "input": "hello there"}
# A valid request per RPC: most examples start from it and turn a few fields
# hostile, so that the fuzz reaches the handlers behind validation.
BASELINES: dict[str, dict[str, object]] = {
    "/tollgate.gateway.v1.GatewayService/CreateResponse": {
        "input": "What does a token bucket do?",
        "request_type": "REQUEST_TYPE_CHAT",
    },
    "/tollgate.gateway.v1.GatewayService/StreamResponse": {
        "input": "Stream a short answer."
    },
    "/tollgate.gateway.v1.GatewayService/SubmitBatch": {
        "items": [{"custom_id": "a", "input": "one"}, {"custom_id": "b", "input": "2"}]
    },
    "/tollgate.ratelimit.v1.RateLimitService/Acquire": {
        "request_id": "r1",
        "caller": _CALLER,
        "model": "gpt-4.1-mini",
        "estimated_tokens": 100,
    },
    "/tollgate.ratelimit.v1.RateLimitService/ReportUpstreamThrottle": {
        "model": "gpt-4.1-mini",
        "retry_after": "1s",
    },
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit": {
        "domain": "tollgate",
        "descriptors": [{"entries": [{"key": "tenant", "value": "fuzz"}]}],
        "hits_addend": 1,
    },
    "/tollgate.cache.v1.CacheService/Lookup": {
        "request_id": "r1",
        "request": _CACHEABLE,
        "allow_semantic": True,
    },
    "/tollgate.cache.v1.CacheService/Store": {
        "request_id": "r1",
        "request": _CACHEABLE,
        "response": {
            "output_text": "hi",
            "model": "gpt-4.1-mini",
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
        "complete": True,
    },
    "/tollgate.router.v1.RouterService/Route": {
        "request_id": "r1",
        "caller": _CALLER,
        "input": "Summarise this.",
        "input_tokens": 4,
    },
    "/tollgate.router.v1.RouterService/RecordOutcome": {
        "deployment": "blue",
        "model": "gpt-4.1-mini",
        "latency": "0.2s",
    },
    "/tollgate.costs.v1.CostsService/Record": {
        "request_id": "r1",
        "caller": _CALLER,
        "model": "gpt-4.1-mini",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "cache_status": "CACHE_STATUS_MISS",
    },
    "/tollgate.costs.v1.CostsService/RecordBatch": {
        "items": [
            {
                "request_id": "r2",
                "caller": _CALLER,
                "model": "gpt-4.1-mini",
                "usage": {"input_tokens": 10, "output_tokens": 5},
                "cache_status": "CACHE_STATUS_MISS",
            }
        ]
    },
    "/tollgate.costs.v1.CostsService/CheckBudget": {
        "request_id": "r1",
        "caller": _CALLER,
        "model": "gpt-4.1-mini",
        "input_tokens": 10,
        "max_output_tokens": 50,
    },
}


def _drawer(*, wild_time: bool = False) -> Draw:
    def draw(
        data: st.DataObject, target: Target
    ) -> tuple[Rpc, bytes, list[tuple[str, str]]]:
        rpc = data.draw(st.sampled_from(target.rpcs), label="rpc")
        hostile = data.draw(
            messages(rpc.request, wild_time=wild_time), label="hostile fields"
        )
        baseline = BASELINES.get(rpc.path)
        if baseline is not None and data.draw(st.integers(0, 3), label="mutate") != 2:
            message = type(hostile)()
            json_format.ParseDict(baseline, message)
            message.MergeFrom(hostile)
            hostile = message
        metadata = data.draw(hostile_metadata(target.auth), label="metadata")
        return rpc, hostile.SerializeToString(), metadata

    return draw


_random_message = _drawer()


def _undecodable(
    data: st.DataObject, target: Target
) -> tuple[Rpc, bytes, list[tuple[str, str]]]:
    rpc = data.draw(st.sampled_from(target.rpcs), label="rpc")
    utf8 = bool(string_fields(rpc.request)) and data.draw(st.booleans(), label="utf8")
    payload = (
        data.draw(invalid_utf8_payloads(rpc.request), label="invalid utf-8")
        if utf8
        else data.draw(corrupt_payloads(), label="corrupt")
    )
    return rpc, payload, list(target.auth)


def _only(target: Target, keep: Callable[[Rpc], bool]) -> Target:
    return replace(target, rpcs=[rpc for rpc in target.rpcs if keep(rpc)])


@pytest.mark.parametrize("name", list(_SERVICES))
async def test_random_hostile_messages_get_proper_answers(
    fleet: Fleet, name: str
) -> None:
    target = await fleet.target(name)
    answers = await _fuzz([target], _random_message)
    # The fuzz reached past validation (decisions, not only refusals).
    assert grpc.StatusCode.OK in {a.code for a in answers}
    await _assert_still_serving(fleet)


@pytest.mark.parametrize(
    "name",
    ["ratelimit", "cache", "router", "costs"],
)
async def test_timestamps_and_durations_out_of_range_get_proper_answers(
    fleet: Fleet, name: str
) -> None:
    target = _only(
        await fleet.target(name),
        lambda rpc: any(f.message_type is not None for f in rpc.request.fields),
    )
    await _fuzz([target], _drawer(wild_time=True))
    await _assert_still_serving(fleet)


async def test_undecodable_requests_get_invalid_argument(fleet: Fleet) -> None:
    targets = [await fleet.target(name) for name in _SERVICES]
    await _fuzz(targets, _undecodable, shrink=False)


async def test_undecodable_and_oversized_requests_leave_memory_bounded(
    fleet: Fleet,
) -> None:
    targets = [await fleet.target(name) for name in _SERVICES]
    too_big = b"\x0a" + bytes([0x80, 0x80, 0x80, 0x05]) + b"x" * (SERVER_LIMIT_BYTES)
    assert len(too_big) > SERVER_LIMIT_BYTES
    undecodable = [b"\x0a\x02\xff\xfe", b"\xff\xff\xff", b"\x0a\x05ab"]
    before = 0
    # The first round sends every RPC everything and warms every pool and table;
    # the rounds after it (each RPC the undecodable bytes, one RPC per service the
    # oversized message) may not keep growing the process.
    for round_number in range(MEMORY_ROUNDS + 1):
        if round_number == 1:
            before = rss_bytes()
        for target in targets:
            address = target.server.address
            async with grpc.aio.insecure_channel(address) as channel:
                for index, rpc in enumerate(target.rpcs):
                    for payload in undecodable:
                        await call_raw(channel, rpc, payload, target.auth)
                    if round_number and index != round_number % len(target.rpcs):
                        continue
                    # Long enough for a stream to hear the refusal.
                    answer = await call_raw(
                        channel, rpc, too_big, target.auth, stream_seconds=5
                    )
                    assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED, rpc.path
    grown = rss_bytes() - before
    assert grown < OVERSIZED_RSS_GROWTH_BOUND_BYTES, f"RSS grew {grown / MIB:.1f} MiB"
    await _assert_still_serving(fleet)


async def test_repeated_hostile_traffic_leaves_memory_bounded(fleet: Fleet) -> None:
    targets = [await fleet.target(name) for name in _SERVICES]
    # The first round warms every cache, pool and table; the same derandomized
    # traffic repeated may not keep what it allocates. tracemalloc sees the Python
    # heap exactly (Hypothesis's own caches aside); RSS, with a generous bound for
    # the allocator's arenas, catches native leaks.
    await _fuzz(targets, _random_message, examples=MEMORY_EXAMPLES)
    rss_before = rss_bytes()
    tracemalloc.start(1)
    try:
        for _ in range(MEMORY_ROUNDS):
            await _fuzz(targets, _random_message, examples=MEMORY_EXAMPLES)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    rss_grown = rss_bytes() - rss_before
    kept = snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*/hypothesis/*"),
            tracemalloc.Filter(False, "*/sortedcontainers/*"),
        ]
    ).statistics("lineno")
    kept_bytes = sum(stat.size for stat in kept)
    assert kept_bytes < PYTHON_HEAP_GROWTH_BOUND_BYTES, (
        f"{kept_bytes / MIB:.1f} MiB kept: {kept[:5]}"
    )
    assert rss_grown < RSS_GROWTH_BOUND_BYTES, f"RSS grew {rss_grown / MIB:.1f} MiB"
    await _assert_still_serving(fleet)
