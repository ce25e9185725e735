"""CPU per request on the path that does not embed, before and after, in one run.

Starts the simulator (0 ms latency) and, for every ``--root`` given (a source tree:
this checkout, or ``git archive HEAD`` extracted elsewhere), Tollgate all-in-one
(``--mode all``) or as five processes (``--mode processes``), each tree's processes
run from that tree (its directory first on ``PYTHONPATH`` and as the working
directory), all with the same virtual environment. Then, in alternating rounds so
that a noisy machine hurts every tree alike, a closed-loop generator sends
``--requests`` requests at ``--concurrency`` in flight to each tree:

- ``--cache bypass``: a new prompt on every request, the cache bypassed
  (``x-tollgate-cache: bypass`` / ``cache_bypass``);
- ``--cache exact``: ``--concurrency`` prompts answered once first, then asked
  again and again (exact hits);
- ``--cache new``: a new prompt on every request with the cache on (both tiers
  looked up, a miss, the answer stored): the semantic tier's path. Every tree's
  index grows alike, since the rounds alternate and send as many requests.

With ``--stream`` every answer is streamed (``"stream": true`` through the HTTP door,
``StreamResponse`` through gRPC).

Each window bills the CPU of the tree's processes (psutil, user + system) from its
start until the tree is idle again (deferred work, such as a ledger row, counts)
divided by the requests answered; the simulator's and the generator's CPU are not
counted; each window's p50 and p99 latency as the generator saw it are kept too. The
medians over rounds, per process, per thread (by thread name) and
summed, and the ratio of every tree to the first are printed and, with ``--out``,
written as JSON.

``--flame DIR`` afterwards records one py-spy flame graph per tree and process
named in ``--flame-of`` (``--flame-rate`` samples a second, 100 by default, for
``--flame-seconds``; with ``--raw``, collapsed stacks per thread; with ``--gil``, only
the thread holding the GIL, so that time spent waiting for it is not counted) while
the same load runs, as ``DIR/flame_<process>_<label>.svg``.

Example (from the repository root)::

    git archive HEAD | tar -x -C /tmp/before
    python bench/profile_hot_path.py --root before=/tmp/before --root after=.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from benchenv import clean_env, free_port
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEFAULT_PORTS, Suite, start_suite

MODEL = "gpt-4.1-mini"
API_KEY = "tg_bench_hot_path_0123456789abcdef"
SIMULATOR_KEY = "sk-simulator"
LIMITS = """
default_tier: paid
tiers: {paid: {rpm: 1000000000, tpm: 1000000000}}
services: {chat: 1.0}
"""
CALL_TIMEOUT_SECONDS = 10.0
SETTLE_LIMIT_SECONDS = 20.0
IDLE_PERCENT = 10.0
THREADS_SHOWN = 6


def _clean_env() -> dict[str, str]:
    """Without ``PYTHONPATH`` too: each tree's processes get their own."""
    return clean_env("PYTHONPATH")


# -- CPU of process trees


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and its descendants."""
    spent: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
        spent[name] = total
    return spent


def _thread_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of every live thread, keyed ``process/thread name``.

    Threads of one name are summed (a pool's workers, gRPC's pollers; Python
    names none of its threads for the OS, so every thread but the main one is
    ``python``). A thread that exits during a window takes its CPU with it: the
    window reports what the live threads do not explain as
    ``process/(exited threads)``.
    """
    tick = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                for task in Path(f"/proc/{process.pid}/task").glob("*"):
                    with contextlib.suppress(OSError):
                        # The name may hold spaces and parentheses: split after it.
                        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                        seconds = (int(fields[11]) + int(fields[12])) / tick
                        main = task.name == str(process.pid)
                        comm = (task / "comm").read_text().strip()
                        key = f"{name}/{'main thread' if main else comm}"
                        spent[key] = spent.get(key, 0.0) + seconds
    return spent


async def _settle(pids: dict[str, int], window_s: float = 0.5) -> bool:
    deadline = time.perf_counter() + SETTLE_LIMIT_SECONDS
    while time.perf_counter() < deadline:
        before = sum(_cpu(pids).values())
        await asyncio.sleep(window_s)
        if 100 * (sum(_cpu(pids).values()) - before) / window_s < IDLE_PERCENT:
            return True
    return False


# -- doors


class Door:
    """One door of one tree: ``call(i)`` sends request ``i``."""

    def __init__(
        self, suite: Suite, door: str, cache: str, concurrency: int, stream: bool
    ) -> None:
        self._door = door
        self._bypass = cache == "bypass"
        self._new_prompts = cache != "exact"
        self._stream = stream
        self._fixed = [
            f"Hot path {uuid.uuid4().hex} prompt {i}: explain."
            for i in range(concurrency)
        ]
        self._url = f"{suite.http_base_url}/chat/completions"
        self._headers = {
            "authorization": f"Bearer {API_KEY}",
            "content-type": "application/json",
        }
        if self._bypass:
            self._headers["x-tollgate-cache"] = "bypass"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_SECONDS),
        )
        self._channel = grpc.aio.insecure_channel(suite.gateway_address)
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)

    def _prompt(self, i: int) -> str:
        if self._new_prompts:
            return f"Hot path {uuid.uuid4().hex} request {i}: explain."
        return self._fixed[i % len(self._fixed)]

    async def call(self, i: int) -> str:
        """One request; the cache status, or ``error:...``."""
        prompt = self._prompt(i)
        if self._door == "http":
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompt}],
                "stream": self._stream,
            }
            async with self._session.post(
                self._url, data=json.dumps(body), headers=self._headers
            ) as response:
                await response.read()
                if response.status != 200:
                    return f"error:http_{response.status}"
                return str(response.headers.get("x-tollgate-cache-status", ""))
        if self._stream:
            status = ""
            async for event in self._stub.StreamResponse(
                gateway_pb.StreamResponseRequest(
                    input=prompt, model=MODEL, cache_bypass=self._bypass
                ),
                metadata=(("authorization", f"Bearer {API_KEY}"),),
                timeout=CALL_TIMEOUT_SECONDS,
            ):
                if event.HasField("started"):
                    status = str(event.started.cache_status)
            return status
        reply = await self._stub.CreateResponse(
            gateway_pb.CreateResponseRequest(
                input=prompt, model=MODEL, cache_bypass=self._bypass
            ),
            metadata=(("authorization", f"Bearer {API_KEY}"),),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return str(reply.cache_status)

    async def prime(self) -> None:
        """Answer the fixed prompts once so that asking again hits exactly."""
        if self._new_prompts:
            return
        for i in range(len(self._fixed)):
            await self.call(i)
        await asyncio.sleep(1.0)  # the cache write happens after the answer

    async def close(self) -> None:
        """Close the session and the channel."""
        await self._session.close()
        await self._channel.close()


async def drive(
    door: Door, concurrency: int, requests: int, latencies: list[float] | None = None
) -> dict[str, int]:
    """``requests`` calls, ``concurrency`` at a time; outcomes counted.

    The latency (ms) of every call answered is appended to ``latencies``.
    """
    counter = iter(range(requests))
    outcomes: dict[str, int] = {}

    async def caller() -> None:
        for i in counter:
            started = time.perf_counter()
            try:
                outcome = await asyncio.wait_for(door.call(i), CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                outcome = f"error:{error.code().name}"
            except (TimeoutError, aiohttp.ClientError) as error:
                outcome = f"error:{type(error).__name__}"
            else:
                if latencies is not None:
                    latencies.append(1000 * (time.perf_counter() - started))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return outcomes


async def drive_for(door: Door, concurrency: int, seconds: float) -> None:
    """Keep ``concurrency`` calls in flight for ``seconds``."""
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def caller() -> None:
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(door.call(i), CALL_TIMEOUT_SECONDS)

    await asyncio.gather(*(caller() for _ in range(concurrency)))


# -- trees


@dataclass
class Tree:
    """One source tree's running Tollgate."""

    label: str
    root: Path
    suite: Suite
    pids: dict[str, int]
    door: Door | None = None
    windows: list[dict[str, float]] = field(default_factory=list)
    thread_windows: list[dict[str, float]] = field(default_factory=list)
    latency_windows: list[dict[str, float]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def start_simulator(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator at 0 ms latency; it and its base URL."""
    port = free_port()
    env = {
        **_clean_env(),
        "TOLLGATE_SIMULATOR_HOST": "127.0.0.1",
        "TOLLGATE_SIMULATOR_LATENCY_MS": "0",
        "TOLLGATE_SIMULATOR_PER_TOKEN_LATENCY_MS": "0",
    }
    with (state / "simulator.log").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.simulator", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{port}/_sim/stats"
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, f"http://127.0.0.1:{port}/v1"
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("the simulator did not start")


def start_tree(
    label: str, root: Path, state: Path, simulator_url: str, all_in_one: bool
) -> Tree:
    """Tollgate from ``root`` on free ports, calling the shared simulator."""
    state.mkdir(parents=True, exist_ok=True)
    limits = state / "limits.yaml"
    limits.write_text(LIMITS, encoding="utf-8")
    root = root.resolve()
    env = {**_clean_env(), "PYTHONPATH": f"{root}:{root / 'gen' / 'python'}"}
    here = Path.cwd()
    os.chdir(root)  # ``python -m`` puts the working directory first
    try:
        suite = start_suite(
            state,
            API_KEY,
            ports={name: free_port() for name in DEFAULT_PORTS},
            openai_api_key=SIMULATOR_KEY,
            openai_base_url=simulator_url,
            base_env=env,
            extra_env={
                "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
                "TOLLGATE_GATEWAY_BATCH_STORE_PATH": str(state / "batches.sqlite3"),
            },
            all_in_one=all_in_one,
        )
    finally:
        os.chdir(here)
    pids = {name: child.process.pid for name, child in suite.processes.items()}
    return Tree(label, root, suite, pids)


async def window(tree: Tree, concurrency: int, requests: int) -> None:
    """Settle, drive one window, settle, and record CPU ms per request."""
    assert tree.door is not None
    await _settle(tree.pids)
    before, threads_before = _cpu(tree.pids), _thread_cpu(tree.pids)
    latencies: list[float] = []
    outcomes = await drive(tree.door, concurrency, requests, latencies)
    await _settle(tree.pids)
    after, threads_after = _cpu(tree.pids), _thread_cpu(tree.pids)
    served = sum(n for k, n in outcomes.items() if not k.startswith("error:"))
    for key, n in outcomes.items():
        tree.outcomes[key] = tree.outcomes.get(key, 0) + n
    ms = {name: 1000 * (after[name] - before[name]) / max(1, served) for name in after}
    ms["total"] = sum(ms.values())
    tree.windows.append(ms)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else []
    if quantiles:
        tree.latency_windows.append({"p50": quantiles[49], "p99": quantiles[98]})
    line = " ".join(f"{k}={v:.3f}" for k, v in ms.items())
    latency = (
        f"; p50 {quantiles[49]:.2f} ms, p99 {quantiles[98]:.2f}" if quantiles else ""
    )
    print(f"  {tree.label}: {served} ok, CPU ms/request {line}{latency}", flush=True)
    threads = {
        key: 1000 * (seconds - threads_before.get(key, 0.0)) / max(1, served)
        for key, seconds in threads_after.items()
    }
    for name in after:
        explained = sum(v for k, v in threads.items() if k.startswith(f"{name}/"))
        threads[f"{name}/(exited threads)"] = max(0.0, ms[name] - explained)
    tree.thread_windows.append(threads)
    top = sorted(threads.items(), key=lambda item: -item[1])[:THREADS_SHOWN]
    print("    by thread: " + ", ".join(f"{k} {v:.3f}" for k, v in top), flush=True)


async def flame(
    tree: Tree,
    names: list[str],
    out: Path,
    concurrency: int,
    seconds: float,
    raw: bool = False,
    rate: int = 100,
    gil_only: bool = False,
) -> list[Path]:
    """py-spy record of each named process while the load runs."""
    assert tree.door is not None
    py_spy = Path(sys.executable).with_name("py-spy")
    written: list[Path] = []
    recorders = []
    for name in names:
        if name not in tree.pids:
            continue
        fmt = "raw" if raw else "flamegraph"
        svg = out / f"flame_{name}_{tree.label}.{'txt' if raw else 'svg'}"
        recorders.append(
            # Popen returns at once; the recorder runs beside the load.
            subprocess.Popen(  # noqa: ASYNC220
                [
                    str(py_spy),
                    "record",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(int(seconds)),
                    "--pid",
                    str(tree.pids[name]),
                    "--output",
                    str(svg),
                    "--format",
                    fmt,
                    # Sampling without pausing the process: a paused gateway
                    # misses its deadlines and profiles its fallbacks instead.
                    "--nonblocking",
                    # Raw stacks are read by bench/flame_parts.py, per thread.
                    *(["--threads"] if raw else []),
                    # Only the thread holding the GIL: what Python code costs,
                    # not the wall time threads spend waiting for it.
                    *(["--gil"] if gil_only else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        written.append(svg)
    await drive_for(tree.door, concurrency, seconds + 1.5)
    for recorder in recorders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            recorder.wait(timeout=30)
    return written


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _thread_medians(tree: Tree) -> dict[str, float]:
    """Median CPU ms per request of each thread name, largest first."""
    names = {name for window in tree.thread_windows for name in window}
    medians = {
        name: _median([window.get(name, 0.0) for window in tree.thread_windows])
        for name in names
    }
    ordered = sorted(medians.items(), key=lambda item: -item[1])
    return {name: round(ms, 3) for name, ms in ordered if ms >= 0.0005}


async def run(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    simulator, simulator_url = start_simulator(state)
    trees: list[Tree] = []
    try:
        for label, root in args.root:
            trees.append(
                start_tree(
                    label,
                    Path(root),
                    state / label,
                    simulator_url,
                    args.mode == "all",
                )
            )
        for tree in trees:
            tree.door = Door(
                tree.suite, args.door, args.cache, args.concurrency, args.stream
            )
            await tree.door.prime()
            await drive(tree.door, args.concurrency, args.warmup)
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            order = trees if round_number % 2 == 0 else list(reversed(trees))
            for tree in order:
                await window(tree, args.concurrency, args.requests)
        if args.flame is not None:
            args.flame.mkdir(parents=True, exist_ok=True)
            for tree in trees:
                for svg in await flame(
                    tree,
                    args.flame_of or list(tree.pids),
                    args.flame,
                    args.concurrency,
                    args.flame_seconds,
                    args.raw,
                    args.flame_rate,
                    args.gil,
                ):
                    print(f"wrote {svg}", flush=True)
    finally:
        for tree in trees:
            if tree.door is not None:
                await tree.door.close()
            tree.suite.stop()
            if args.logs is not None:
                for log in (state / tree.label / "logs").glob("*.log"):
                    target = args.logs / tree.label / log.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(log.read_bytes())
        simulator.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            simulator.wait(timeout=10)
    result: dict[str, Any] = {
        "mode": args.mode,
        "door": args.door,
        "stream": args.stream,
        "cache": args.cache,
        "concurrency": args.concurrency,
        "requests_per_window": args.requests,
        "rounds": args.rounds,
        "load_average_after": list(os.getloadavg()),
        "trees": {},
    }
    first = None
    for tree in trees:
        names = list(tree.windows[0]) if tree.windows else []
        medians = {n: _median([w[n] for w in tree.windows]) for n in names}
        result["trees"][tree.label] = {
            "root": str(tree.root),
            "median_cpu_ms_per_request": {k: round(v, 3) for k, v in medians.items()},
            "windows_total": [round(w["total"], 3) for w in tree.windows],
            "median_cpu_ms_per_request_by_thread": _thread_medians(tree),
            "median_latency_ms": {
                q: round(_median([w[q] for w in tree.latency_windows]), 3)
                for q in ("p50", "p99")
                if tree.latency_windows
            },
            "outcomes": tree.outcomes,
        }
        if first is None:
            first = medians.get("total")
        ratio = medians["total"] / first if first else float("nan")
        result["trees"][tree.label]["ratio_to_first"] = round(ratio, 3)
        parts = " ".join(f"{k}={v:.3f}" for k, v in medians.items())
        print(
            f"{tree.label}: median CPU ms/request {parts}; ratio to first {ratio:.3f}; "
            f"outcomes {tree.outcomes}",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        action="append",
        type=lambda s: tuple(s.split("=", 1)),
        help="label=path of a source tree (repeatable; default after=.)",
    )
    parser.add_argument("--mode", choices=("all", "processes"), default="all")
    parser.add_argument("--door", choices=("http", "grpc"), default="grpc")
    parser.add_argument("--cache", choices=("bypass", "exact", "new"), default="bypass")
    parser.add_argument(
        "--stream", action="store_true", help="stream every answer (both doors)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flame", type=Path, default=None)
    parser.add_argument("--flame-of", action="append", default=None)
    parser.add_argument("--flame-seconds", type=float, default=10.0)
    parser.add_argument("--flame-rate", type=int, default=100, help="samples/s")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument(
        "--raw", action="store_true", help="collapsed stacks (.txt), not SVG"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep logs here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.root = args.root or [("after", ".")]
    with tempfile.TemporaryDirectory(prefix="tollgate-hot-path-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
