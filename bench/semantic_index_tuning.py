"""The embedded semantic index's settings: CPU per new prompt and recall.

The cache's pattern on a new prompt is one search of its scope and one write.
This replays it on a Qdrant Edge shard in this process, one scope, for
``--points`` prompts (random unit vectors: only the index's work is measured),
with a rebuild every ``optimize_after_points`` writes as the service runs one (in
a child process there, billed to the service all the same), and reports the CPU
per prompt of the searches (thread time) and of the rebuilds (process time).

Then recall: the static embedder's vectors of about 14,000 real texts (the router's
training prompts and the cached side of every read cache pair set; never a frozen
blind set) are written the same way, and each paraphrase of the read sets is
searched as the cache searches (top 5 at similarity 0.5); recall@5 is the share
of an exact search's top 5 that the index's search also returns.

Configurations: ``before`` (the settings up to 2026-12-07: Qdrant's default
segment merging, full-scan threshold 10,000 KB, ``ef_construct`` 100, expiry in
every search's filter), ``float32`` (those of 2026-12-07 to 2026-12-08: segments
kept, a lower full-scan threshold, ``ef_construct`` 64, the scope alone in the
filter) and ``shipped`` (``services.cache.adapters.qdrant_edge.shard_config`` and
its ``SEARCH_PARAMS``: the same, with int8 copies of the vectors walked and the
best rescored on the originals).

    python bench/semantic_index_tuning.py [--points 15000]

Prints a table and writes ``bench/results/semantic_index_tuning.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchValue,
    Point,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
    UpdateOperation,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cache.adapters import qdrant_edge  # noqa: E402
from services.cache.adapters.points import EXPIRES_FIELD, SCOPE_FIELD  # noqa: E402
from services.cache.adapters.static_embedder import StaticEmbedder  # noqa: E402
from services.cache.ports import Vector  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "bench" / "data"
DIMENSION = 384
OPTIMIZE_AFTER_POINTS = 5000  # the service's default
LIMIT, MIN_SIMILARITY = 5, 0.5  # as the cache searches
# Read pair sets only: the frozen blind set next in line is never opened here.
READ_PAIR_SETS = (
    "cache_pairs.jsonl",
    "cache_dev_2026-12.jsonl",
    "cache_blind_2026-12.jsonl",
    "cache_blind_2026-12b.jsonl",
    "cache_blind_2026-12c.jsonl",
    "cache_blind_2026-12d.jsonl",
    "cache_blind_2026-12g.jsonl",
    "cache_train_2026-12e.jsonl",
    "cache_train_2026-12f1.jsonl",
    "cache_train_2026-12f2.jsonl",
)


def _before_config(dimension: int) -> EdgeConfig:
    return EdgeConfig(
        vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine),
        hnsw_config=HnswIndexConfig(
            m=16, ef_construct=100, full_scan_threshold=10_000, max_indexing_threads=1
        ),
        optimizers=EdgeOptimizersConfig(indexing_threshold=2000),
        max_search_threads=1,
    )


def _float32_config(dimension: int) -> EdgeConfig:
    shipped = qdrant_edge.shard_config(dimension)
    return EdgeConfig(
        vectors=shipped.vectors,
        hnsw_config=shipped.hnsw_config,
        optimizers=shipped.optimizers,
        max_search_threads=1,
    )


@dataclass(frozen=True)
class Variant:
    name: str
    config: Callable[[int], EdgeConfig]
    expiry_in_filter: bool
    params: SearchParams | None = None


VARIANTS = (
    Variant("before", _before_config, expiry_in_filter=True),
    Variant("float32", _float32_config, expiry_in_filter=False),
    Variant(
        "shipped",
        qdrant_edge.shard_config,
        expiry_in_filter=False,
        params=qdrant_edge.SEARCH_PARAMS,
    ),
)


def _shard(variant: Variant, directory: Path) -> EdgeShard:
    return qdrant_edge.create_shard(directory, variant.config(DIMENSION))


def _filter(variant: Variant, now: float) -> Filter:
    conditions: list[object] = [
        FieldCondition(key=SCOPE_FIELD, match=MatchValue("scope"))
    ]
    if variant.expiry_in_filter:
        conditions.append(FieldCondition(key=EXPIRES_FIELD, range=RangeFloat(gt=now)))
    return Filter(must=conditions)  # type: ignore[arg-type]


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write(shard: EdgeShard, point_id: int, vector: Vector, now: float) -> None:
    payload = {SCOPE_FIELD: "scope", EXPIRES_FIELD: now + 3600, "query": "q" * 80}
    point = Point(point_id, list(vector), payload)
    shard.update(UpdateOperation.upsert_points([point]))


def replay(variant: Variant, points: int) -> dict[str, float]:
    """Search then write, ``points`` times; CPU ms per prompt of each part."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2 * points, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = time.time()
    condition = _filter(variant, now)
    search_s = rebuild_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        shard = _shard(variant, Path(tmp) / "shard")
        for n in range(points):
            request = QueryRequest(
                limit=LIMIT,
                query=Query.Nearest(vectors[points + n].tolist()),
                filter=condition,
                with_payload=True,
                score_threshold=MIN_SIMILARITY,
                params=variant.params,
            )
            started = time.thread_time()
            shard.query(request)
            search_s += time.thread_time() - started
            _write(shard, n + 1, vectors[n].tolist(), now)
            if (n + 1) % OPTIMIZE_AFTER_POINTS == 0:
                started = _process_cpu()
                shard.optimize()
                rebuild_s += _process_cpu() - started
        segments = shard.info().segments_count
        shard.close()
    return {
        "search_ms": round(1000 * search_s / points, 3),
        "rebuild_ms": round(1000 * rebuild_s / points, 3),
        "total_ms": round(1000 * (search_s + rebuild_s) / points, 3),
        "segments": segments,
    }


def _texts() -> tuple[list[str], list[str]]:
    pairs = [
        json.loads(line)
        for name in READ_PAIR_SETS
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    corpus = [
        str(json.loads(line)["prompt"])
        for path in sorted(DATA.glob("router_train_*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    cached = list(dict.fromkeys(str(p["cached"]) for p in pairs))
    texts = corpus + cached
    random.Random(0).shuffle(texts)
    queries = [str(p["query"]) for p in pairs if p["label"] == "paraphrase"]
    return texts, queries


def recall(
    variant: Variant, stored: list[Vector], queries: list[Vector]
) -> dict[str, float]:
    """Recall@5 of the variant's search against an exact search, and its time."""
    now = time.time()
    condition = _filter(variant, now)
    found = expected = 0
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        shard = _shard(variant, Path(tmp) / "shard")
        for n, vector in enumerate(stored):
            _write(shard, n + 1, vector, now)
            if (n + 1) % OPTIMIZE_AFTER_POINTS == 0:
                shard.optimize()
        for vector in queries:

            def ask(exact: bool, vector: Vector = vector) -> set[int]:
                request = QueryRequest(
                    limit=LIMIT,
                    query=Query.Nearest(list(vector)),
                    filter=condition,
                    score_threshold=MIN_SIMILARITY,
                    # The truth: every point scored on its original vector.
                    params=(
                        SearchParams(
                            exact=True,
                            quantization=QuantizationSearchParams(ignore=True),
                        )
                        if exact
                        else variant.params
                    ),
                )
                return {int(str(p.id)) for p in shard.query(request)}

            started = time.perf_counter()
            got = ask(exact=False)
            times.append(time.perf_counter() - started)
            truth = ask(exact=True)
            found += len(got & truth)
            expected += len(truth)
        shard.close()
    return {
        "recall_at_5": round(found / max(1, expected), 4),
        "found": found,
        "expected": expected,
        "search_p50_ms": round(1000 * statistics.median(times), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=15_000)
    args = parser.parse_args()
    texts, questions = _texts()
    embedder = StaticEmbedder.load()
    stored, queries = embedder.encode(texts), embedder.encode(questions)
    rows = {}
    for variant in VARIANTS:
        rows[variant.name] = {
            **replay(variant, args.points),
            **recall(variant, stored, queries),
        }
        print(variant.name, rows[variant.name], flush=True)
    lines = [
        "# The embedded semantic index's settings",
        "",
        f"`python bench/semantic_index_tuning.py --points {args.points}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Replay: one scope, "
        f"a search (top {LIMIT} at {MIN_SIMILARITY}) then a write per new prompt, "
        f"a rebuild every {OPTIMIZE_AFTER_POINTS:,} writes, {args.points:,} prompts "
        "of random vectors; CPU ms per prompt. Recall: "
        f"{len(texts):,} real texts stored, {len(questions):,} paraphrases of the "
        "read pair sets searched, recall@5 against an exact search.",
        "",
        "| settings | search | rebuild | total per new prompt | segments at the end "
        "| recall@5 | search p50 at 14k texts |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['search_ms']:.3f} | {row['rebuild_ms']:.3f} "
            f"| **{row['total_ms']:.3f}** | {row['segments']} "
            f"| {100 * row['recall_at_5']:.1f}% ({row['found']}/{row['expected']}) "
            f"| {row['search_p50_ms']:.3f} ms |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "semantic_index_tuning.md").write_text(text, encoding="utf-8")
    (RESULTS / "semantic_index_tuning.json").write_text(
        json.dumps({"points": args.points, "rows": rows}, indent=2) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
