"""Record throughput and latency of the costs service, on SQLite and on Postgres.

Starts the real service (``python -m services.costs``) as its own process on each
store, then drives it over gRPC from this process with many concurrent Records,
each with a unique request id (plus a share of replays), and reports durable
records per second and latency percentiles. Every acknowledged Record is committed
(SQLite: WAL + synchronous=FULL; Postgres: synchronous_commit=on) before its
answer: throughput comes from group commit, not from weaker durability.

    python bench/costs.py [--records 20000] [--concurrency 64] [--stores sqlite]

Two reference points are measured too, to show where the time goes: the same
Records booked in-process (``CostLedger.record`` on the same store, no gRPC), and
the same gRPC client against a server whose Record handler returns at once (the
ceiling of Python gRPC on this machine, with client and server sharing its cores).

Results are printed and written to bench/results/costs.json. Postgres needs a
local server reachable with ``--postgres-admin-dsn`` (default ``dbname=postgres``);
a temporary database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "costs.json"
GOAL_RECORDS_PER_SECOND = 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _sqlite_env() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as directory:
        yield {"TOLLGATE_COSTS_DATABASE_PATH": f"{directory}/costs.sqlite3"}


@contextlib.contextmanager
def _postgres_env(admin_dsn: str) -> Iterator[dict[str, str]]:
    import psycopg

    name = f"tollgate_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"TOLLGATE_COSTS_POSTGRES_DSN": f"dbname={name}"}
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _record(request_id: str, n: int) -> costs_pb.RecordRequest:
    return costs_pb.RecordRequest(
        request_id=request_id,
        caller=common_pb.Caller(
            tenant_id=f"tenant-{n % 8}", service="chat", user_id=f"user-{n % 100}"
        ),
        model=("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")[n % 3],
        deployment="blue",
        usage=common_pb.Usage(
            input_tokens=200 + n % 900,
            cached_input_tokens=n % 64,
            output_tokens=50 + n % 400,
        ),
        cache_status=common_pb.CACHE_STATUS_MISS,
        requested_model="auto",
    )


async def _wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError("the costs service exited at start")
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError("the costs service did not become SERVING")


async def _drive(
    address: str, records: int, concurrency: int, duplicate_every: int
) -> dict[str, Any]:
    latencies: list[float] = []
    duplicates = 0
    run = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = costs_pb2_grpc.CostsServiceStub(channel)
        # Warm-up: connections, prepared statements, the first WAL pages.
        await asyncio.gather(
            *(stub.Record(_record(f"warm-{run}-{n}", n)) for n in range(500))
        )
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(records):
            queue.put_nowait(n)

        async def worker() -> None:
            nonlocal duplicates
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                # Every duplicate_every-th call replays an earlier request id.
                replay = duplicate_every and n % duplicate_every == 0 and n > 0
                request_id = f"{run}-{n - 1 if replay else n}"
                started = time.perf_counter()
                answer = await stub.Record(_record(request_id, n), timeout=30)
                latencies.append(time.perf_counter() - started)
                duplicates += answer.duplicate

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        report = await stub.GetReport(costs_pb.GetReportRequest())
    latencies.sort()

    def percentile(p: float) -> float:
        return round(
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3, 2
        )

    return {
        "records": records,
        "duplicates": duplicates,
        "seconds": round(elapsed, 3),
        "records_per_second": round(records / elapsed),
        "latency_ms": {
            "p50": percentile(0.50),
            "p90": percentile(0.90),
            "p99": percentile(0.99),
            "max": round(latencies[-1] * 1e3, 2),
            "mean": round(statistics.fmean(latencies) * 1e3, 2),
        },
        "ledger_requests_after": report.total_requests,
    }


async def _in_process(
    env: dict[str, str], records: int, concurrency: int, log_level: str
) -> int:
    """Durable records/s of the ledger itself, called directly."""
    from services.core.clock import SystemClock
    from services.core.logging import configure_logging
    from services.core.pricing import load_pricing
    from services.costs.app import open_store
    from services.costs.config import CostsSettings
    from services.costs.domain import CostLedger
    from services.costs.servicer import CostsServicer

    configure_logging(log_level, service="costs")
    settings = CostsSettings(
        database_path=env.get("TOLLGATE_COSTS_DATABASE_PATH", ":memory:"),
        postgres_dsn=env.get("TOLLGATE_COSTS_POSTGRES_DSN"),
    )
    store = await open_store(settings)
    ledger = CostLedger(store, load_pricing(), SystemClock(), settings.timezone)
    servicer = CostsServicer(ledger)
    run = uuid.uuid4().hex[:8]
    waiting = [_record(f"inproc-{run}-{n}", n) for n in range(records)]

    async def worker() -> None:
        while waiting:
            await servicer.Record(waiting.pop(), None)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await ledger.close()
    await store.close()
    return round(records / elapsed)


class _ImmediateCosts(costs_pb2_grpc.CostsServiceServicer):
    async def Record(  # noqa: N802 - the RPC's name
        self, request: costs_pb.RecordRequest, context: object
    ) -> costs_pb.RecordResponse:
        return costs_pb.RecordResponse(cost_micros=1, currency_code="USD")

    async def GetReport(  # noqa: N802 - the RPC's name
        self, request: costs_pb.GetReportRequest, context: object
    ) -> costs_pb.GetReportResponse:
        return costs_pb.GetReportResponse()


def _serve_immediate(port: int) -> None:
    async def serve() -> None:
        server = grpc.aio.server()
        costs_pb2_grpc.add_CostsServiceServicer_to_server(_ImmediateCosts(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def _grpc_ceiling(args: argparse.Namespace) -> int:
    import multiprocessing

    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_immediate, args=(port,), daemon=True
    )
    server.start()
    try:

        async def main() -> dict[str, Any]:
            address = f"127.0.0.1:{port}"
            async with grpc.aio.insecure_channel(address) as channel:
                await channel.channel_ready()
            return await _drive(address, args.records, args.concurrency, 0)

        return int(asyncio.run(main())["records_per_second"])
    finally:
        server.terminate()
        server.join()


def _bench_store(
    store: str, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    port = _free_port()
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    process_env |= env | {"TOLLGATE_COSTS_LOG_LEVEL": args.log_level}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.costs", "--port", str(port)],
        env=process_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:

        async def main() -> dict[str, Any]:
            await _wait_serving(address, process)
            return await _drive(
                address, args.records, args.concurrency, args.duplicate_every
            )

        result = asyncio.run(main())
    finally:
        process.terminate()
        process.wait(timeout=30)
    in_process = asyncio.run(
        _in_process(env, args.records, args.concurrency, args.log_level)
    )
    return {"store": store, **result, "in_process_records_per_second": in_process}


def main() -> int:
    """Run the benchmark; print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--duplicate-every",
        type=int,
        default=10,
        help="every Nth Record replays the previous request id (0: never)",
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres-admin-dsn", default="dbname=postgres")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the service's log level (INFO logs one line per Record)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    results = []
    for store in args.stores.split(","):
        environment = (
            _sqlite_env()
            if store == "sqlite"
            else _postgres_env(args.postgres_admin_dsn)
        )
        with environment as env:
            result = _bench_store(store, env, args)
        results.append(result)
        latency = result["latency_ms"]
        print(
            f"{store:>8}: {result['records_per_second']:>6} durable records/s "
            f"over gRPC, p50 {latency['p50']} ms, p99 {latency['p99']} ms "
            f"({result['records']} Records, {result['duplicates']} replays, "
            f"{args.concurrency} concurrent); in-process "
            f"{result['in_process_records_per_second']} durable records/s"
        )
    ceiling = _grpc_ceiling(args)
    print(
        f" ceiling: {ceiling:>6} Records/s over gRPC to a handler that returns at once"
    )
    output = {
        "benchmark": "costs.Record over gRPC, durable group commit",
        "command": "python bench/costs.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "grpcio": grpc.__version__,
        },
        "settings": {
            "concurrency": args.concurrency,
            "duplicate_every": args.duplicate_every,
            "service_log_level": args.log_level,
        },
        "goal_sqlite_records_per_second": GOAL_RECORDS_PER_SECOND,
        "results": results,
        "grpc_ceiling_records_per_second": ceiling,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
