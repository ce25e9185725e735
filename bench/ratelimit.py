"""Acquire through gRPC on both backends, against the Redis floor; replica exactness.

What it runs, all on loopback:

- a private ``redis-server`` on a free port (never the machine's 6379);
- the ratelimit service as its own process, pinned to CPU 0, once on the in-memory
  store and once on Redis; this process (the client) runs on the other CPU;
- Acquire latency (one call in flight: p50, p99) and decisions per second (32 in
  flight) for a realistic request that touches six buckets (user, service and
  global layers, requests and tokens), next to a Health.Check on the same server
  (the gRPC floor: no limiter work);
- the handler floor: a server whose Acquire returns a constant answer, once inside
  our RPC envelope (``services.core.server``) and once on bare ``grpc.aio``, pinned
  and driven the same way: what is left per decision for the limiter itself;
- the Redis floor: the same Redis answering a no-op ``EVALSHA`` (``return 0``),
  and our Acquire script alone (the store called directly, no gRPC), so that our
  cost over the floor is a ratio;
- exactness: three service processes sharing the Redis, 900 concurrent Acquires
  against a global limit of 240, several rounds: admitted must equal 240.

Run from the repository root: ``python bench/ratelimit.py [--calls N]``. Prints a
summary and writes ``bench/results/ratelimit.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as redis_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core.logging import configure_logging
from services.core.runner import run_event_loop
from services.core.server import ServiceApp, start_server
from services.core.settings import ServerSettings
from services.ratelimit.adapters.redis_store import RedisCounterStore, connect
from services.ratelimit.ports import SCALE, BucketDebit, BucketKey, Layer, Metric

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ratelimit.json"
MODEL = "gpt-4.1"
# High limits: every Acquire is a full six-bucket decision that admits.
THROUGHPUT_LIMITS = f"""
tiers: {{free: {{rpm: 1000000000, tpm: 1000000000}}}}
services: {{chat: 0.6, batch: 0.3, internal: 0.1}}
models: {{{MODEL}: {{rpm: 1000000000, tpm: 1000000000}}}}
"""
# 240 at once, then one per minute: no refill during a round.
EXACT_LIMIT = 240
EXACT_LIMITS = f"""
burst_multiplier: {EXACT_LIMIT}
tiers: {{free: {{rpm: 1000}}}}
models: {{{MODEL}: {{rpm: 1}}}}
"""
CONCURRENCY = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(samples_s: list[float]) -> dict[str, float]:
    return {
        "p50_us": round(statistics.median(samples_s) * 1e6, 1),
        "p99_us": round(_percentile(samples_s, 0.99) * 1e6, 1),
    }


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


@contextmanager
def _services(
    count: int, limits: Path, env: dict[str, str], cpu: str
) -> Iterator[list[str]]:
    ports = [_free_port() for _ in range(count)]
    taskset = ["taskset", "-c", cpu] if shutil.which("taskset") else []
    processes = [
        subprocess.Popen(
            [*taskset, sys.executable, "-m", "services.ratelimit", "--port", str(p)],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
                "TOLLGATE_RATELIMIT_LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


class _ConstantAcquire(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """Admits everything at once: no validation, no buckets, no store."""

    async def Acquire(  # noqa: N802 - the RPC's name
        self, request: ratelimit_pb.AcquireRequest, context: object
    ) -> ratelimit_pb.AcquireResponse:
        return ratelimit_pb.AcquireResponse(decision=ratelimit_pb.DECISION_ALLOW)


def _serve_constant(port: int, enveloped: bool) -> None:
    """Serve :class:`_ConstantAcquire` on CPU 0, in our envelope or on bare gRPC."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    configure_logging("WARNING", service="ratelimit")

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(
            _ConstantAcquire(), server
        )

    async def serve() -> None:
        if enveloped:
            app = ServiceApp(
                name="ratelimit",
                service_names=["tollgate.ratelimit.v1.RateLimitService"],
                register=register,
            )
            running = await start_server(
                app, ServerSettings(port=port, log_level="WARNING")
            )
            await running.server.wait_for_termination()
        else:
            server = grpc.aio.server()
            register(server)
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

    run_event_loop(serve())


async def _constant_floor(calls: int, enveloped: bool) -> dict[str, Any]:
    """Acquire against :class:`_ConstantAcquire`, measured like the real service."""
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_constant, args=(port, enveloped), daemon=True
    )
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
        measured = await _grpc_acquire(address, calls, health_floor=False)
        return {k: measured[k] for k in ("p50_us", "p99_us", "decisions_per_s")}
    finally:
        server.terminate()
        server.join()


async def _wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(400):
            try:
                response = await health.Check(health_pb2.HealthCheckRequest())
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{address} did not become SERVING")


def _request(index: int) -> ratelimit_pb.AcquireRequest:
    return ratelimit_pb.AcquireRequest(
        caller=common_pb.Caller(
            tenant_id="t1", service="chat", user_id=f"u{index % 1000}"
        ),
        model=MODEL,
        estimated_tokens=500,
    )


async def _time_sequential(
    call: Callable[[int], Awaitable[Any]], calls: int
) -> list[float]:
    for index in range(min(200, calls)):  # warm-up
        await call(index)
    samples = []
    for index in range(calls):
        started = time.perf_counter()
        await call(index)
        samples.append(time.perf_counter() - started)
    return samples


async def _grpc_acquire(
    address: str, calls: int, *, health_floor: bool = True
) -> dict[str, Any]:
    if health_floor:
        await _wait_serving(address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        allowed = 0

        async def acquire(index: int) -> None:
            nonlocal allowed
            response = await stub.Acquire(_request(index))
            allowed += response.decision == ratelimit_pb.DECISION_ALLOW

        latency = await _time_sequential(acquire, calls)
        floor: list[float] = []
        if health_floor:
            # The gRPC floor of the same server: a health check does no limiter work.
            health = health_pb2_grpc.HealthStub(channel)
            floor = await _time_sequential(
                lambda _: health.Check(health_pb2.HealthCheckRequest()), calls
            )
        queue = iter(range(calls * 5))

        async def worker() -> None:
            for index in queue:
                await acquire(index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return {
        **_summary(latency),
        **({"grpc_health_check_floor": _summary(floor)} if floor else {}),
        "decisions_per_s": round(calls * 5 / elapsed),
        "concurrency": CONCURRENCY,
        "all_allowed": allowed == calls * 6 + min(200, calls),
    }


async def _redis_floor(url: str, calls: int) -> dict[str, Any]:
    client = redis_asyncio.Redis.from_url(url)
    noop = client.register_script("return 0")
    store = RedisCounterStore(
        connect(url, socket_timeout_ms=1000, connect_timeout_ms=1000),
        f"{{bench-{uuid.uuid4().hex[:6]}}}:",
    )
    try:
        floor = await _time_sequential(lambda _: noop(), calls)

        def debits(index: int) -> list[BucketDebit]:
            big = 10**9
            keys = [
                (Layer.USER, f"t1:u{index % 1000}", ""),
                (Layer.SERVICE, f"chat:{MODEL}", MODEL),
                (Layer.GLOBAL, MODEL, MODEL),
            ]
            return [
                BucketDebit(
                    BucketKey(layer, key, metric),
                    big * SCALE,
                    big,
                    (1 if metric is Metric.REQUESTS else 500) * SCALE,
                    model,
                )
                for layer, key, model in keys
                for metric in (Metric.REQUESTS, Metric.TOKENS)
            ]

        script = await _time_sequential(
            lambda i: store.acquire(debits(i), models=(MODEL,), reservation=None),
            calls,
        )
    finally:
        await client.aclose()
        await store.close()
    return {"noop_evalsha": _summary(floor), "acquire_script": _summary(script)}


async def _exact_round(url: str, limits: Path) -> dict[str, int]:
    env = {
        "TOLLGATE_RATELIMIT_REDIS_URL": url,
        "TOLLGATE_RATELIMIT_REDIS_KEY_PREFIX": f"{{x-{uuid.uuid4().hex[:8]}}}:",
        "TOLLGATE_RATELIMIT_REPLICAS": "3",
        "TOLLGATE_RATELIMIT_REDIS_SOCKET_TIMEOUT_MS": "1000",
        "TOLLGATE_RATELIMIT_FAILURE_MODE": "closed",
    }
    with _services(3, limits, env, "0,1") as addresses:
        await asyncio.gather(*(_wait_serving(a) for a in addresses))
        channels = [grpc.aio.insecure_channel(a) for a in addresses]
        stubs = [ratelimit_pb2_grpc.RateLimitServiceStub(c) for c in channels]
        gate = asyncio.Semaphore(48)

        async def one(index: int) -> bool:
            async with gate:
                response = await stubs[index % 3].Acquire(_request(index))
                return bool(response.decision == ratelimit_pb.DECISION_ALLOW)

        admitted = sum(await asyncio.gather(*(one(i) for i in range(900))))
        for channel in channels:
            await channel.close()
    return {"attempts": 900, "limit": EXACT_LIMIT, "admitted": admitted}


async def main(calls: int, rounds: int, redis_version: str) -> dict[str, Any]:
    """Run every measurement; returns the results document."""
    with contextlib_tempdir() as workdir, _redis(workdir) as url:
        throughput_limits = workdir / "throughput.yaml"
        throughput_limits.write_text(THROUGHPUT_LIMITS)
        exact_limits = workdir / "exact.yaml"
        exact_limits.write_text(EXACT_LIMITS)
        backends: dict[str, Any] = {}
        for backend, env in (
            ("memory", {}),
            (
                "redis",
                {
                    "TOLLGATE_RATELIMIT_REDIS_URL": url,
                    "TOLLGATE_RATELIMIT_REDIS_SOCKET_TIMEOUT_MS": "1000",
                },
            ),
        ):
            with _services(1, throughput_limits, env, "0") as (address,):
                backends[backend] = await _grpc_acquire(address, calls)
        handler_floor = {
            "in_envelope": await _constant_floor(calls, enveloped=True),
            "bare_grpc": await _constant_floor(calls, enveloped=False),
        }
        floor = await _redis_floor(url, calls)
        exactness = [await _exact_round(url, exact_limits) for _ in range(rounds)]
    floor_p50 = floor["noop_evalsha"]["p50_us"]
    return {
        "benchmark": "ratelimit Acquire through gRPC; Redis floor; replica exactness",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # Other work on the machine inflates every latency here; read them with it.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "redis": redis_version,
        "sequential_calls": calls,
        "grpc_acquire": backends,
        "constant_acquire_handler": handler_floor,
        "redis_floor": floor,
        "ratios_to_noop_evalsha_p50": {
            "acquire_script": round(floor["acquire_script"]["p50_us"] / floor_p50, 2),
            "grpc_acquire_redis": round(backends["redis"]["p50_us"] / floor_p50, 2),
            "grpc_acquire_redis_over_memory_p50_us": round(
                backends["redis"]["p50_us"] - backends["memory"]["p50_us"], 1
            ),
        },
        "exactness": exactness,
    }


@contextmanager
def contextlib_tempdir() -> Iterator[Path]:
    """A temporary directory for Redis and the limits files."""
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as name:
        yield Path(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the service runs on CPU 0
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    document = asyncio.run(main(args.calls, args.rounds, version))
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
