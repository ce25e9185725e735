"""Lookup latency of the cache service through gRPC, at 10k and 100k entries.

    python bench/cache_latency.py [--sizes 10000 100000] [--lookups 300]

For each size, the service is built as ``tollgate dev`` builds it (in-process exact
LRU, local embeddings: the static table by default, ``--embedder minilm`` for the
transformer; Qdrant Edge in a private directory) and served on a loopback port.
It is loaded with that many entries in one tenant and model (the
worst case for the filtered search): the cached questions of
bench/data/cache_pairs.jsonl with their real embeddings, and filler points near
them (real embeddings of those questions plus noise). The index is then optimized
in its background child process, as the service does, and the wait is reported.

Measured through gRPC, one lookup at a time, ``--lookups`` each:

- exact hit: an identical request (exact tier only; no embedding);
- semantic hit: a paraphrase that passes verification (embedding, search, guard);
- miss: an unrelated question (embedding and search, nothing served).

Reported: p50 and p99 of the whole Lookup call, and apart the embedding and search
times the service reports in each response; the process's resident memory; and the
start-up time of ``python -m services.cache`` to SERVING (three runs).

Writes bench/results/cache_latency.json and bench/results/cache_latency.md.

    python bench/cache_latency.py --guard

measures only what the verification guard adds to a semantic lookup: for every
pair of the development sets, ``verify`` on a cold feature memo (both texts
analysed from scratch, as for a new query against an entry not seen lately), and
the worst case of a lookup, five candidates verified and all rejected. Writes
bench/results/cache_guard_latency.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tollgate.cache.v1 import cache_pb2 as cache_pb  # noqa: E402
from tollgate.cache.v1 import cache_pb2_grpc  # noqa: E402

from services.cache.adapters.onnx_embedder import OnnxEmbedder  # noqa: E402
from services.cache.adapters.qdrant_edge import QdrantEdgeIndex  # noqa: E402
from services.cache.adapters.static_embedder import StaticEmbedder  # noqa: E402
from services.cache.app import build_cache, serve_cache  # noqa: E402
from services.cache.config import CacheSettings  # noqa: E402
from services.cache.domain import (  # noqa: E402
    Answer,
    CacheableRequest,
    CacheEntry,
    Usage,
    exact_key,
)
from services.cache.verification import fingerprint, verify  # noqa: E402
from services.core.server import start_server  # noqa: E402

DATA = ROOT / "bench" / "data" / "cache_pairs.jsonl"
RESULTS = ROOT / "bench" / "results"
TENANT, MODEL = "bench", "gpt-4.1-mini"
MISSES = [
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "What is the airspeed velocity of an unladen swallow?",
    "Name three composers of the baroque period.",
    "How many moons does Jupiter have?",
    "Suggest a name for a black cat.",
]


def _request(text: str) -> cache_pb.CacheableRequest:
    return cache_pb.CacheableRequest(
        tenant_id=TENANT, model=MODEL, input=text, temperature=0.0
    )


def _domain_request(text: str) -> CacheableRequest:
    return CacheableRequest(tenant_id=TENANT, model=MODEL, input=text, temperature=0.0)


LocalEmbedder = OnnxEmbedder | StaticEmbedder


def _similarity(embedder: LocalEmbedder, a: str, b: str) -> float:
    left, right = np.asarray(embedder.encode([a, b]), dtype=np.float32)
    return float(left @ right)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
    }


async def _load(cache: Any, size: int, pairs: list[dict[str, str]]) -> list[str]:
    """Fill both tiers with ``size`` entries; returns the real cached questions."""
    semantic = cache.semantic
    index = semantic.index
    embedder = semantic.embedder
    assert isinstance(embedder, OnnxEmbedder | StaticEmbedder)
    questions = sorted({p["cached"] for p in pairs})
    vectors = np.asarray(embedder.encode(questions), dtype=np.float32)
    rng = np.random.default_rng(7)
    scope = semantic.scope(_domain_request("x"))
    now = time.time()
    for i in range(size):
        if i < len(questions):
            text, vector = questions[i], vectors[i]
        else:
            base = vectors[i % len(questions)]
            noisy = base + rng.normal(0, 0.08, base.shape).astype(np.float32)
            vector = noisy / np.linalg.norm(noisy)
            text = f"{questions[i % len(questions)]} (variant {i})"
        request = _domain_request(text)
        entry = CacheEntry(
            key=exact_key(request),
            tenant_id=TENANT,
            request_model=MODEL,
            answer=Answer(output_text=f"answer {i}", model=MODEL, usage=Usage(9, 0, 9)),
            created_at=now,
            expires_at=now + 86400,
        )
        await cache.exact_store.put(entry)
        # As the cache stores it: with the guard's fingerprint of the query.
        await index.upsert(
            scope, text, entry, vector.tolist(), fingerprint=fingerprint(text)
        )
    return questions


async def _measure(
    stub: cache_pb2_grpc.CacheServiceStub,
    cache: Any,
    texts: list[str],
    lookups: int,
    want: int,
) -> dict[str, Any]:
    total, embedding, search = [], [], []
    statuses: dict[int, int] = {}
    for n in range(lookups):
        # Every lookup embeds: the service remembers recent vectors, and the
        # texts repeat.
        cache.semantic.forget_vectors()
        started = time.perf_counter()
        reply = await stub.Lookup(
            cache_pb.LookupRequest(
                request=_request(texts[n % len(texts)]), allow_semantic=True
            )
        )
        total.append((time.perf_counter() - started) * 1000)
        embedding.append(reply.embedding_latency_ms)
        search.append(reply.search_latency_ms)
        statuses[reply.status] = statuses.get(reply.status, 0) + 1
    return {
        "lookup_ms": _percentiles(total),
        "embedding_ms": _percentiles(embedding),
        "search_ms": _percentiles(search),
        "expected_status_share": statuses.get(want, 0) / lookups,
    }


async def run_size(
    size: int, lookups: int, pairs: list[dict[str, str]], embedder_backend: str
) -> dict[str, Any]:
    """Load ``size`` entries, optimize, then measure the three kinds of lookup."""
    with tempfile.TemporaryDirectory() as state:
        settings = CacheSettings(
            port=0,
            state_dir=Path(state),
            exact_max_bytes=1 << 30,
            # Optimized once after loading, below, rather than during it.
            optimize_after_points=10 * size,
            embedding_backend=embedder_backend,
            # Served, not shadow (the default): a semantic hit is what is timed.
            semantic_mode="serve",
        )
        cache = await build_cache(settings)
        assert cache.semantic is not None
        index = cache.semantic.index
        assert isinstance(index, QdrantEdgeIndex)
        started = time.perf_counter()
        questions = await _load(cache, size, pairs)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        await index.optimize()
        optimize_s = time.perf_counter() - started
        running = await start_server(serve_cache(cache, settings), settings)
        try:
            async with grpc.aio.insecure_channel(running.address) as channel:
                stub = cache_pb2_grpc.CacheServiceStub(channel)
                stored = set(questions)
                candidates = [
                    p
                    for p in pairs
                    if p["label"] == "paraphrase"
                    and p["cached"] in stored
                    and p["query"] not in stored
                    and verify(p["query"], p["cached"]).ok
                ]
                embedder = cache.semantic.embedder
                assert isinstance(embedder, OnnxEmbedder | StaticEmbedder)
                threshold = cache.semantic.policy.similarity_threshold
                paraphrases = [
                    p["query"]
                    for p in candidates
                    if _similarity(embedder, p["query"], p["cached"]) >= threshold
                ]
                random.Random(1).shuffle(paraphrases)
                await _measure(stub, cache, questions, 20, 0)  # warm up
                result = {
                    "entries": size,
                    "embedder": embedder.version,
                    "load_seconds": round(load_s, 1),
                    "optimize_seconds": round(optimize_s, 1),
                    "rss_mib": round(_rss_mib(), 1),
                    # The machine may be shared: the 1-minute load average when
                    # the lookups began says how much.
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "exact_hit": await _measure(
                        stub,
                        cache,
                        questions,
                        lookups,
                        2,  # CACHE_STATUS_EXACT
                    ),
                    "semantic_hit": await _measure(
                        stub,
                        cache,
                        paraphrases,
                        lookups,
                        3,  # CACHE_STATUS_SEMANTIC
                    ),
                    "miss": await _measure(stub, cache, MISSES, lookups, 1),
                }
        finally:
            await running.stop(0)
    return result


def startup_seconds(runs: int = 3) -> list[float]:
    """Seconds from ``python -m services.cache`` to a SERVING health check."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "TOLLGATE_CACHE_STATE_DIR": state}
            port = 50000 + random.randrange(5000)
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "services.cache", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    health = health_pb2_grpc.HealthStub(channel)
                    while True:
                        try:
                            reply = health.Check(
                                health_pb2.HealthCheckRequest(), timeout=0.5
                            )
                            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                                break
                        except grpc.RpcError:
                            time.sleep(0.05)
                times.append(round(time.perf_counter() - started, 2))
            finally:
                process.terminate()
                process.wait(timeout=30)
    return times


def markdown(report: dict[str, Any]) -> str:
    """The report as a readable Markdown page."""
    lines = [
        "# Cache lookup latency",
        "",
        "Generated by `python bench/cache_latency.py` on this machine "
        f"({os.cpu_count()} cores). Lookups through gRPC on loopback, one at a "
        "time; entries in one tenant and model (the worst case for the filtered "
        "search); Qdrant Edge optimized in its background child process after "
        f"loading. Embeddings: `{report['sizes'][0]['embedder']}`. Goals: exact "
        "≤ 1 ms and semantic ≤ 15 ms at p50 with 100k entries.",
        "",
        f"Start-up of `python -m services.cache` to SERVING: "
        f"{report['startup_seconds']} s (three runs; `tollgate dev` waits 60 s).",
        "",
        "| entries | lookup | p50 ms | p99 ms | embedding p50/p99 ms | search "
        "p50/p99 ms | expected status |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        for kind in ("exact_hit", "semantic_hit", "miss"):
            row = size[kind]
            lines.append(
                f"| {size['entries']:,} | {kind.replace('_', ' ')} | "
                f"{row['lookup_ms']['p50']} | {row['lookup_ms']['p99']} | "
                f"{row['embedding_ms']['p50']} / {row['embedding_ms']['p99']} | "
                f"{row['search_ms']['p50']} / {row['search_ms']['p99']} | "
                f"{100 * row['expected_status_share']:.0f}% |"
            )
    lines += [
        "",
        "| entries | load s | background optimize s | resident memory MiB | "
        "load average (1 min) during lookups |",
        "|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        lines.append(
            f"| {size['entries']:,} | {size['load_seconds']} | "
            f"{size['optimize_seconds']} | {size['rss_mib']} | "
            f"{size['load_average_1m']} |"
        )
    lines.append("")
    return "\n".join(lines)


def guard_latency() -> dict[str, Any]:
    """Milliseconds the verification guard adds, per candidate and per lookup."""
    from services.cache import verification

    pairs = []
    for name in ("cache_pairs.jsonl", "cache_dev_2026-12.jsonl"):
        path = ROOT / "bench" / "data" / name
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            pairs.append((row["query"], row["cached"]))
    verification.verify("warm up", "the vocabulary")  # loads the vocabulary once
    # Stored with each indexed query, as the cache stores it.
    fingerprints = {cached: verification.fingerprint(cached) for _, cached in pairs}
    # The checks that run before anything reads the content words ("order" does).
    vetoes = verification.CHECKS[: verification.CHECKS.index("order")]
    per_candidate: list[float] = []
    per_vetoed: list[float] = []  # rejected before the words are aligned
    per_vetoed_from_text: list[float] = []  # the same, for a point with no fingerprint
    per_lookup: list[float] = []
    for index, (query, cached) in enumerate(pairs):
        verification._features.cache_clear()
        started = time.perf_counter()
        verdict = verification.verify(query, cached, fingerprints[cached])
        per_candidate.append((time.perf_counter() - started) * 1000)
        if verdict.failed_check in vetoes:
            per_vetoed.append(per_candidate[-1])
            verification._features.cache_clear()
            started = time.perf_counter()
            verification.verify(query, cached)
            per_vetoed_from_text.append((time.perf_counter() - started) * 1000)
        others = [pairs[(index + k) % len(pairs)][1] for k in range(1, 5)]
        verification._features.cache_clear()
        started = time.perf_counter()
        for candidate in [cached, *others]:
            verification.verify(query, candidate, fingerprints[candidate])
        per_lookup.append((time.perf_counter() - started) * 1000)
    from services.cache.adapters.onnx_pair_judge import OnnxPairJudge

    judge = OnnxPairJudge.load()
    per_judgement: list[float] = []
    for query, cached in pairs:
        started = time.perf_counter()
        judge.score_now(query, cached)
        per_judgement.append((time.perf_counter() - started) * 1000)
    with_judge = [a + b for a, b in zip(per_lookup, per_judgement, strict=True)]
    return {
        "pairs": len(pairs),
        "pair_judge": judge.version,
        "per_candidate_ms": _p50_p99(per_candidate),
        "vetoed_candidates": len(per_vetoed),
        "per_vetoed_candidate_ms": _p50_p99(per_vetoed),
        "per_vetoed_candidate_from_text_ms": _p50_p99(per_vetoed_from_text),
        "five_candidates_ms": _p50_p99(per_lookup),
        "judge_ms": _p50_p99(per_judgement),
        "five_candidates_and_judge_ms": _p50_p99(with_judge),
    }


def _p50_p99(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
    }


def main() -> int:
    """Run the benchmark, print it and write the result files."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--embedder", choices=("static", "minilm"), default="static")
    parser.add_argument(
        "--guard", action="store_true", help="time the verification guard alone"
    )
    args = parser.parse_args()
    if args.guard:
        result = guard_latency()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "cache_guard_latency.json").write_text(
            json.dumps(result, indent=2) + "\n", encoding="utf-8"
        )
        (RESULTS / "cache_guard_latency.md").write_text(
            "# Verification guard latency\n\n"
            "Generated by `python bench/cache_latency.py --guard`: `verify` on a "
            f"cold feature memo over {result['pairs']} pairs of the development "
            "sets, one core, each cached text with the fingerprint the cache "
            "stores beside it.\n\n"
            "| what | p50 ms | p99 ms |\n|---|---|---|\n"
            f"| one candidate | {result['per_candidate_ms']['p50']} | "
            f"{result['per_candidate_ms']['p99']} |\n"
            f"| one candidate a veto rejects ({result['vetoed_candidates']} of "
            f"them) | {result['per_vetoed_candidate_ms']['p50']} | "
            f"{result['per_vetoed_candidate_ms']['p99']} |\n"
            "| the same candidates, stored without a fingerprint (read from "
            f"their text) | {result['per_vetoed_candidate_from_text_ms']['p50']} | "
            f"{result['per_vetoed_candidate_from_text_ms']['p99']} |\n"
            f"| a lookup verifying five candidates | "
            f"{result['five_candidates_ms']['p50']} | "
            f"{result['five_candidates_ms']['p99']} |\n"
            f"| the pair judge, one pair (both orders in one run; "
            f"`{result['pair_judge']}`) | {result['judge_ms']['p50']} | "
            f"{result['judge_ms']['p99']} |\n"
            f"| five candidates and one judge run (the most a lookup does) | "
            f"{result['five_candidates_and_judge_ms']['p50']} | "
            f"{result['five_candidates_and_judge_ms']['p99']} |\n",
            encoding="utf-8",
        )
        print(json.dumps(result))
        return 0
    pairs = [json.loads(line) for line in DATA.read_text().splitlines()]
    report: dict[str, Any] = {"startup_seconds": startup_seconds(), "sizes": []}
    for size in args.sizes:
        result = asyncio.run(run_size(size, args.lookups, pairs, args.embedder))
        report["sizes"].append(result)
        print(json.dumps(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cache_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cache_latency.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
