"""Resident memory of each Tollgate service at idle and after load, before and after.

Each service is started the way ``tollgate dev`` starts it (``services.devsuite``:
its own process, embedded defaults, the built-in simulator as OpenAI), on free
ports, and measured from ``/proc``:

- RSS (``VmRSS``), PSS and USS (private clean + private dirty) from
  ``/proc/PID/smaps_rollup``, split into anonymous and file-backed pages, and the
  number of threads;
- at idle (a few seconds after every service answers its health check) and after
  a short load through the gateway's gRPC door: ``--requests`` CreateResponse
  calls with the cache bypassed, as many with the cache on (a new prompt each:
  exact and semantic lookup, then the write), a tenth of them repeated (exact
  hits) and a tenth as many new prompts routed ``auto`` (the router loads its
  complexity encoder), then a twentieth as many long ``auto`` prompts (a pasted
  log and a question: the encoder's largest runs), ``--concurrency`` in flight;
- the same for the all-in-one process (``tollgate serve all``).

Per service it also records where the memory of the imports goes: RSS after
``import services.<svc>.__main__`` in a fresh interpreter, the top-level packages
by import time (``python -X importtime``) and the Python allocations of the
imports by package (``tracemalloc``; memory allocated by C and Rust extensions,
such as a tokenizer's vocabulary, shows only in RSS).

"Before" is a source tree given with ``--before`` (by default ``git archive HEAD``
unpacked into a temporary directory), run with this same interpreter, its own
``services`` and generated ``tollgate`` packages first on ``PYTHONPATH``; "after"
is this working tree. Run from the repository root::

    .venv/bin/python bench/memory.py            # about 3 minutes

It prints the tables and writes ``bench/results/memory.json`` and
``bench/results/memory.md``. The machine is shared and noisy; RSS varies by a
few MB from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchenv import clean_env, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVICES = ("ratelimit", "cache", "router", "costs", "gateway")
API_KEY = "tg_bench_memory_0123456789abcdef"
MODEL = "gpt-4.1-mini"
# Nothing is refused: the benchmark loads the path, not the limits.
LIMITS = """
default_tier: paid
tiers: {paid: {rpm: 1000000000, tpm: 1000000000}}
services: {chat: 1.0}
"""
GOALS_MB = {"cache": 250.0, "all": 450.0}
GOAL_OTHER_MB = 90.0
IDLE_WAIT_SECONDS = 5.0
SETTLE_SECONDS = 3.0
CALL_TIMEOUT_SECONDS = 10.0
TOP_N = 8
# What a table shows for a value it does not have (an en dash).
NONE = "\u2013"


# -- reading /proc


def _kb(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def process_memory(pid: int) -> dict[str, float]:
    """RSS, PSS, USS, anonymous and file-backed resident MB, and threads of ``pid``."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    status = Path(f"/proc/{pid}/status").read_text()
    rss = _kb(status, "VmRSS")
    anon = _kb(rollup, "Anonymous")
    uss = _kb(rollup, "Private_Clean") + _kb(rollup, "Private_Dirty")
    threads = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
    return {
        "rss_mb": round(rss / 1024, 1),
        "pss_mb": round(_kb(rollup, "Pss") / 1024, 1),
        "uss_mb": round(uss / 1024, 1),
        "anon_mb": round(anon / 1024, 1),
        "file_mb": round((rss - anon) / 1024, 1),
        "threads": int(threads.group(1)) if threads else 0,
    }


# -- the measuring child: runs with the measured tree first on sys.path


def _clean_env() -> dict[str, str]:
    """Without ``MALLOC_`` settings too: they would change what is measured."""
    return clean_env("MALLOC_")


async def _load(address: str, requests: int, concurrency: int) -> dict[str, int]:
    """Bypassed, cache-on (new prompts) and repeated (exact hit) CreateResponse."""
    import grpc
    from tollgate.common.v1 import common_pb2 as common_pb
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
    from tollgate.gateway.v1 import gateway_pb2_grpc

    run = uuid.uuid4().hex[:8]
    outcomes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)

        async def call(prompt: str, bypass: bool, model: str) -> None:
            try:
                reply = await stub.CreateResponse(
                    gateway_pb.CreateResponseRequest(
                        input=prompt, model=model, cache_bypass=bypass
                    ),
                    metadata=(("authorization", f"Bearer {API_KEY}"),),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
                status = common_pb.CacheStatus.Name(reply.cache_status)
                outcome = status.removeprefix("CACHE_STATUS_").lower()
            except grpc.aio.AioRpcError as error:
                outcome = f"error:{error.code().name}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        async def phase(prompts: list[str], bypass: bool, model: str = MODEL) -> None:
            queue = iter(prompts)

            async def caller() -> None:
                for prompt in queue:
                    await call(prompt, bypass, model)

            await asyncio.gather(*(caller() for _ in range(concurrency)))

        def prompt(kind: str, i: int) -> str:
            return f"Memory bench {run} {kind} request {i}: explain token buckets."

        def long_prompt(i: int) -> str:
            log = "\n".join(
                f"2026-12-07T00:{m:02d}:{i % 60:02d}Z worker-{m % 7} INFO job {i}-{m} "
                f"took {m * 37 % 900} ms, queue depth {m * 13 % 41}"
                for m in range(60)
            )
            return f"Memory bench {run} request {i}. Here is our log:\n{log}\n" + (
                "Which worker is slowest on average, and is the queue the cause?"
            )

        await phase([prompt("bypass", i) for i in range(requests)], True)
        await phase([prompt("cached", i) for i in range(requests)], False)
        await phase([prompt("cached", i) for i in range(requests // 10)], False)
        await phase([prompt("auto", i) for i in range(requests // 10)], False, "auto")
        # Long ``auto`` prompts (a pasted log and a question): the encoder's runs
        # over its longest inputs, whose buffers are the largest it allocates.
        await phase([long_prompt(i) for i in range(requests // 20)], False, "auto")
    return outcomes


def _measure_topology(
    all_in_one: bool, requests: int, concurrency: int, settings: dict[str, str]
) -> Any:
    from services.devsuite import DEFAULT_PORTS, start_suite

    with tempfile.TemporaryDirectory(prefix="tollgate-mem-") as tmp:
        state = Path(tmp)
        limits = state / "limits.yaml"
        limits.write_text(LIMITS, encoding="utf-8")
        ports = {name: free_port() for name in DEFAULT_PORTS}
        started = time.monotonic()
        suite = start_suite(
            state,
            API_KEY,
            ports=ports,
            base_env=_clean_env(),
            extra_env={
                "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
                "TOLLGATE_SIMULATOR_LATENCY_MS": "0",
                "TOLLGATE_SIMULATOR_PER_TOKEN_LATENCY_MS": "0",
                **settings,
            },
            all_in_one=all_in_one,
        )
        try:
            ready_s = time.monotonic() - started
            time.sleep(IDLE_WAIT_SECONDS)
            pids = {n: c.process.pid for n, c in suite.processes.items()}
            idle = {n: process_memory(pid) for n, pid in pids.items()}
            began = time.monotonic()
            outcomes = asyncio.run(_load(suite.gateway_address, requests, concurrency))
            load_s = time.monotonic() - began
            time.sleep(SETTLE_SECONDS)
            loaded = {n: process_memory(pid) for n, pid in pids.items()}
        finally:
            suite.stop()
    return {
        "ready_s": round(ready_s, 1),
        "load_s": round(load_s, 1),
        "outcomes": outcomes,
        "idle": idle,
        "after_load": loaded,
    }


_IMPORT_PROBE = r"""
import importlib, json, re, sys, tracemalloc
def rss():
    text = open('/proc/self/status').read()
    return int(re.search(r'VmRSS:\s+(\d+)', text).group(1)) / 1024
trace = sys.argv[1] == 'trace'
base = rss()
if trace:
    tracemalloc.start()
for module in sys.argv[2:]:
    importlib.import_module(module)
after = rss()
if not trace:
    heavy = ['openai', 'numpy', 'onnxruntime', 'pydantic', 'yaml', 'qdrant_client',
             'qdrant_edge', 'opentelemetry.sdk', 'aiohttp', 'redis', 'psycopg',
             'httpx', 'prometheus_client', 'tokenizers', 'uvloop', 'structlog']
    print(json.dumps({
        'base_rss_mb': round(base, 1),
        'import_rss_mb': round(after, 1),
        'modules': len(sys.modules),
        'heavy': [m for m in heavy if m in sys.modules],
    }))
    sys.exit(0)
snapshot = tracemalloc.take_snapshot()
by_package = {}
for stat in snapshot.statistics('filename'):
    name = stat.traceback[0].filename
    parts = name.replace('\\', '/').split('/')
    if 'site-packages' in parts:
        i = parts.index('site-packages')
        package = parts[i + 1].removesuffix('.py')
    elif 'services' in parts:
        i = len(parts) - 1 - parts[::-1].index('services')
        package = 'services.' + parts[i + 1].removesuffix('.py')
    elif 'tollgate' in parts:
        package = 'tollgate (generated)'
    elif name.startswith('<frozen'):
        package = '<frozen>'
    else:
        package = 'stdlib'
    by_package[package] = by_package.get(package, 0) + stat.size
print(json.dumps({
    'python_alloc_mb': round(sum(by_package.values()) / 2**20, 1),
    'by_package_mb': {k: round(v / 2**20, 2) for k, v in sorted(
        by_package.items(), key=lambda kv: -kv[1])[:12]},
}))
"""


def _import_breakdown(modules: list[str]) -> dict[str, Any]:
    env = {**_clean_env(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    result: dict[str, Any] = {"imported": modules}
    for mode in ("rss", "trace"):
        probe = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE, mode, *modules],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if probe.returncode != 0:
            # Recorded, not fatal: the service runs below say whether it starts.
            result["error"] = probe.stderr.strip().splitlines()[-1:]
            return result
        result.update(json.loads(probe.stdout.strip().splitlines()[-1]))
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    self_us: dict[str, int] = {}
    for line in timing.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        name = fields[2].strip()
        top = name.split(".")[0]
        if top == "services" and name.count(".") >= 1:
            top = ".".join(name.split(".")[:2])
        self_us[top] = self_us.get(top, 0) + int(fields[0])
    ranked = sorted(self_us.items(), key=lambda kv: -kv[1])[:TOP_N]
    result["import_ms_total"] = round(sum(self_us.values()) / 1000)
    result["import_ms_by_package"] = {k: round(v / 1000) for k, v in ranked}
    return result


def measure_child(
    requests: int, concurrency: int, settings: dict[str, str]
) -> dict[str, Any]:
    """Everything for the tree first on ``sys.path``: imports, five, all-in-one."""
    import services

    # What a service process imports before it serves: its entry point and its
    # app (an entry point may defer the app, to fork workers first).
    imports = {
        name: _import_breakdown(
            ["services.allinone", *(f"services.{s}.app" for s in SERVICES)]
            if name == "all"
            else [f"services.{name}.__main__", f"services.{name}.app"]
        )
        for name in (*SERVICES, "simulator", "all")
    }
    print(f"  imports measured ({Path(services.__file__).parent})", flush=True)
    five = _measure_topology(False, requests, concurrency, settings)
    print(f"  five processes: {_brief(five)}", flush=True)
    one = _measure_topology(True, requests, concurrency, settings)
    print(f"  all-in-one: {_brief(one)}", flush=True)
    return {
        "tree": str(Path(services.__file__).resolve().parents[1]),
        "imports": imports,
        "processes": five,
        "all_in_one": one,
    }


def _brief(run: dict[str, Any]) -> str:
    idle = ", ".join(f"{n} {m['rss_mb']:.0f}" for n, m in run["idle"].items())
    after = ", ".join(f"{n} {m['rss_mb']:.0f}" for n, m in run["after_load"].items())
    return f"idle RSS MB: {idle}; after load: {after}; outcomes {run['outcomes']}"


# -- the driver


def run_tree(
    tree: Path,
    label: str,
    requests: int,
    concurrency: int,
    settings: Sequence[str] = (),
) -> Any:
    """Run the measuring child with ``tree``'s packages first on the path."""
    print(f"{label}: {tree}", flush=True)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {
            **_clean_env(),
            "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'gen' / 'python'}",
        }
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                out.name,
                "--requests",
                str(requests),
                "--concurrency",
                str(concurrency),
                *(f"--setting={setting}" for setting in settings),
            ],
            cwd=tree,
            env=env,
            check=True,
        )
        return json.loads(Path(out.name).read_text())


def _head_revision() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _git_archive_head() -> tuple[Path, str]:
    target = Path(tempfile.mkdtemp(prefix="before_mem_"))
    revision = _head_revision()
    archive = subprocess.Popen(
        ["git", "archive", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive.stdout, check=True)
    archive.wait()
    return target, revision


def _goal(name: str) -> float | None:
    if name == "simulator":
        return None
    return GOALS_MB.get(name, GOAL_OTHER_MB)


def _cell(run: dict[str, Any], phase: str, name: str) -> dict[str, float] | None:
    cell: dict[str, float] | None = run[phase].get(name)
    return cell


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``results`` as Markdown."""
    runs = results["runs"]
    labels = list(runs)
    lines = [
        "# Memory of each service: before and after",
        "",
        f"Measured by `bench/memory.py` on {results['machine']['when']} "
        f"({results['machine']['cpus']} cores, Python "
        f"{results['machine']['python']}); each service started as `tollgate dev` "
        "starts it (own process, embedded defaults, simulator as OpenAI). Load: "
        f"{results['requests']} CreateResponse with the cache bypassed, "
        f"{results['requests']} with the cache on (new prompts), "
        f"{results['requests'] // 10} repeated, {results['requests'] // 10} new "
        f"prompts routed `auto`, then {results['requests'] // 20} `auto` prompts "
        "of a 60-line pasted log and a question (about 4,400 characters), "
        f"{results['concurrency']} in flight. "
        "The machine is shared with other work: RSS moves by a few MB between runs.",
        "",
        "Trees: " + "; ".join(f"{k} = `{v['tree']}`" for k, v in runs.items()),
        "",
        "Settings of the 'after' runs: "
        + (", ".join(f"`{s}`" for s in results.get("after_settings", [])) or "none"),
        "",
        "## RSS (MB), goal, and whether it is met",
        "",
        "| process | goal | "
        + " | ".join(f"{lb} idle | {lb} after load" for lb in labels)
        + " | met (after) |",
        "|---|---:|" + "---:|---:|" * len(labels) + "---|",
    ]
    topologies = [("processes", (*SERVICES, "simulator")), ("all_in_one", ("all",))]
    for topology, names in topologies:
        for name in names:
            goal = _goal(name)
            cells = []
            worst = 0.0
            for label in labels:
                run = runs[label][topology]
                idle = _cell(run, "idle", name)
                loaded = _cell(run, "after_load", name)
                cells.append(f"{idle['rss_mb']:.0f}" if idle else NONE)
                cells.append(f"{loaded['rss_mb']:.0f}" if loaded else NONE)
                if label == labels[-1] and idle and loaded:
                    worst = max(idle["rss_mb"], loaded["rss_mb"])
            met = NONE if goal is None else ("yes" if worst <= goal else "**no**")
            goal_text = NONE if goal is None else f"≤ {goal:.0f}"
            lines.append(
                f"| {name} | {goal_text} | " + " | ".join(cells) + f" | {met} |"
            )
    for label in labels:
        five = runs[label]["processes"]
        total = {
            phase: sum(m["rss_mb"] for m in five[phase].values())
            for phase in ("idle", "after_load")
        }
        lines.append("")
        lines.append(
            f"{label}: five services + simulator hold {total['idle']:.0f} MB at idle, "
            f"{total['after_load']:.0f} MB after load; load outcomes "
            f"{five['outcomes']} (five) / {runs[label]['all_in_one']['outcomes']} "
            "(all-in-one)."
        )
    lines += [
        "",
        "## Detail after load: PSS, USS, anonymous and file-backed pages, threads",
        "",
        "| tree | process | RSS | PSS | USS | anon | file | threads |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        for topology, _ in topologies:
            for name, m in runs[label][topology]["after_load"].items():
                lines.append(
                    f"| {label} | {name} | {m['rss_mb']:.0f} | {m['pss_mb']:.0f} | "
                    f"{m['uss_mb']:.0f} | {m['anon_mb']:.0f} | {m['file_mb']:.0f} | "
                    f"{m['threads']} |"
                )
    lines += [
        "",
        "## Imports: RSS after importing a service, import time, allocations",
        "",
        "RSS after `import services.<svc>.__main__, services.<svc>.app` in a fresh "
        "interpreter (before any tokenizer, model or server is loaded), the heavy "
        "packages it pulls in, the packages with the "
        "most import time (self time, ms) and Python allocations (tracemalloc, MB; "
        "C and Rust allocations show only in RSS).",
        "",
    ]
    for label in labels:
        lines += [
            f"### {label}",
            "",
            "| module | RSS after import | modules | heavy packages | import ms (top) "
            "| Python allocations MB (top) |",
            "|---|---:|---:|---|---|---|",
        ]
        for name, imp in runs[label]["imports"].items():
            if "error" in imp:
                lines.append(f"| {name} | {NONE} | {NONE} | {imp['error']} | | |")
                continue
            times = ", ".join(
                f"{k} {v}" for k, v in list(imp["import_ms_by_package"].items())[:5]
            )
            allocs = ", ".join(
                f"{k} {v:.1f}" for k, v in list(imp["by_package_mb"].items())[:5]
            )
            lines.append(
                f"| {name} | {imp['import_rss_mb']:.0f} | {imp['modules']} | "
                f"{', '.join(imp['heavy'])} | {times} | {allocs} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure the trees, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="source tree of 'before'")
    parser.add_argument(
        "--before-label", help="what the --before tree is (a commit), for the tables"
    )
    parser.add_argument("--only-after", action="store_true")
    parser.add_argument(
        "--reuse-before",
        action="store_true",
        help="keep the 'before' runs of bench/results/memory.json, measure 'after'",
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every service of the 'after' runs, e.g. "
        "TOLLGATE_ROUTER_COMPLEXITY_ENCODER=false (repeatable)",
    )
    parser.add_argument(
        "--output",
        default="memory",
        help="results file stem under bench/results (default: memory)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        settings = dict(setting.split("=", 1) for setting in args.setting)
        result = measure_child(args.requests, args.concurrency, settings)
        Path(args.child).write_text(json.dumps(result), encoding="utf-8")
        return
    runs: dict[str, Any] = {}
    if args.reuse_before:
        previous = json.loads((RESULTS / "memory.json").read_text())["runs"]
        runs.update({k: v for k, v in previous.items() if k.startswith("before")})
    elif not args.only_after:
        if args.before:
            # A tree given by path: its revision is not this checkout's HEAD.
            before, label = args.before, f"before ({args.before_label or 'given tree'})"
        else:
            before, revision = _git_archive_head()
            label = f"before (HEAD {revision})"
        runs[label] = run_tree(before, "before", args.requests, args.concurrency)
    runs["after"] = run_tree(
        ROOT, "after", args.requests, args.concurrency, args.setting
    )
    results = {
        "machine": {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "requests": args.requests,
        "concurrency": args.concurrency,
        "after_settings": args.setting,
        "goals_mb": {**GOALS_MB, "other services": GOAL_OTHER_MB},
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(
        json.dumps(results, indent=2) + "\n", encoding="utf-8"
    )
    text = markdown(results)
    (RESULTS / f"{args.output}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
