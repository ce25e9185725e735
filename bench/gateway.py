"""The gateway's added latency, throughput and footprint, in both topologies.

What it runs, all on loopback and on this machine (services, simulator and this
load generator share its cores):

- the suite exactly as ``tollgate dev`` starts it (``services.devsuite``, free
  ports): the simulator at a fixed latency (50 ms by default), then either the
  five services as processes ("processes") or ``tollgate serve all`` ("all");
  rate limits raised so that nothing is refused;
- at each fixed rate (open loop: requests start on schedule, whatever is in
  flight), the simulator called directly with the ``openai`` SDK (Responses API,
  the call the gateway makes), then the same rate through the gateway:

  - ``miss``: every input new, the whole miss path (route, rate limit and exact +
    semantic lookup, budget, upstream, ledger, cache write);
  - ``bypass``: every input new with ``cache_bypass`` (no lookup, no write);
  - ``hit``: a primed set of inputs, answered by the exact tier;

- the gateway's added latency: its percentile minus the direct percentile at the
  same rate, in the same run;
- maximum throughput: a closed loop of ``--concurrency`` callers for each mix;
- each process's CPU (percent of one core over the scenario) and resident memory;
- a soak (``--soak`` seconds, 60 by default; 600 for the 10-minute version) at a
  steady mix of hits and bypass misses (a workload whose legitimate state is
  bounded), sampling every process's memory.

Every scenario is bounded in requests, in flight and in time; the script stops by
itself. Run from the repository root: ``python bench/gateway.py`` (about five
minutes). It prints tables and writes ``bench/results/gateway.json``,
``bench/results/gateway.md`` and the plots in ``docs/img/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import openai
import psutil
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEFAULT_PORTS, Suite, start_suite

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "img"
API_KEY = "tg_bench_key_0123456789abcdef"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
MODEL = "gpt-4.1-mini"
# Nothing is refused: the benchmark measures the path, not the limits.
LIMITS = """
default_tier: paid
tiers: {paid: {rpm: 1000000000, tpm: 1000000000}}
services: {chat: 1.0}
"""
CALL_TIMEOUT_SECONDS = 10.0
MAX_IN_FLIGHT = 1000
HIT_SET = 32


@dataclass
class Scenario:
    """One measured run: what was driven, what came back, what it cost."""

    topology: str
    target: str  # "direct" or "gateway"
    mix: str  # "direct", "miss", "bypass", "hit"
    mode: str  # "rate" or "max"
    offered_rps: float
    duration_s: float
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    cache_statuses: dict[str, int] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


class Footprint:
    """CPU and memory of the suite's processes and of this load generator."""

    def __init__(self, suite: Suite) -> None:
        self._processes = {
            name: psutil.Process(child.process.pid)
            for name, child in suite.processes.items()
        }
        self._processes["loadgen"] = psutil.Process(os.getpid())
        self._start: dict[str, float] = {}
        self._started = 0.0

    def begin(self) -> None:
        """Start a measurement."""
        self._started = time.perf_counter()
        self._start = {n: _cpu(p) for n, p in self._processes.items()}

    def end(self) -> tuple[dict[str, float], dict[str, float]]:
        """CPU percent of one core since ``begin``, and resident memory in MB."""
        wall = time.perf_counter() - self._started
        cpu = {
            n: round(100 * (_cpu(p) - self._start[n]) / wall, 1)
            for n, p in self._processes.items()
        }
        return cpu, self.rss()

    async def settle(
        self, idle_percent: float = 10.0, window_s: float = 0.5, limit_s: float = 30.0
    ) -> float:
        """Wait until every suite process is idle; returns the seconds waited.

        Work left over from a scenario (a miss's cache write embeds its input after
        the answer) must not be billed to the next one.
        """
        started = time.perf_counter()
        suite = {n: p for n, p in self._processes.items() if n != "loadgen"}
        while time.perf_counter() - started < limit_s:
            before = {n: _cpu(p) for n, p in suite.items()}
            await asyncio.sleep(window_s)
            busiest = max(
                100 * (_cpu(p) - before[n]) / window_s for n, p in suite.items()
            )
            if busiest < idle_percent:
                break
        return time.perf_counter() - started

    def rss(self) -> dict[str, float]:
        """Resident memory per process in MB."""
        return {
            n: round(p.memory_info().rss / 2**20, 1) for n, p in self._processes.items()
        }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


Call = Callable[[int], Awaitable[str]]


async def _timed(call: Call, i: int, sink: list[tuple[float, str]]) -> None:
    started = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(call(i), CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        outcome = f"error:{error.code().name}"
    except (TimeoutError, openai.APIError) as error:
        outcome = f"error:{type(error).__name__}"
    sink.append((time.perf_counter() - started, outcome))


async def open_loop(
    call: Call, rate: float, duration: float
) -> list[tuple[float, str]]:
    """Start ``rate`` calls per second on schedule for ``duration`` seconds."""
    results: list[tuple[float, str]] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_IN_FLIGHT:
            results.append((0.0, "error:LOADGEN_IN_FLIGHT_CAP"))
            continue
        task = asyncio.create_task(_timed(call, i, results))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=CALL_TIMEOUT_SECONDS + 1)
    return results


async def closed_loop(
    call: Call, concurrency: int, duration: float
) -> list[tuple[float, str]]:
    """``concurrency`` callers, each calling again as soon as answered."""
    results: list[tuple[float, str]] = []
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def caller() -> None:
        while time.perf_counter() < deadline:
            await _timed(call, next(counter), results)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return results


def summarise(
    scenario: Scenario, results: list[tuple[float, str]], wall: float
) -> Scenario:
    """Fill ``scenario`` from raw results."""
    ok = sorted(latency for latency, outcome in results if not outcome.startswith("e"))
    scenario.completed = len(ok)
    scenario.throughput_rps = round(len(ok) / wall, 1)
    for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        setattr(scenario, name, round(1000 * _percentile(ok, q), 2))
    for _, outcome in results:
        bucket = scenario.errors if outcome.startswith("error") else None
        if bucket is not None:
            bucket[outcome] = bucket.get(outcome, 0) + 1
        elif outcome:
            scenario.cache_statuses[outcome] = (
                scenario.cache_statuses.get(outcome, 0) + 1
            )
    return scenario


class Drivers:
    """The calls each mix makes: direct to the simulator, or through the gateway."""

    def __init__(self, suite: Suite, topology: str) -> None:
        self._channel = grpc.aio.insecure_channel(suite.gateway_address)
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        self._openai = openai.AsyncOpenAI(
            base_url=suite.upstream_base_url, api_key="sk-simulator", max_retries=0
        )
        self._run = f"{topology}-{uuid.uuid4().hex[:8]}"

    def _text(self, i: int) -> str:
        return f"Bench {self._run} request {uuid.uuid4().hex} number {i}: explain."

    async def direct(self, i: int) -> str:
        """The upstream call the gateway makes, made by the caller itself."""
        await self._openai.responses.create(
            model=MODEL, input=self._text(i), max_output_tokens=512
        )
        return ""

    async def _gateway(self, text: str, bypass: bool) -> str:
        reply = await self._stub.CreateResponse(
            gateway_pb.CreateResponseRequest(input=text, cache_bypass=bypass),
            metadata=AUTH,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return common_pb.CacheStatus.Name(reply.cache_status).removeprefix(
            "CACHE_STATUS_"
        )

    async def miss(self, i: int) -> str:
        """A new input: the whole miss path."""
        return await self._gateway(self._text(i), bypass=False)

    async def bypass(self, i: int) -> str:
        """A new input that skips the cache."""
        return await self._gateway(self._text(i), bypass=True)

    def _hit_text(self, i: int) -> str:
        return f"Bench {self._run} primed question {i % HIT_SET}: explain."

    async def prime(self) -> None:
        """Answer the hit set once, so that every later ``hit`` is an exact hit."""
        for i in range(HIT_SET):
            await self._gateway(self._hit_text(i), bypass=False)

    async def hit(self, i: int) -> str:
        """An input of the primed set."""
        return await self._gateway(self._hit_text(i), bypass=False)

    async def soak(self, i: int) -> str:
        """Half hits, half bypass misses: steady work with bounded state."""
        if i % 2:
            return await self.hit(i)
        return await self.bypass(i)

    async def breakers_closed(self, limit_s: float = 40.0) -> float:
        """Wait until no breaker of the gateway is open; returns the seconds waited.

        An overload opens the cache's breaker for its recovery timeout (30 s by
        default), and the next scenario would be served around the cache. A
        half-open breaker is let through: the scenario's first calls close it.
        """
        started = time.perf_counter()
        while time.perf_counter() - started < limit_s:
            status = await self._stub.GetStatus(
                gateway_pb.GetStatusRequest(), metadata=AUTH
            )
            if all(b.state != gateway_pb.BREAKER_STATE_OPEN for b in status.breakers):
                break
            await asyncio.sleep(0.5)
        return time.perf_counter() - started

    async def close(self) -> None:
        """Close the channel and the HTTP client."""
        await self._channel.close()
        await self._openai.close()


def _free_ports() -> dict[str, int]:
    sockets = [socket.socket() for _ in DEFAULT_PORTS]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {
            name: sock.getsockname()[1]
            for name, sock in zip(DEFAULT_PORTS, sockets, strict=True)
        }
    finally:
        for sock in sockets:
            sock.close()


def start(state_dir: Path, topology: str, latency_ms: float) -> Suite:
    """The suite in ``topology`` with the simulator at ``latency_ms``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    limits = state_dir / "limits.yaml"
    limits.write_text(LIMITS, encoding="utf-8")
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "OPENAI_"))
    }
    return start_suite(
        state_dir,
        API_KEY,
        ports=_free_ports(),
        base_env=clean_env,
        extra_env={
            "TOLLGATE_SIMULATOR_LATENCY_MS": str(latency_ms),
            "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
            "TOLLGATE_GATEWAY_BATCH_STORE_PATH": str(state_dir / "batches.sqlite3"),
        },
        all_in_one=topology == "all",
    )


async def measure(
    footprint: Footprint,
    drivers: Drivers,
    scenario: Scenario,
    call: Call,
    concurrency: int = 0,
) -> Scenario:
    """Let the suite go idle, then drive one scenario and summarise it."""
    await footprint.settle()
    await drivers.breakers_closed()
    footprint.begin()
    started = time.perf_counter()
    if scenario.mode == "max":
        results = await closed_loop(call, concurrency, scenario.duration_s)
    else:
        results = await open_loop(call, scenario.offered_rps, scenario.duration_s)
    wall = time.perf_counter() - started
    summarise(scenario, results, wall)
    scenario.cpu_percent, scenario.rss_mb = footprint.end()
    print(_row(scenario), flush=True)
    return scenario


async def bench_topology(
    topology: str, args: argparse.Namespace, state_dir: Path
) -> tuple[list[Scenario], list[dict[str, Any]]]:
    """Every scenario of one topology, then (for ``processes``) the soak."""
    suite = start(state_dir, topology, args.latency_ms)
    drivers = Drivers(suite, topology)
    footprint = Footprint(suite)
    scenarios: list[Scenario] = []
    soak: list[dict[str, Any]] = []
    duration = args.duration
    try:
        # Warm-up: connections, the embedder's first runs, the ledger's first rows.
        await open_loop(drivers.miss, 50, 2)
        await open_loop(drivers.direct, 50, 1)
        await drivers.prime()
        for rate in args.rates:
            for target, mix, call in (
                ("direct", "direct", drivers.direct),
                ("gateway", "miss", drivers.miss),
            ):
                scenario = Scenario(topology, target, mix, "rate", rate, duration)
                scenarios.append(await measure(footprint, drivers, scenario, call))
        top = max(args.rates)
        for mix, call in (("bypass", drivers.bypass), ("hit", drivers.hit)):
            scenario = Scenario(topology, "gateway", mix, "rate", top, duration)
            scenarios.append(await measure(footprint, drivers, scenario, call))
        for target, mix, call in (
            ("direct", "direct", drivers.direct),
            ("gateway", "miss", drivers.miss),
            ("gateway", "bypass", drivers.bypass),
            ("gateway", "hit", drivers.hit),
        ):
            scenario = Scenario(topology, target, mix, "max", 0.0, duration)
            scenarios.append(
                await measure(footprint, drivers, scenario, call, args.concurrency)
            )
        if topology == "processes" and args.soak > 0:
            soak = await run_soak(drivers, footprint, args.soak, args.soak_rate)
    finally:
        await drivers.close()
        suite.stop()
    return scenarios, soak


async def run_soak(
    drivers: Drivers, footprint: Footprint, seconds: float, rate: float
) -> list[dict[str, Any]]:
    """Drive the soak mix and sample every process's memory every few seconds."""
    await footprint.settle()
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    interval = max(1.0, seconds / 60)

    async def sample() -> None:
        while True:
            samples.append(
                {"t_s": round(time.perf_counter() - started, 1), **footprint.rss()}
            )
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample())
    results = await open_loop(drivers.soak, rate, seconds)
    sampler.cancel()
    samples.append({"t_s": round(time.perf_counter() - started, 1), **footprint.rss()})
    errors = sum(1 for _, outcome in results if outcome.startswith("error"))
    print(
        f"\nsoak: {len(results)} requests at {rate:g}/s for {seconds:g} s, "
        f"{errors} errors",
        flush=True,
    )
    return samples


def _row(s: Scenario) -> str:
    offered = "max" if s.mode == "max" else f"{s.offered_rps:g}/s"
    errors = sum(s.errors.values())
    return (
        f"{s.topology:<9} {s.target:<7} {s.mix:<6} {offered:>6} "
        f"{s.throughput_rps:>7.1f}/s p50 {s.p50_ms:7.2f} p95 {s.p95_ms:7.2f} "
        f"p99 {s.p99_ms:7.2f} ms  errors {errors}"
    )


def added_latency(scenarios: list[Scenario]) -> list[dict[str, Any]]:
    """Gateway minus direct, per percentile, at each rate of each topology."""
    rows = []
    for s in scenarios:
        if s.target != "gateway" or s.mode != "rate":
            continue
        direct = next(
            (
                d
                for d in scenarios
                if d.topology == s.topology
                and d.target == "direct"
                and d.mode == "rate"
                and d.offered_rps == s.offered_rps
            ),
            None,
        )
        if direct is None:
            continue
        rows.append(
            {
                "topology": s.topology,
                "mix": s.mix,
                "rps": s.offered_rps,
                **{
                    f"added_{p}_ms": round(
                        getattr(s, f"{p}_ms") - getattr(direct, f"{p}_ms"), 2
                    )
                    for p in ("p50", "p95", "p99")
                },
            }
        )
    return rows


def soak_verdict(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per process: memory after warm-up (first sample past 20%), at the end, growth."""
    if len(samples) < 3:
        return {}
    names = [k for k in samples[0] if k != "t_s"]
    settled = samples[max(1, len(samples) // 5)]
    last = samples[-1]
    minutes = max(1e-9, (last["t_s"] - settled["t_s"]) / 60)
    return {
        name: {
            "settled_mb": settled[name],
            "end_mb": last[name],
            "max_mb": max(s[name] for s in samples),
            "growth_mb_per_min": round((last[name] - settled[name]) / minutes, 2),
        }
        for name in names
    }


def markdown(
    scenarios: list[Scenario],
    added: list[dict[str, Any]],
    soak: dict[str, dict[str, float]],
    meta: dict[str, Any],
) -> str:
    """The tables of docs/performance.md."""
    lines = [
        "# Gateway benchmark",
        "",
        f"`python bench/gateway.py` on {meta['machine']}; simulator latency "
        f"{meta['latency_ms']:g} ms; {meta['duration_s']:g} s per scenario; "
        f"load average before {meta['load_average_before']}, after "
        f"{meta['load_average_after']} (other work on the machine skews the numbers).",
        "",
        "## Added latency (through the gateway minus direct, same rate, same run)",
        "",
        "| topology | mix | rate | added p50 ms | added p95 ms | added p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['topology']} | {r['mix']} | {r['rps']:g}/s | {r['added_p50_ms']} "
        f"| {r['added_p95_ms']} | {r['added_p99_ms']} |"
        for r in added
    ]
    lines += [
        "",
        "## Every scenario",
        "",
        "| topology | target | mix | offered | throughput | p50 ms | p95 ms "
        "| p99 ms | errors | cache | CPU % of a core | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        offered = "max" if s.mode == "max" else f"{s.offered_rps:g}/s"
        cache = ", ".join(f"{k.lower()} {v}" for k, v in s.cache_statuses.items())
        cpu = ", ".join(f"{k} {v:g}" for k, v in s.cpu_percent.items())
        rss = ", ".join(f"{k} {v:g}" for k, v in s.rss_mb.items())
        lines.append(
            f"| {s.topology} | {s.target} | {s.mix} | {offered} | "
            f"{s.throughput_rps:g}/s | {s.p50_ms} | {s.p95_ms} | {s.p99_ms} | "
            f"{sum(s.errors.values())} | {cache} | {cpu} | {rss} |"
        )
    if soak:
        lines += [
            "",
            f"## Soak ({meta['soak_s']:g} s at {meta['soak_rps']:g}/s, "
            "half hits, half bypass misses)",
            "",
            "| process | settled MB | end MB | max MB | growth MB/min |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['settled_mb']} | {v['end_mb']} | {v['max_mb']} "
            f"| {v['growth_mb_per_min']} |"
            for name, v in soak.items()
        ]
    return "\n".join(lines) + "\n"


def plot(
    scenarios: list[Scenario],
    added: list[dict[str, Any]],
    samples: list[dict[str, Any]],
) -> list[Path]:
    """Latency against load, and memory over the soak, as PNGs in docs/img."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(parents=True, exist_ok=True)
    paths = []
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s_topology, style in (("processes", "-"), ("all", "--")):
        for mix, colour in (("direct", "grey"), ("miss", "tab:blue")):
            points = sorted(
                (s.offered_rps, s.p50_ms, s.p99_ms)
                for s in scenarios
                if s.topology == s_topology and s.mix == mix and s.mode == "rate"
            )
            if not points:
                continue
            x = [p[0] for p in points]
            label = f"{mix} ({s_topology})"
            left.plot(
                x,
                [p[1] for p in points],
                style,
                color=colour,
                marker="o",
                label=f"{label} p50",
            )
            left.plot(
                x,
                [p[2] for p in points],
                style,
                color=colour,
                marker="^",
                alpha=0.6,
                label=f"{label} p99",
            )
        rows = sorted(
            (r["rps"], r["added_p50_ms"], r["added_p99_ms"])
            for r in added
            if r["topology"] == s_topology and r["mix"] == "miss"
        )
        if rows:
            x = [r[0] for r in rows]
            right.plot(
                x,
                [r[1] for r in rows],
                style,
                marker="o",
                label=f"added p50 ({s_topology})",
            )
            right.plot(
                x,
                [r[2] for r in rows],
                style,
                marker="^",
                label=f"added p99 ({s_topology})",
            )
    left.set(
        title="End-to-end latency, miss path",
        xlabel="offered load (req/s)",
        ylabel="ms",
    )
    left.set_yscale("log")
    left.legend(fontsize=7)
    right.axhline(2, color="green", linewidth=0.8, linestyle=":", label="goal p50")
    right.axhline(10, color="red", linewidth=0.8, linestyle=":", label="goal p99")
    right.set(
        title="Gateway's added latency (gateway - direct)",
        xlabel="offered load (req/s)",
        ylabel="ms",
    )
    right.set_yscale("symlog", linthresh=10)
    right.legend(fontsize=7)
    figure.tight_layout()
    path = IMAGES / "gateway_latency.png"
    figure.savefig(path, dpi=110)
    paths.append(path)
    plt.close(figure)
    if samples:
        figure, axis = plt.subplots(figsize=(7, 3.8))
        for name in (k for k in samples[0] if k != "t_s"):
            axis.plot(
                [s["t_s"] for s in samples], [s[name] for s in samples], label=name
            )
        axis.set(title="Resident memory during the soak", xlabel="s", ylabel="MB")
        axis.legend(fontsize=7)
        figure.tight_layout()
        path = IMAGES / "gateway_soak_memory.png"
        figure.savefig(path, dpi=110)
        paths.append(path)
        plt.close(figure)
    return paths


def main() -> None:
    """Run both topologies and the soak; print and save everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200])
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds per scenario"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=48,
        help="callers of the maximum-throughput runs",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="the simulator's fixed latency"
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=60.0,
        help="soak seconds (600: the 10-minute soak; 0: none)",
    )
    parser.add_argument("--soak-rate", type=float, default=200.0)
    parser.add_argument(
        "--topologies",
        nargs="+",
        default=["processes", "all"],
        choices=["processes", "all"],
    )
    parser.add_argument(
        "--name", default="gateway", help="results file stem in bench/results"
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()

    scenarios: list[Scenario] = []
    samples: list[dict[str, Any]] = []
    # Other work on the machine skews every number: record how busy it was.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        for topology in args.topologies:
            print(f"\n== topology: {topology}", flush=True)
            found, soak = asyncio.run(
                bench_topology(topology, args, Path(tmp) / topology)
            )
            scenarios += found
            samples = samples or soak
    added = added_latency(scenarios)
    verdict = soak_verdict(samples)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "latency_ms": args.latency_ms,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "soak_s": args.soak,
        "soak_rps": args.soak_rate,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print("\nadded latency (gateway - direct):")
    for row in added:
        print(
            f"  {row['topology']:<9} {row['mix']:<6} {row['rps']:>5g}/s  "
            f"p50 {row['added_p50_ms']:6.2f}  p95 {row['added_p95_ms']:6.2f}  "
            f"p99 {row['added_p99_ms']:6.2f} ms"
        )
    if verdict:
        print("\nsoak memory (MB): settled -> end, growth per minute")
        for name, v in verdict.items():
            print(
                f"  {name:<10} {v['settled_mb']:7.1f} -> {v['end_mb']:7.1f}  "
                f"{v['growth_mb_per_min']:+.2f}/min"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "added_latency": added,
                "scenarios": [asdict(s) for s in scenarios],
                "soak": {"samples": samples, "verdict": verdict},
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    (RESULTS / f"{args.name}.md").write_text(
        markdown(scenarios, added, verdict, meta), encoding="utf-8"
    )
    if not args.no_plots:
        for path in plot(scenarios, added, samples):
            print(f"wrote {path.relative_to(ROOT)}")
    print(f"wrote bench/results/{args.name}.json and .md")


if __name__ == "__main__":
    main()
