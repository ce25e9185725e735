"""Replicas sharing one Redis admit exactly what one would; outages follow policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core.server import RunningServer, start_server
from services.ratelimit.app import build_app
from services.ratelimit.config import RateLimitSettings
from tests.backends import RedisServer, free_port
from tests.grpc_helpers import error_details

pytestmark = pytest.mark.integration

MODEL = "gpt-4.1"
ROOT = Path(__file__).resolve().parents[2]
# The model admits 240 at once and then one per minute: a test that runs for
# seconds sees no refill, so "exactly 240" is exact.
EXACT_LIMITS = f"""
burst_multiplier: 240
tiers: {{free: {{rpm: 1000}}}}
models: {{{MODEL}: {{rpm: 1}}}}
"""
SERVING = health_pb2.HealthCheckResponse.SERVING


def _caller(index: int) -> common_pb.Caller:
    return common_pb.Caller(tenant_id="t1", service="chat", user_id=f"u{index}")


async def _acquire(
    stub: ratelimit_pb2_grpc.RateLimitServiceStub, index: int
) -> ratelimit_pb.AcquireResponse:
    response: ratelimit_pb.AcquireResponse = await stub.Acquire(
        ratelimit_pb.AcquireRequest(caller=_caller(index), model=MODEL)
    )
    return response


@pytest.fixture
def replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[str]]:
    """Three ratelimit processes sharing the test Redis under a fresh key prefix."""
    limits = tmp_path / "limits.yaml"
    limits.write_text(EXACT_LIMITS)
    env = {
        **os.environ,
        "TOLLGATE_RATELIMIT_REDIS_URL": redis_server.url,
        "TOLLGATE_RATELIMIT_REDIS_KEY_PREFIX": f"{{test-{uuid.uuid4().hex[:8]}}}:",
        "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
        "TOLLGATE_RATELIMIT_REPLICAS": "3",
        # Generous: this test is about exactness, not about timeouts.
        "TOLLGATE_RATELIMIT_REDIS_SOCKET_TIMEOUT_MS": "1000",
        "TOLLGATE_RATELIMIT_FAILURE_MODE": "closed",
        "TOLLGATE_RATELIMIT_LOG_LEVEL": "WARNING",
    }
    ports = [free_port() for _ in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "services.ratelimit", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


async def _wait_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(300):
        try:
            response = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if response.status == SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("replica did not become SERVING")


async def test_three_processes_sharing_redis_admit_exactly_the_limit(
    replicas: list[str],
) -> None:
    channels = [grpc.aio.insecure_channel(address) for address in replicas]
    try:
        await asyncio.gather(*(_wait_serving(channel) for channel in channels))
        stubs = [ratelimit_pb2_grpc.RateLimitServiceStub(c) for c in channels]
        gate = asyncio.Semaphore(48)

        async def one(index: int) -> tuple[int, bool]:
            async with gate:
                replica = index % len(stubs)
                response = await _acquire(stubs[replica], index)
                return replica, response.decision == ratelimit_pb.DECISION_ALLOW

        results = await asyncio.gather(*(one(i) for i in range(900)))
    finally:
        for channel in channels:
            await channel.close()

    admitted = [replica for replica, allowed in results if allowed]
    assert len(admitted) == 240
    # Every replica took part in admitting: the limit held across them.
    assert {admitted.count(r) > 0 for r in range(3)} == {True}


@pytest.fixture
async def restore_redis(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    """Hands out the session's Redis and makes sure it runs again afterwards."""
    yield redis_server
    if redis_server.process is None:
        redis_server.start()


async def _serve(settings: RateLimitSettings) -> RunningServer:
    return await start_server(await build_app(settings), settings)


def _settings(
    redis_url: str, tmp_path: Path, failure_mode: Literal["open", "closed"]
) -> RateLimitSettings:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        f"tiers: {{free: {{rpm: 30}}}}\nmodels: {{{MODEL}: {{rpm: 600}}}}\n"
    )
    return RateLimitSettings(
        host="127.0.0.1",
        port=0,
        redis_url=redis_url,
        redis_key_prefix=f"{{test-{uuid.uuid4().hex[:8]}}}:",
        limits_file=limits,
        failure_mode=failure_mode,
        replicas=3,
        redis_retry_interval_ms=20,
        health_check_interval_seconds=0.05,
    )


async def _poll_until(predicate: object, attempts: int = 200) -> None:
    assert callable(predicate)
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not reached")


async def test_fail_open_degrades_to_a_third_and_recovers(
    restore_redis: RedisServer, tmp_path: Path
) -> None:
    server = await _serve(_settings(restore_redis.url, tmp_path, "open"))
    channel = grpc.aio.insecure_channel(server.address)
    stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        before = await _acquire(stub, 1)
        restore_redis.stop()
        during = [await _acquire(stub, 2) for _ in range(11)]
        status = await stub.GetStatus(ratelimit_pb.GetStatusRequest())
        still_serving = await health.Check(health_pb2.HealthCheckRequest())
        restore_redis.start()

        async def recovered() -> bool:
            response = await _acquire(stub, 3)
            return not response.degraded

        await _poll_until(recovered)
        after = await stub.GetStatus(ratelimit_pb.GetStatusRequest())
    finally:
        await channel.close()
        await server.stop(0)

    assert before.decision == ratelimit_pb.DECISION_ALLOW and not before.degraded
    assert all(r.degraded for r in during)
    # 30 RPM / 3 replicas: 10 locally, then a deny.
    assert [r.decision for r in during] == [ratelimit_pb.DECISION_ALLOW] * 10 + [
        ratelimit_pb.DECISION_DENY
    ]
    assert during[0].buckets[0].limit_per_minute == 10
    assert status.degraded and status.backend == "redis"
    assert still_serving.status == SERVING
    assert not after.degraded


async def test_fail_closed_is_unavailable_and_not_serving_until_redis_returns(
    restore_redis: RedisServer, tmp_path: Path
) -> None:
    server = await _serve(_settings(restore_redis.url, tmp_path, "closed"))
    channel = grpc.aio.insecure_channel(server.address)
    stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)

    async def health_is(status: int) -> bool:
        response = await health.Check(health_pb2.HealthCheckRequest())
        return bool(response.status == status)

    try:
        assert (await _acquire(stub, 1)).decision == ratelimit_pb.DECISION_ALLOW
        restore_redis.stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _acquire(stub, 1)
        await _poll_until(lambda: health_is(health_pb2.HealthCheckResponse.NOT_SERVING))
        restore_redis.start()
        await _poll_until(lambda: health_is(SERVING))
        back = await _acquire(stub, 1)
    finally:
        await channel.close()
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    details = error_details(caught.value)
    assert details["google.rpc.ErrorInfo"].reason == "BACKEND_UNAVAILABLE"
    assert details["google.rpc.ErrorInfo"].metadata["backend"] == "redis"
    assert details["google.rpc.RetryInfo"].retry_delay.seconds == 1
    assert back.decision == ratelimit_pb.DECISION_ALLOW and not back.degraded
