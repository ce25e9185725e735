"""What a new prompt costs with the semantic cache tier on, against bypassing it.

Starts the simulator (0 ms) and Tollgate all-in-one (``tollgate serve all``) as
``bench/peers.py`` does, then drives gRPC ``CreateResponse`` with a new prompt on
every request, alternating cache bypassed and cache on in the same run (so both
meet the same machine load), at 1 and 8 in flight. Each cell reports requests/s,
p50 and the CPU milliseconds per request of the all-in-one process (psutil, from
the window's start until it is idle again, so the deferred cache write is billed).
The figures that matter are the differences between the two variants: the machine
is shared and noisy, absolute numbers move from run to run.

With ``--flame PREFIX`` it also records a py-spy flame graph of the all-in-one
process (``--rate 100``, ``--flame-seconds``) while 8 callers send new prompts with
the cache on, written to ``PREFIX.svg``.

``--model auto`` asks for ``auto``, so the router classifies the prompt (with an
embedding). Run from the repository root, or from a ``git archive`` of another revision
to measure that one (the services start from the working directory; put that tree's
stubs first: ``PYTHONPATH=<tree>/gen/python``)::

    python bench/profile_semantic_path.py --out /tmp/semantic_path.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import peers  # noqa: E402  # bench/peers.py: the simulator, the suite, the cells

CONCURRENCIES = (1, 8)


async def _cells(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    simulator, simulator_url = peers.start_simulator(state)
    suite = None
    try:
        extra_env = dict(item.split("=", 1) for item in args.env)
        if args.embedder:
            extra_env["TOLLGATE_CACHE_EMBEDDING_BACKEND"] = args.embedder
        suite = peers.start_tollgate(
            state / "all", simulator_url, all_in_one=True, extra_env=extra_env
        )
        pid = next(iter(suite.processes.values())).process.pid
        tree = peers.Tree([pid])
        rig = peers.Rig(
            simulator=peers.Tree([simulator.pid]),
            loadgen=peers.Tree([__import__("os").getpid()], descendants=False),
            duration_s=args.duration,
            warmup_s=args.warmup,
        )
        run = time.strftime("%H%M%S")
        targets = {
            cache: peers.GrpcTarget(
                suite.gateway_address, run, "sem", bypass=cache == "bypass"
            )
            for cache in ("bypass", "on")
        }
        # The first requests load what loads lazily; keep that out of every cell.
        for target in targets.values():
            await peers.closed_loop(target.call, 4, 3.0)
        for round_ in range(args.rounds):
            for concurrency in CONCURRENCIES:
                # Alternate which variant goes first, so neither always meets the
                # other's leftovers.
                order = ["bypass", "on"] if round_ % 2 == 0 else ["on", "bypass"]
                for cache in order:
                    await peers.measure(
                        rig,
                        peers.ALL_IN_ONE,
                        "grpc",
                        cache,
                        concurrency,
                        targets[cache].call,
                        tree,
                    )
        flame = ""
        if args.flame:
            flame = await _flame(args, pid, targets["on"])
        for target in targets.values():
            await target.close()
        return {"cells": [vars(cell) for cell in rig.cells], "flame": flame}
    finally:
        if suite is not None:
            suite.stop()
        peers._stop_group(simulator)


async def _flame(args: argparse.Namespace, pid: int, target: Any) -> str:
    """A py-spy record of ``pid`` while 8 callers send new prompts, cache on."""
    out = Path(f"{args.flame}.svg")
    spy = Path(sys.executable).parent / "py-spy"
    recorder = await asyncio.create_subprocess_exec(
        str(spy),
        "record",
        "--rate",
        "100",
        "--duration",
        str(args.flame_seconds),
        "--pid",
        str(pid),
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await peers.closed_loop(target.call, 8, args.flame_seconds + 1.0)
    _, err = await asyncio.wait_for(recorder.communicate(), 60)
    if recorder.returncode != 0:
        return f"py-spy failed: {err.decode(errors='replace')[-500:]}"
    return str(out)


def _valid(cell: dict[str, Any]) -> bool:
    """A cache-on cell counts only if every request met the cache (a miss).

    On an overloaded machine the gateway's breaker may open on the cache and skip
    it; such a window measures the bypass path, not the semantic tier.
    """
    statuses = set(cell["cache_statuses"])
    return statuses == ({"miss"} if cell["cache"] == "on" else {"skipped"})


def summary(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per concurrency: the cache's extra over bypass, median over rounds.

    Cells come in adjacent pairs (one round: bypass and on, in either order); a
    pair counts only when both cells are valid (:func:`_valid`).
    """
    out: dict[str, dict[str, float]] = {}
    for concurrency in CONCURRENCIES:
        mine = [c for c in cells if c["concurrency"] == concurrency]
        pairs = [mine[i : i + 2] for i in range(0, len(mine) - 1, 2)]
        pairs = [pair for pair in pairs if all(_valid(c) for c in pair)]
        row: dict[str, float] = {"valid_rounds": len(pairs)}
        if not pairs:
            out[str(concurrency)] = row
            continue
        by: dict[str, list[dict[str, Any]]] = {"bypass": [], "on": []}
        for pair in pairs:
            for cell in pair:
                by[cell["cache"]].append(cell)
        for cache, group in by.items():
            row[f"{cache}_cpu_ms"] = statistics.median(
                c["cpu_ms_per_request"] for c in group
            )
            row[f"{cache}_p50_ms"] = statistics.median(c["p50_ms"] for c in group)
            row[f"{cache}_rps"] = statistics.median(c["requests_per_s"] for c in group)
        row["extra_cpu_ms"] = round(
            statistics.median(
                on["cpu_ms_per_request"] - off["cpu_ms_per_request"]
                for off, on in zip(by["bypass"], by["on"], strict=True)
            ),
            2,
        )
        row["extra_p50_ms"] = round(
            statistics.median(
                on["p50_ms"] - off["p50_ms"]
                for off, on in zip(by["bypass"], by["on"], strict=True)
            ),
            2,
        )
        out[str(concurrency)] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flame", default="", help="write a flame graph PREFIX.svg")
    parser.add_argument("--flame-seconds", type=int, default=10)
    parser.add_argument("--out", default="", help="write the cells as JSON here")
    parser.add_argument(
        "--model",
        default=peers.MODEL,
        help="the model asked for (auto: the router classifies, with an embedding)",
    )
    parser.add_argument(
        "--embedder",
        choices=("static", "minilm"),
        help="the cache's embedder (default: the service's default)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the all-in-one (repeatable), e.g. to compare two",
    )
    args = parser.parse_args()
    peers.MODEL = args.model  # read by peers.GrpcTarget at each call
    with tempfile.TemporaryDirectory(prefix="tollgate-sem-") as tmp:
        result = asyncio.run(_cells(args, Path(tmp)))
    result["summary"] = summary(result["cells"])
    result["embedder"] = args.embedder or "default"
    result["load_average"] = list(__import__("os").getloadavg())
    print(json.dumps(result["summary"], indent=2))
    if result["flame"]:
        print("flame:", result["flame"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
