"""Tollgate next to a peer gateway: throughput, latency and CPU per request.

In one run, on this machine and on loopback only, every system is driven by the
same closed-loop load generator (``concurrency`` callers, each calling again as
soon as it is answered) against the same simulator at 0 ms latency, with a new
prompt on every request (``POST /v1/chat/completions``, model gpt-4.1-mini, one
user message):

- the simulator called directly (the baseline: the floor of the generator and the
  upstream on this machine);
- the framework floor (``bench/relay.py``): a relay on Tollgate's own frameworks
  (aiohttp and grpc.aio, the upstream on one aiohttp session) that decodes a
  request, calls the simulator and encodes the answer, with none of a gateway's
  work, through both doors: what Tollgate cannot spend less than on these
  libraries;
- Tollgate as five processes (``tollgate dev``'s topology, ``services.devsuite``)
  and all-in-one (``tollgate serve all``), each through its OpenAI-compatible HTTP
  door and through its gRPC door (``CreateResponse`` with the same prompt as one
  user message), each with the cache bypassed (``x-tollgate-cache: bypass``,
  ``cache_bypass``) and with the cache on (a new prompt: exact and semantic
  lookup, then the write);
- LiteLLM's proxy (``litellm[proxy]``, pinned, in a virtual environment of its own
  so its pins never touch the project's; no database; a master key; the model
  mapped to the simulator) with one uvicorn worker and with two;
- Tollgate's ``--workers`` (system ``workers``), cache bypassed, through both doors,
  with 1 and 2 workers: the five processes with the gateway as N workers, and the
  all-in-one as N workers with its state in a redis-server this script starts
  (limits, routing state and the exact tier shared; semantic tier off, which
  ``--workers`` needs without a Qdrant server). Its gRPC client opens one channel
  per caller (up to 16), so the kernel can spread connections over the workers;
  the redis-server's CPU is billed to the all-in-one.

At concurrency 1, 8 and 32, each cell reports requests/s, p50 and p99 latency and
the CPU milliseconds per request of the system's own processes (psutil's
cpu_times of each process tree before the window and after the system has gone
idle again, so work deferred past the answer, such as a cache write or a ledger
row, is billed to the requests that caused it, divided by the requests answered
in the window). The load generator's and the simulator's CPU are not counted;
they are recorded beside each cell.

Every loop is bounded in requests and in time; the script stops every process it
started. Run from the repository root: ``make bench-peers`` (installs LiteLLM
first), or ``python bench/peers.py`` (about 8 minutes). It prints the table and
writes ``bench/results/peers.json`` and ``bench/results/peers.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from benchenv import clean_env, free_port, free_ports_apart
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEFAULT_PORTS, Suite, start_suite

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "performance.md"
MODEL = "gpt-4.1-mini"
API_KEY = "tg_bench_peers_0123456789abcdef"
SIMULATOR_KEY = "sk-simulator"
LITELLM_KEY = "sk-bench-litellm-master"
# The newest release whose proxy extras (litellm-proxy-extras) the package index
# reachable here carries; 1.108 and later pin extras it does not have yet.
LITELLM_PIN = "litellm[proxy]==1.106.12"
CONCURRENCIES = (1, 8, 32)
WORKER_COUNTS = (1, 2)
MAX_GRPC_CHANNELS = 16
# Nothing is refused: the benchmark measures the path, not the limits.
LIMITS = """
default_tier: paid
tiers: {paid: {rpm: 1000000000, tpm: 1000000000}}
services: {chat: 1.0}
"""
CALL_TIMEOUT_SECONDS = 10.0
MAX_REQUESTS_PER_CELL = 200_000
START_TIMEOUT_SECONDS = 120.0
INSTALL_TIMEOUT_SECONDS = 600.0
SETTLE_LIMIT_SECONDS = 20.0
# A process tree is idle below this share of one core (health checks, timers).
IDLE_PERCENT = 10.0
# What a table shows for a value it does not have (an en dash).
NONE = "\u2013"
DOCS_BEGIN = "<!-- peers:begin (bench/peers.py writes this section) -->"
DOCS_END = "<!-- peers:end -->"


@dataclass
class Cell:
    """One system, door and cache setting at one concurrency: what it did and cost."""

    system: str
    door: str  # "http" or "grpc"
    cache: str  # "bypass", "on", or "-" (no cache)
    concurrency: int
    duration_s: float
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms_per_request: float | None = None
    """The system's own CPU from the window's start until it was idle again."""
    cpu_ms_per_request_in_window: float | None = None
    """The same, counted only while the load ran (deferred work left out)."""
    settled: bool = True
    """Whether the system went idle within the settle limit after the window."""
    simulator_cpu_ms_per_request: float = 0.0
    loadgen_cpu_ms_per_request: float = 0.0
    cache_statuses: dict[str, int] = field(default_factory=dict)
    rss_mb: float = 0.0
    """Resident memory of the system's processes after the window."""


@dataclass(frozen=True)
class System:
    """A row group of the table: a name and how to describe it."""

    key: str
    label: str


SIMULATOR = System("simulator", "simulator called directly")
RELAY = System("relay", "framework floor: bare relay, no gateway logic")
PROCESSES = System("tollgate-processes", "Tollgate, five processes")
ALL_IN_ONE = System("tollgate-all", "Tollgate all-in-one")


def _litellm_system(workers: int) -> System:
    noun = "worker" if workers == 1 else "workers"
    return System(f"litellm-{workers}", f"LiteLLM proxy, {workers} {noun}")


WORKER_SHAPES = ("gateway", "all")


def _workers_system(shape: str, workers: int) -> System:
    """Tollgate with ``--workers``: the gateway of five processes, or all-in-one."""
    if shape == "gateway":
        return System(
            f"tollgate-gateway-w{workers}",
            f"Tollgate, five processes, gateway --workers {workers}",
        )
    return System(
        f"tollgate-all-w{workers}",
        f"Tollgate all-in-one --workers {workers} (state in Redis)",
    )


# -- CPU and memory of process trees


class Tree:
    """The processes of one system: given roots and all their descendants."""

    def __init__(self, pids: list[int], descendants: bool = True) -> None:
        self._roots = pids
        self._descendants = descendants

    def _processes(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for pid in self._roots:
            try:
                root = psutil.Process(pid)
                found.append(root)
                if self._descendants:
                    found += root.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
        return found

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) of each live process, by pid."""
        seconds: dict[int, float] = {}
        for process in self._processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[process.pid] = float(times.user + times.system)
        return seconds

    def rss_mb(self) -> float:
        """Resident memory of the whole tree in MB."""
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return round(total / 2**20, 1)


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots (a new process counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def settle(tree: Tree, window_s: float = 0.5) -> bool:
    """Wait until ``tree`` is idle; whether it was within the settle limit.

    Work left over from one window (an embedding and a cache write after the
    answer, a ledger row) belongs to that window and must not land in the next.
    """
    deadline = time.perf_counter() + SETTLE_LIMIT_SECONDS
    while time.perf_counter() < deadline:
        before = tree.cpu()
        await asyncio.sleep(window_s)
        if 100 * _spent(before, tree.cpu()) / window_s < IDLE_PERCENT:
            return True
    return False


# -- the load generator

Call = Callable[[int], Awaitable[str]]
"""One request; returns the cache status ("" when none), or "error:<what>"."""


def _prompt(run: str, system: str, i: int) -> str:
    return f"Bench {run} {system} request {uuid.uuid4().hex} number {i}: explain."


class HttpTarget:
    """POST /v1/chat/completions to an OpenAI-compatible base URL."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        run: str,
        system: str,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self._url = f"{base_url}/chat/completions"
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            **(extra_headers or {}),
        }
        self._run = run
        self._system = system
        self._session: aiohttp.ClientSession | None = None

    async def open(self, concurrency: int) -> None:
        """A session holding at most ``concurrency`` keep-alive connections."""
        await self.close()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_SECONDS),
        )

    async def call(self, i: int) -> str:
        """One chat completion with a new prompt."""
        assert self._session is not None
        body = {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": _prompt(self._run, self._system, i)}
            ],
        }
        async with self._session.post(
            self._url, data=json.dumps(body), headers=self._headers
        ) as response:
            await response.read()
            if response.status != 200:
                return f"error:http_{response.status}"
            return str(response.headers.get("x-tollgate-cache-status", ""))

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class GrpcTarget:
    """Tollgate's CreateResponse with the same prompt as one user message.

    One channel (one HTTP/2 connection) by default; :meth:`open` with ``pooled``
    gives one per caller, up to :data:`MAX_GRPC_CHANNELS`, as the HTTP door's
    callers have one connection each: workers sharing a port are spread over by
    connection.
    """

    def __init__(
        self,
        address: str,
        run: str,
        system: str,
        bypass: bool,
        *,
        pooled: bool = False,
    ) -> None:
        self._address = address
        self._pooled = pooled
        self._channels = [grpc.aio.insecure_channel(address)]
        self._stubs = [gateway_pb2_grpc.GatewayServiceStub(self._channels[0])]
        self._run = run
        self._system = system
        self._bypass = bypass

    async def open(self, concurrency: int) -> None:
        """With ``pooled``: one channel per caller (each its own connection)."""
        if not self._pooled:
            return
        await self.close()
        count = max(1, min(concurrency, MAX_GRPC_CHANNELS))
        self._channels = [
            grpc.aio.insecure_channel(
                self._address,
                # A subchannel pool of its own: a TCP connection of its own.
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            for _ in range(count)
        ]
        self._stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in self._channels]

    async def call(self, i: int) -> str:
        """One CreateResponse with a new prompt."""
        stub = self._stubs[i % len(self._stubs)]
        reply = await stub.CreateResponse(
            gateway_pb.CreateResponseRequest(
                input=_prompt(self._run, self._system, i),
                model=MODEL,
                cache_bypass=self._bypass,
            ),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        status: str = common_pb.CacheStatus.Name(reply.cache_status)
        return status.removeprefix("CACHE_STATUS_").lower()

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels:
            await channel.close()


async def _timed(call: Call, i: int, sink: list[tuple[float, str]]) -> None:
    started = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(call(i), CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        outcome = f"error:{error.code().name}"
    except (TimeoutError, aiohttp.ClientError) as error:
        outcome = f"error:{type(error).__name__}"
    sink.append((time.perf_counter() - started, outcome))


async def closed_loop(
    call: Call, concurrency: int, duration: float
) -> list[tuple[float, str]]:
    """``concurrency`` callers, each calling again as soon as it is answered."""
    results: list[tuple[float, str]] = []
    deadline = time.perf_counter() + duration
    counter = iter(range(MAX_REQUESTS_PER_CELL))

    async def caller() -> None:
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            await _timed(call, i, results)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return results


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


# -- one cell


@dataclass
class Rig:
    """What every cell shares: the simulator's tree and the settings."""

    simulator: Tree
    loadgen: Tree
    duration_s: float
    warmup_s: float
    cells: list[Cell] = field(default_factory=list)


async def measure(
    rig: Rig,
    system: System,
    door: str,
    cache: str,
    concurrency: int,
    call: Call,
    tree: Tree | None,
    before_window: Callable[[], Awaitable[None]] | None = None,
) -> Cell:
    """Warm up, wait for idle, drive one window, wait for idle, and bill the CPU."""
    cell = Cell(system.key, door, cache, concurrency, rig.duration_s)
    await closed_loop(call, concurrency, rig.warmup_s)
    if tree is not None:
        await settle(tree)
    await settle(rig.simulator)
    if before_window is not None:
        await before_window()
    own = tree.cpu() if tree is not None else {}
    upstream = rig.simulator.cpu()
    loadgen = rig.loadgen.cpu()
    started = time.perf_counter()
    results = await closed_loop(call, concurrency, rig.duration_s)
    wall = time.perf_counter() - started
    loadgen_spent = _spent(loadgen, rig.loadgen.cpu())
    upstream_spent = _spent(upstream, rig.simulator.cpu())
    ok = sorted(latency for latency, outcome in results if not _failed(outcome))
    cell.completed = len(ok)
    cell.requests_per_s = round(len(ok) / wall, 1)
    cell.p50_ms = round(1000 * _percentile(ok, 0.5), 2)
    cell.p99_ms = round(1000 * _percentile(ok, 0.99), 2)
    for _, outcome in results:
        bucket = cell.errors if _failed(outcome) else cell.cache_statuses
        if outcome:
            bucket[outcome] = bucket.get(outcome, 0) + 1
    served = max(1, cell.completed)
    cell.loadgen_cpu_ms_per_request = round(1000 * loadgen_spent / served, 2)
    cell.simulator_cpu_ms_per_request = round(1000 * upstream_spent / served, 2)
    if tree is not None:
        in_window = tree.cpu()
        cell.rss_mb = tree.rss_mb()
        cell.settled = await settle(tree)
        cell.cpu_ms_per_request_in_window = round(
            1000 * _spent(own, in_window) / served, 2
        )
        cell.cpu_ms_per_request = round(1000 * _spent(own, tree.cpu()) / served, 2)
    print(_cell_line(system, cell), flush=True)
    rig.cells.append(cell)
    return cell


def _failed(outcome: str) -> bool:
    return outcome.startswith("error:")


def _cell_line(system: System, cell: Cell) -> str:
    cpu = "-" if cell.cpu_ms_per_request is None else f"{cell.cpu_ms_per_request:.2f}"
    errors = sum(cell.errors.values())
    return (
        f"{system.label:<30} {cell.door:<4} {cell.cache:<6} c={cell.concurrency:<3}"
        f"{cell.requests_per_s:>8.1f}/s  p50 {cell.p50_ms:7.2f}  p99 {cell.p99_ms:7.2f}"
        f" ms  cpu {cpu:>6} ms/req  errors {errors}"
    )


# -- processes: the simulator, the Tollgate suite, LiteLLM


def _clean_env() -> dict[str, str]:
    """This environment without any Tollgate, OpenAI or LiteLLM settings."""
    return clean_env("LITELLM_")


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until ``url`` answers 200; raise with the log if the process dies."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {START_TIMEOUT_SECONDS:g} s; see {log}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this script started, then SIGKILL after 15 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    # Workers may outlive their parent: end whatever is left of the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def start_simulator(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator at 0 ms latency on a free port; returns it and its base URL."""
    port = free_port()
    log = state_dir / "simulator.log"
    env = {
        **_clean_env(),
        "TOLLGATE_SIMULATOR_HOST": "127.0.0.1",
        "TOLLGATE_SIMULATOR_LATENCY_MS": "0",
        "TOLLGATE_SIMULATOR_PER_TOKEN_LATENCY_MS": "0",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.simulator", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/_sim/stats", process, log)
    except BaseException:
        _stop_group(process)
        raise
    return process, f"http://127.0.0.1:{port}/v1"


def start_relay(
    state_dir: Path, simulator_url: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    """``bench/relay.py`` on free ports; returns it, its base URL and gRPC address."""
    http_port, grpc_port = free_port(), free_port()
    log = state_dir / "relay.log"
    env = {**_clean_env(), "PYTHONPATH": f"{ROOT}:{ROOT / 'gen' / 'python'}"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, str(ROOT / "bench" / "relay.py")),
                *("--upstream", simulator_url, "--api-key", SIMULATOR_KEY),
                *("--http-port", str(http_port), "--grpc-port", str(grpc_port)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{http_port}/v1"
    try:
        # The relay opens its HTTP port after its gRPC port.
        _wait_http(f"{base_url}/health", process, log)
    except BaseException:
        _stop_group(process)
        raise
    return process, base_url, f"127.0.0.1:{grpc_port}"


def start_tollgate(
    state_dir: Path,
    simulator_url: str,
    all_in_one: bool,
    extra_env: dict[str, str] | None = None,
) -> Suite:
    """The suite on free ports, calling the shared simulator, limits raised."""
    state_dir.mkdir(parents=True, exist_ok=True)
    limits = state_dir / "limits.yaml"
    limits.write_text(LIMITS, encoding="utf-8")
    # Room above each port for a second worker's metrics endpoint.
    ports = free_ports_apart(list(DEFAULT_PORTS), above_each=1)
    return start_suite(
        state_dir,
        API_KEY,
        ports=ports,
        # The simulator is the "OpenAI" here: the suite starts none of its own.
        openai_api_key=SIMULATOR_KEY,
        openai_base_url=simulator_url,
        base_env=_clean_env(),
        extra_env={
            "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
            "TOLLGATE_GATEWAY_BATCH_STORE_PATH": str(state_dir / "batches.sqlite3"),
            **(extra_env or {}),
        },
        all_in_one=all_in_one,
    )


def start_redis(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of this run on a free port; returns it and its URL.

    Raises:
        RuntimeError: redis-server is not installed or does not answer.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(state_dir)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe,
        ):
            probe.sendall(b"PING\r\n")
            if probe.recv(16).startswith(b"+PONG"):
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    _stop_group(process)
    raise RuntimeError("redis-server did not answer")


def workers_env(shape: str, workers: int, redis_url: str | None) -> dict[str, str]:
    """The environment of a ``--workers`` system (shared state for the all-in-one)."""
    env = {"TOLLGATE_WORKERS": str(workers)}
    if shape == "all" and redis_url is not None:
        env.update(
            {
                "TOLLGATE_RATELIMIT_REDIS_URL": redis_url,
                "TOLLGATE_ROUTER_REDIS_URL": redis_url,
                "TOLLGATE_CACHE_EXACT_BACKEND": "redis",
                "TOLLGATE_CACHE_REDIS_URL": redis_url,
                "TOLLGATE_CACHE_SEMANTIC_BACKEND": "disabled",
            }
        )
    return env


async def wait_workers(suite: Suite, workers: int, limit_s: float = 120.0) -> None:
    """Block until the supervisor says every worker serves (its log line).

    Raises:
        TimeoutError: not within ``limit_s``.
    """
    if workers <= 1:
        return
    child = suite.processes["all" if "all" in suite.processes else "gateway"]
    deadline = time.perf_counter() + limit_s
    while '"workers_started"' not in child.log_path.read_text(encoding="utf-8"):
        if time.perf_counter() > deadline or child.process.poll() is not None:
            raise TimeoutError(f"{workers} workers did not start; see {child.log_path}")
        await asyncio.sleep(0.2)


def litellm_version(venv: Path) -> str | None:
    """The LiteLLM version installed in ``venv``, or None."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def ensure_litellm(venv: Path) -> str:
    """Install the pinned LiteLLM proxy into its own ``venv``; returns its version.

    Raises RuntimeError with pip's own error when it cannot be installed.
    """
    wanted = LITELLM_PIN.split("==")[1]
    if litellm_version(venv) == wanted and (venv / "bin" / "litellm").exists():
        return wanted
    print(f"installing {LITELLM_PIN} into {venv} ...", flush=True)
    if not (venv / "bin" / "python").exists():
        # The base interpreter, not this project's virtual environment.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run(
            [base, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT_SECONDS
        )
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", LITELLM_PIN],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=False,
    )
    if installed.returncode != 0:
        errors = [
            line
            for line in installed.stderr.splitlines()
            if line.startswith("ERROR") or "error" in line.lower()
        ]
        raise RuntimeError(
            f"pip install {LITELLM_PIN} failed: " + " / ".join(errors[-3:])
        )
    version = litellm_version(venv)
    if version is None:
        raise RuntimeError(f"{LITELLM_PIN} installed, but litellm does not import")
    return version


def start_litellm(
    venv: Path, state_dir: Path, simulator_url: str, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    """LiteLLM's proxy with ``workers`` workers; returns it and its base URL."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": simulator_url,
                            "api_key": SIMULATOR_KEY,
                        },
                    }
                ],
                # No database: the master key is the only key.
                "general_settings": {"master_key": LITELLM_KEY},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    port = free_port()
    log = state_dir / "litellm.log"
    env = {
        **_clean_env(),
        # The cost map ships with the package; no fetch from the network at start.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(venv / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                str(workers),
            ],
            env=env,
            cwd=state_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health/readiness", process, log)
    except BaseException:
        _stop_group(process)
        raise
    return process, f"http://127.0.0.1:{port}/v1"


# -- the systems, one after the other


async def _probe(target: HttpTarget, limit_s: float = 15.0) -> str | None:
    """One request through ``target``; the error text if it never succeeds."""
    await target.open(1)
    deadline = time.perf_counter() + limit_s
    outcome = "error:never tried"
    while time.perf_counter() < deadline:
        try:
            outcome = await target.call(0)
        except (TimeoutError, aiohttp.ClientError) as error:
            outcome = f"error:{type(error).__name__}: {error}"
        if not _failed(outcome):
            return None
        await asyncio.sleep(0.5)
    return outcome.removeprefix("error:")


async def bench_simulator(
    rig: Rig,
    simulator_url: str,
    run: str,
    concurrencies: tuple[int, ...] = CONCURRENCIES,
) -> None:
    """The baseline: the load generator straight at the simulator."""
    target = HttpTarget(simulator_url, SIMULATOR_KEY, run, SIMULATOR.key)
    try:
        for concurrency in concurrencies:
            await target.open(concurrency)
            await measure(rig, SIMULATOR, "http", "-", concurrency, target.call, None)
    finally:
        await target.close()


async def bench_relay(
    rig: Rig,
    state: Path,
    simulator_url: str,
    run: str,
    notes: dict[str, str],
    concurrencies: tuple[int, ...] = CONCURRENCIES,
) -> None:
    """The framework floor through both doors at every concurrency."""
    print(f"\n== {RELAY.label}", flush=True)
    try:
        process, base_url, address = await asyncio.to_thread(
            start_relay, state, simulator_url
        )
    except (RuntimeError, TimeoutError) as error:
        notes[RELAY.key] = f"did not start: {error}"
        print(notes[RELAY.key], flush=True)
        return
    tree = Tree([process.pid])
    http = HttpTarget(base_url, SIMULATOR_KEY, run, RELAY.key)
    grpc_target = GrpcTarget(address, run, RELAY.key, bypass=True)
    try:
        for concurrency in concurrencies:
            await http.open(concurrency)
            await measure(rig, RELAY, "http", "-", concurrency, http.call, tree)
            await measure(rig, RELAY, "grpc", "-", concurrency, grpc_target.call, tree)
    finally:
        await http.close()
        await grpc_target.close()
        await asyncio.to_thread(_stop_group, process)


async def _breakers_closed(stub: Any, limit_s: float = 40.0) -> None:
    """Wait until no breaker of the gateway is open (an overload opens the cache's)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        status = await stub.GetStatus(
            gateway_pb.GetStatusRequest(),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
        )
        if all(b.state != gateway_pb.BREAKER_STATE_OPEN for b in status.breakers):
            return
        await asyncio.sleep(0.5)


async def bench_tollgate(
    rig: Rig,
    system: System,
    suite: Suite,
    run: str,
    notes: dict[str, str],
    *,
    caches: tuple[str, ...] = ("bypass", "on"),
    concurrencies: tuple[int, ...] = CONCURRENCIES,
    pooled: bool = False,
    extra_pids: tuple[int, ...] = (),
) -> None:
    """Both doors, cache bypassed and on, at every concurrency.

    ``pooled``: the gRPC client opens a channel per caller; ``extra_pids`` are
    billed to the system too (its redis-server).
    """
    tree = Tree([*(c.process.pid for c in suite.processes.values()), *extra_pids])
    status_channel = grpc.aio.insecure_channel(suite.gateway_address)
    stub = gateway_pb2_grpc.GatewayServiceStub(status_channel)

    async def ready() -> None:
        await _breakers_closed(stub)

    try:
        for cache in caches:
            headers = {"x-tollgate-cache": "bypass"} if cache == "bypass" else {}
            http = HttpTarget(suite.http_base_url, API_KEY, run, system.key, headers)
            grpc_target = GrpcTarget(
                suite.gateway_address,
                run,
                system.key,
                bypass=cache == "bypass",
                pooled=pooled,
            )
            problem = await _probe(http)
            if problem is not None:
                notes[f"{system.key} http"] = f"the HTTP door did not answer: {problem}"
                print(f"{system.label}: HTTP door: {problem}", flush=True)
            try:
                for step, concurrency in enumerate(concurrencies):
                    # The doors take turns going first: with the cache on, the
                    # semantic index grows with every miss, and a door always
                    # measured second would always meet the larger index.
                    doors = ["http", "grpc"] if step % 2 == 0 else ["grpc", "http"]
                    for door in doors:
                        if door == "http" and problem is not None:
                            continue
                        if door == "http":
                            await http.open(concurrency)
                        else:
                            await grpc_target.open(concurrency)
                        call = http.call if door == "http" else grpc_target.call
                        await measure(
                            rig, system, door, cache, concurrency, call, tree, ready
                        )
            finally:
                await http.close()
                await grpc_target.close()
    finally:
        await status_channel.close()


async def bench_litellm(
    rig: Rig,
    system: System,
    process: subprocess.Popen[bytes],
    base_url: str,
    run: str,
    notes: dict[str, str],
    concurrencies: tuple[int, ...] = CONCURRENCIES,
) -> None:
    """LiteLLM's proxy at every concurrency."""
    target = HttpTarget(base_url, LITELLM_KEY, run, system.key)
    tree = Tree([process.pid])
    try:
        problem = await _probe(target, limit_s=30.0)
        if problem is not None:
            notes[system.key] = f"the proxy did not answer: {problem}"
            print(f"{system.label}: {problem}", flush=True)
            return
        for concurrency in concurrencies:
            await target.open(concurrency)
            await measure(rig, system, "http", "-", concurrency, target.call, tree)
    finally:
        await target.close()


async def bench_workers(
    args: argparse.Namespace,
    state: Path,
    rig: Rig,
    simulator_url: str,
    run: str,
    notes: dict[str, str],
) -> None:
    """Tollgate with ``--workers N``: both doors, cache bypassed, each shape and N."""
    redis: subprocess.Popen[bytes] | None = None
    redis_url = None
    if "all" in args.worker_shapes:
        try:
            redis, redis_url = await asyncio.to_thread(start_redis, state / "redis")
        except RuntimeError as error:
            notes["tollgate-all-w"] = f"all-in-one workers not run: {error}"
            print(notes["tollgate-all-w"], flush=True)
    try:
        for shape in args.worker_shapes:
            if shape == "all" and redis is None:
                continue
            for workers in args.workers:
                system = _workers_system(shape, workers)
                print(f"\n== {system.label}", flush=True)
                env = workers_env(shape, workers, redis_url)
                try:
                    suite = await asyncio.to_thread(
                        start_tollgate,
                        state / system.key,
                        simulator_url,
                        shape == "all",
                        env,
                    )
                except (RuntimeError, TimeoutError) as error:
                    notes[system.key] = f"did not start: {error}"
                    print(notes[system.key], flush=True)
                    continue
                try:
                    await wait_workers(suite, workers)
                    await bench_tollgate(
                        rig,
                        system,
                        suite,
                        run,
                        notes,
                        caches=("bypass",),
                        concurrencies=args.concurrency,
                        pooled=True,
                        extra_pids=()
                        if redis is None or shape != "all"
                        else (redis.pid,),
                    )
                except TimeoutError as error:
                    notes[system.key] = str(error)
                    print(notes[system.key], flush=True)
                finally:
                    await asyncio.to_thread(suite.stop)
                if redis is not None:
                    await asyncio.to_thread(_flush_redis, redis_url)
    finally:
        if redis is not None:
            _stop_group(redis)


def _flush_redis(url: str | None) -> None:
    """Empty the run's Redis between systems (limits and entries start afresh)."""
    if url is None:
        return
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        conn.recv(16)


async def run_all(args: argparse.Namespace, state: Path) -> tuple[Rig, dict[str, Any]]:
    """Every system in turn against one simulator; returns the cells and notes."""
    notes: dict[str, str] = {}
    versions: dict[str, str] = {}
    run = uuid.uuid4().hex[:8]
    litellm_ready: str | None = None
    if "litellm" in args.systems:
        try:
            versions["litellm"] = await asyncio.to_thread(
                ensure_litellm, args.litellm_venv
            )
            litellm_ready = versions["litellm"]
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            notes["litellm"] = f"LiteLLM could not be installed: {error}"
            print(notes["litellm"], flush=True)
    simulator, simulator_url = start_simulator(state)
    rig = Rig(
        simulator=Tree([simulator.pid]),
        # This process alone: every system it measures is one of its children.
        loadgen=Tree([os.getpid()], descendants=False),
        duration_s=args.duration,
        warmup_s=args.warmup,
    )
    try:
        if "simulator" in args.systems:
            await bench_simulator(rig, simulator_url, run, args.concurrency)
        if "relay" in args.systems:
            await bench_relay(rig, state, simulator_url, run, notes, args.concurrency)
        for key, system, all_in_one in (
            ("processes", PROCESSES, False),
            ("all", ALL_IN_ONE, True),
        ):
            if key not in args.systems:
                continue
            print(f"\n== {system.label}", flush=True)
            try:
                suite = await asyncio.to_thread(
                    start_tollgate, state / key, simulator_url, all_in_one
                )
            except (RuntimeError, TimeoutError) as error:
                notes[system.key] = f"did not start: {error}"
                print(notes[system.key], flush=True)
                continue
            try:
                await bench_tollgate(
                    rig, system, suite, run, notes, concurrencies=args.concurrency
                )
            finally:
                await asyncio.to_thread(suite.stop)
        if "workers" in args.systems:
            await bench_workers(args, state, rig, simulator_url, run, notes)
        if litellm_ready is not None:
            for workers in args.litellm_workers:
                system = _litellm_system(workers)
                print(f"\n== {system.label}", flush=True)
                try:
                    process, base_url = await asyncio.to_thread(
                        start_litellm,
                        args.litellm_venv,
                        state / system.key,
                        simulator_url,
                        workers,
                    )
                except (RuntimeError, TimeoutError) as error:
                    notes[system.key] = f"did not start: {error}"
                    print(notes[system.key], flush=True)
                    continue
                try:
                    await bench_litellm(
                        rig, system, process, base_url, run, notes, args.concurrency
                    )
                finally:
                    await asyncio.to_thread(_stop_group, process)
    finally:
        _stop_group(simulator)
    return rig, {"notes": notes, "versions": versions}


# -- reporting


def _row_label(cell: Cell) -> str:
    system = {
        SIMULATOR.key: SIMULATOR.label,
        RELAY.key: RELAY.label,
        PROCESSES.key: PROCESSES.label,
        ALL_IN_ONE.key: ALL_IN_ONE.label,
    }.get(cell.system)
    for shape in WORKER_SHAPES:
        prefix = _workers_system(shape, 0).key.removesuffix("0")
        if system is None and cell.system.startswith(prefix):
            system = _workers_system(shape, int(cell.system.removeprefix(prefix))).label
    if system is None:
        workers = int(cell.system.rsplit("-", 1)[1])
        return _litellm_system(workers).label + ", no database"
    if cell.system == SIMULATOR.key:
        return system
    door = "HTTP door" if cell.door == "http" else "gRPC"
    if cell.system == RELAY.key:
        return f"{system}, {door}"
    cache = "cache bypassed" if cell.cache == "bypass" else "with the cache"
    return f"{system}, {door}, {cache}"


def _fmt(value: float | None, digits: int) -> str:
    if value is None or value != value:  # None or NaN
        return NONE
    return f"{value:,.{digits}f}"


def table(cells: list[Cell]) -> list[str]:
    """The side-by-side table: one row per system, door and cache setting."""
    rows: dict[str, dict[int, Cell]] = {}
    for cell in cells:
        rows.setdefault(_row_label(cell), {})[cell.concurrency] = cell
    lines = [
        "| system | req/s at 1 / 8 / 32 in flight | p50 ms at 1 / 8 / 32 "
        "| p99 ms at 1 / 8 / 32 | CPU ms per request at 1 / 8 / 32 | errors |",
        "|---|---|---|---|---|---|",
    ]
    for label, by_c in rows.items():
        ordered = [by_c.get(c) for c in CONCURRENCIES]

        def col(attr: str, digits: int, ordered: list[Cell | None] = ordered) -> str:
            return " / ".join(
                _fmt(None if c is None else getattr(c, attr), digits) for c in ordered
            )

        errors = sum(sum(c.errors.values()) for c in ordered if c is not None)
        lines.append(
            f"| {label} | {col('requests_per_s', 0)} | {col('p50_ms', 1)} "
            f"| {col('p99_ms', 1)} | {col('cpu_ms_per_request', 2)} | {errors} |"
        )
    return lines


def door_against_grpc(cells: list[Cell]) -> list[str]:
    """The HTTP door's CPU per request minus the gRPC path's, same run."""
    lines = []
    for system in (PROCESSES, ALL_IN_ONE):
        for cache in ("bypass", "on"):
            deltas = []
            for c in CONCURRENCIES:
                http = _find(cells, system.key, "http", cache, c)
                via_grpc = _find(cells, system.key, "grpc", cache, c)
                if (
                    http is None
                    or via_grpc is None
                    or http.cpu_ms_per_request is None
                    or via_grpc.cpu_ms_per_request is None
                ):
                    deltas.append(NONE)
                    continue
                deltas.append(
                    f"{http.cpu_ms_per_request - via_grpc.cpu_ms_per_request:+.2f}"
                )
            if any(d != NONE for d in deltas):
                lines.append(
                    f"| {system.label}, "
                    f"{'cache bypassed' if cache == 'bypass' else 'with the cache'} "
                    f"| {' / '.join(deltas)} |"
                )
    if not lines:
        return []
    return [
        "| system | HTTP door minus gRPC, CPU ms per request at 1 / 8 / 32 |",
        "|---|---|",
        *lines,
    ]


def _find(cells: list[Cell], system: str, door: str, cache: str, c: int) -> Cell | None:
    return next(
        (
            x
            for x in cells
            if x.system == system
            and x.door == door
            and x.cache == cache
            and x.concurrency == c
        ),
        None,
    )


def details(cells: list[Cell]) -> list[str]:
    """Every cell with what the main table leaves out."""
    lines = [
        "| system | door | cache | in flight | requests | req/s | p50 ms | p99 ms "
        "| CPU ms/req | in window | settled | simulator CPU ms/req "
        "| load generator CPU ms/req | RSS MB | cache statuses | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(c.cache_statuses.items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(c.errors.items()))
        lines.append(
            f"| {c.system} | {c.door} | {c.cache} | {c.concurrency} | {c.completed} "
            f"| {c.requests_per_s:g} | {c.p50_ms} | {c.p99_ms} "
            f"| {_fmt(c.cpu_ms_per_request, 2)} "
            f"| {_fmt(c.cpu_ms_per_request_in_window, 2)} "
            f"| {'yes' if c.settled else 'no'} | {c.simulator_cpu_ms_per_request} "
            f"| {c.loadgen_cpu_ms_per_request} | {c.rss_mb or NONE} "
            f"| {statuses or NONE} | {errors or NONE} |"
        )
    return lines


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python and library versions of this run."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("tollgate", "aiohttp", "grpcio", "openai", "psutil"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def source_revision() -> str:
    """The commit measured, and the service files changed on top of it, if any."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        # --no-optional-locks: only read, never refresh the index.
        dirty = subprocess.run(
            [
                *("git", "--no-optional-locks", "-C", str(ROOT), "status"),
                *("--porcelain", "--", "services", "gen", "protos"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout; pass --source)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" with uncommitted {', '.join(changed)}" if changed else "")


def markdown(cells: list[Cell], meta: dict[str, Any]) -> str:
    """bench/results/peers.md."""
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()))
    lines = [
        "# Tollgate next to LiteLLM",
        "",
        f"`python bench/peers.py` on {m['cpu']}, {m['logical_cores']} logical cores "
        f"({m['physical_cores']} physical), {m['memory_gb']} GB, {m['os']}, Python "
        f"{m['python']}; {versions}; code {meta['source']}. Simulator at 0 ms latency; "
        f"{meta['duration_s']:g} s per cell after {meta['warmup_s']:g} s of warm-up; "
        f"the load generator, the simulator and the system under test share the "
        f"machine. Load average before {meta['load_average_before']}, after "
        f"{meta['load_average_after']}; run took {meta['wall_s']:.0f} s.",
        "",
        "CPU ms per request: the system's own processes (every process of its tree), "
        "from the start of the window until it was idle again, divided by the "
        "requests answered in the window; the load generator's and the simulator's "
        "CPU are not counted (they are in the details).",
        "",
        *table(cells),
    ]
    against = door_against_grpc(cells)
    if against:
        lines += ["", "## The HTTP door against the gRPC path it wraps", "", *against]
    if meta["notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {k}: {v}" for k, v in meta["notes"].items()]
    lines += ["", "## Every cell", "", *details(cells)]
    return "\n".join(lines) + "\n"


def update_docs(cells: list[Cell], meta: dict[str, Any]) -> None:
    """Replace the section between the markers in docs/performance.md."""
    text = DOCS.read_text(encoding="utf-8")
    if DOCS_BEGIN not in text or DOCS_END not in text:
        print(f"{DOCS} has no peers markers; left as it is", flush=True)
        return
    m = meta["machine"]
    body = [
        DOCS_BEGIN,
        "",
        f"Run of {meta['date']} on {m['logical_cores']} cores ({m['cpu']}), Python "
        f"{m['python']}, LiteLLM {meta['versions'].get('litellm', 'not run')}, "
        f"code {meta['source']}; "
        f"{meta['duration_s']:g} s per cell. Full results: "
        "`bench/results/peers.md` and `.json`.",
        "",
        *table(cells),
    ]
    against = door_against_grpc(cells)
    if against:
        body += ["", "The HTTP door against the gRPC path it wraps, same run:", ""]
        body += against
    if meta["notes"]:
        body += [""] + [f"- {k}: {v}" for k, v in meta["notes"].items()]
    body += ["", DOCS_END]
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    DOCS.write_text(head + "\n".join(body) + tail, encoding="utf-8")


def main() -> None:
    """Run every system, print the table, write the results and the docs table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measured cell"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of warm-up before each cell"
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["simulator", "relay", "processes", "all", "workers", "litellm"],
        choices=["simulator", "relay", "processes", "all", "workers", "litellm"],
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=list(WORKER_COUNTS),
        help="Tollgate --workers counts of the workers system",
    )
    parser.add_argument(
        "--worker-shapes",
        nargs="+",
        default=list(WORKER_SHAPES),
        choices=list(WORKER_SHAPES),
        help="the workers system's shapes: the gateway of five processes, all-in-one",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(CONCURRENCIES),
        choices=list(CONCURRENCIES),
        help="callers in flight to measure (a smoke run: one of them)",
    )
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=ROOT / ".venv-litellm",
        help="LiteLLM's own virtual environment (made and filled when missing)",
    )
    parser.add_argument("--litellm-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--name", default="peers", help="results file stem in bench/results"
    )
    parser.add_argument(
        "--source",
        help="what code is measured, when this is not a git checkout "
        "(default: the checkout's commit and uncommitted service files)",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="leave docs/performance.md as it is"
    )
    args = parser.parse_args()
    args.concurrency = tuple(args.concurrency)
    # LiteLLM starts in its own state directory: a relative path would miss.
    args.litellm_venv = args.litellm_venv.resolve()

    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tollgate-peers-") as tmp:
        rig, extra = asyncio.run(run_all(args, Path(tmp)))
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": {**machine()["versions"], **extra["versions"]},
        "source": args.source or source_revision(),
        "litellm_pin": LITELLM_PIN,
        "model": MODEL,
        "simulator_latency_ms": 0,
        "concurrencies": list(CONCURRENCIES),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
        "notes": extra["notes"],
    }
    print()
    print("\n".join(table(rig.cells)))
    against = door_against_grpc(rig.cells)
    if against:
        print()
        print("\n".join(against))
    for key, note in meta["notes"].items():
        print(f"note: {key}: {note}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"meta": meta, "cells": [asdict(c) for c in rig.cells]}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    (RESULTS / f"{args.name}.md").write_text(
        markdown(rig.cells, meta), encoding="utf-8"
    )
    print(f"wrote bench/results/{args.name}.json and .md")
    if not args.no_docs:
        update_docs(rig.cells, meta)


if __name__ == "__main__":
    main()
