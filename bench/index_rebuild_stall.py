"""How long a search waits while the embedded semantic index rebuilds.

The cache rebuilds its Qdrant Edge index every ``optimize_after_points`` writes
(``services/cache/adapters/qdrant_edge.py``): the live shard is flushed and
copied, a child process builds the graph on the copy, and the copy is loaded and
swapped in. Every call on the shard runs on one worker thread, so a search waits
for whatever part of that runs there; past the gateway's 0.5 s downstream
deadline a wait opens the gateway's cache breaker.

This builds a shard of ``--points`` random 384-d points in one scope, then runs
a serving-like load in the same process: ``--concurrency`` tasks that each spend
``--work-ms`` of Python on the event loop (a request's own handling), search, and
store a new point every fourth turn, while ``--contenders`` processes spin on
the machine's cores (other services, or a second suite, on a small machine). It
triggers a rebuild and reports the searches that started while it ran: count,
p50, p99, the longest, how many took over 100 ms and over 500 ms, and when the
slow ones started.

Trees are compared in one run: ``--root label=PATH`` (repeatable) runs each round
in a child process importing ``services`` from PATH, the trees alternating round
by round (an A/B: ``git archive REV | tar -x -C /tmp/before``).

    python bench/index_rebuild_stall.py --root before=/tmp/before --root after=.
        --rounds 3 --out bench/results/index_rebuild_stall.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DIMENSION = 384


def _unit(rng: random.Random) -> list[float]:
    vector = [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def _spin(milliseconds: float) -> None:
    end = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < end:
        pass


async def _round(points: int, concurrency: int, work_ms: float) -> dict[str, object]:
    # Imported here: the child process imports ``services`` from its tree.
    from services.cache.adapters.qdrant_edge import QdrantEdgeIndex
    from services.cache.domain import (
        Answer,
        CacheableRequest,
        CacheEntry,
        SemanticScope,
        Usage,
        exact_key,
    )

    scope = SemanticScope("bench", "gpt-4.1-mini", "i" * 64, "p" * 64, "v1")
    rng = random.Random(7)

    def entry(text: str) -> CacheEntry:
        request = CacheableRequest(tenant_id="bench", model="gpt-4.1-mini", input=text)
        return CacheEntry(
            key=exact_key(request),
            tenant_id="bench",
            request_model="gpt-4.1-mini",
            answer=Answer(f"answer to {text}", "gpt-4.1-mini", Usage(5, 1, 2)),
            created_at=time.time(),
            expires_at=time.time() + 3600,
        )

    async def store(n: int) -> None:
        text = f"question {n} " + "word " * 12
        await index.upsert(scope, text, entry(text), _unit(rng), fingerprint="")

    with tempfile.TemporaryDirectory() as state:
        index = await QdrantEdgeIndex.open(
            dimension=DIMENSION,
            state_dir=Path(state),
            optimize_after_points=10**9,
        )
        try:
            for start in range(0, points, 200):
                await asyncio.gather(
                    *(store(n) for n in range(start, min(points, start + 200)))
                )
            latencies: list[tuple[float, float]] = []  # (started, seconds)
            stop = asyncio.Event()
            written = points

            async def serve() -> None:
                nonlocal written
                turn = 0
                while not stop.is_set():
                    _spin(work_ms)
                    started = time.perf_counter()
                    await index.search(
                        _unit(rng), scope, now=time.time(), limit=5, min_similarity=0.5
                    )
                    latencies.append((started, time.perf_counter() - started))
                    turn += 1
                    if turn % 4 == 0:
                        written += 1
                        await store(written)
                    # A request waits for its socket at least once; a search
                    # or a write on an idle index does not suspend the task.
                    await asyncio.sleep(0)

            servers = [asyncio.create_task(serve()) for _ in range(concurrency)]
            await asyncio.sleep(1.0)
            began = time.perf_counter()
            swapped = await index.optimize()
            ended = time.perf_counter()
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*servers)
        finally:
            await index.close()
    during = sorted(s for started, s in latencies if began <= started <= ended)
    before = [s for started, s in latencies if started < began]
    return {
        "swapped": swapped,
        "rebuild_seconds": round(ended - began, 3),
        "searches_during": len(during),
        "p50_ms_before": round(1000 * statistics.median(before), 2),
        "p50_ms_during": round(1000 * statistics.median(during), 2),
        "p99_ms_during": round(1000 * during[int(0.99 * (len(during) - 1))], 1),
        "max_ms_during": round(1000 * during[-1], 1),
        "over_100ms": sum(s > 0.1 for s in during),
        "over_500ms": sum(s > 0.5 for s in during),
        # When the slow searches started, in seconds into the rebuild.
        "over_100ms_started_at": [
            round(started - began, 2)
            for started, s in latencies
            if began <= started <= ended and s > 0.1
        ],
    }


def _child(args: argparse.Namespace) -> None:
    result = asyncio.run(_round(args.points, args.concurrency, args.work_ms))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--points", type=int, default=4800)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--work-ms", type=float, default=0.5)
    parser.add_argument("--contenders", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    roots = [tuple(spec.split("=", 1)) for spec in args.root] or [("here", str(ROOT))]
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in roots}
    for number in range(args.rounds):
        for label, path in roots:
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                f"--points={args.points}",
                f"--concurrency={args.concurrency}",
                f"--work-ms={args.work_ms}",
            ]
            tree = str(Path(path).resolve())
            contenders = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.contenders)
            ]
            try:
                output = subprocess.run(
                    command,
                    cwd=tree,
                    env={**os.environ, "PYTHONPATH": tree},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            finally:
                for contender in contenders:
                    contender.kill()
                    contender.wait()
            result = json.loads(output.strip().splitlines()[-1])
            rounds[label].append(result)
            print(f"round {number + 1} {label}: {json.dumps(result)}", flush=True)
    summary = {
        label: {
            "median_max_ms_during": statistics.median(
                float(r["max_ms_during"]) for r in results
            ),
            "median_p99_ms_during": statistics.median(
                float(r["p99_ms_during"]) for r in results
            ),
            "over_500ms_total": sum(int(r["over_500ms"]) for r in results),
            "over_100ms_total": sum(int(r["over_100ms"]) for r in results),
        }
        for label, results in rounds.items()
    }
    for label, figures in summary.items():
        print(f"{label}: {json.dumps(figures)}")
    if args.out:
        report = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": {
                "points": args.points,
                "concurrency": args.concurrency,
                "work_ms": args.work_ms,
                "contenders": args.contenders,
                "rounds": args.rounds,
                "roots": dict(roots),
            },
            "rounds": rounds,
            "summary": summary,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
