"""Development figures of the cache's rule guard: ``verify`` on every read pair set.

The guard is designed on these sets only. Each is named here by hand, never
found by a glob of ``bench/data``: a frozen blind set must not be read by a
development run before its one read through the real cache server
(``bench/cache_quality.py --blind``). A blind set joins ``READ_SETS`` only after
that read.

These are rule-level figures (every pair's two texts through ``verify``, no
embedder nominating candidates), labelled as development figures wherever they
are quoted.

    python bench/cache_guard_dev.py                      # totals per set
    python bench/cache_guard_dev.py --save before.json   # every pair's verdict
    python bench/cache_guard_dev.py --diff before.json   # pairs whose verdict changed
    python bench/cache_guard_dev.py --missed pp_synonym  # paraphrases rejected, why
    python bench/cache_guard_dev.py --served             # near-misses accepted
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.cache.verification import unexplained, verify  # noqa: E402

DATA = ROOT / "bench" / "data"

# Every set the guard may be designed on: the original calibration set, the
# development and training sets, and the blind sets already read once.
READ_SETS = (
    "cache_pairs.jsonl",
    "cache_dev_2026-12.jsonl",
    "cache_dev_2026-12j.jsonl",
    "cache_train_2026-12e.jsonl",
    "cache_train_2026-12f1.jsonl",
    "cache_train_2026-12f2.jsonl",
    "cache_blind_2026-12.jsonl",
    "cache_blind_2026-12b.jsonl",
    "cache_blind_2026-12c.jsonl",
    "cache_blind_2026-12d.jsonl",
    "cache_blind_2026-12g.jsonl",
    "cache_blind_2026-12h.jsonl",
    "cache_blind_2026-12i.jsonl",
    "cache_blind_2026-12k.jsonl",
    "cache_blind_2026-12l.jsonl",
    "cache_blind_2026-12m.jsonl",
    "cache_blind_2026-12n.jsonl",
    "cache_blind_2026-12o.jsonl",
    "cache_blind_2026-12p.jsonl",
    "cache_blind_2026-12q.jsonl",
    "cache_blind_2026-12r.jsonl",
    "cache_blind_2026-12s.jsonl",
    "cache_blind_2026-12t.jsonl",
)


def load(name: str) -> list[dict[str, Any]]:
    """The pairs of one read set, each tagged with the set's name."""
    if name not in READ_SETS:
        raise SystemExit(f"{name} is not a read set; see READ_SETS")
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["set"] = name
            rows.append(row)
    return rows


def _key(row: dict[str, Any]) -> str:
    return f"{row['set']}:{row['id']}"


def run(sets: list[str]) -> list[dict[str, Any]]:
    """Every pair with its verdict: ``ok``, ``check`` (failed or accepting)."""
    rows = [row for name in sets for row in load(name)]
    for row in rows:
        verdict = verify(row["query"], row["cached"])
        row["ok"] = verdict.ok
        row["check"] = verdict.accepted_by if verdict.ok else verdict.failed_check
    return rows


def totals(rows: list[dict[str, Any]]) -> str:
    """Paraphrases served and near-misses served, per set and in all."""
    lines = ["| set | paraphrases served | near-misses served |", "|---|---|---|"]
    by_set: dict[str, Counter[str]] = {}
    for row in rows:
        counts = by_set.setdefault(row["set"], Counter())
        counts[row["label"]] += 1
        counts[f"{row['label']}_ok"] += row["ok"]
    grand: Counter[str] = Counter()
    for name, counts in by_set.items():
        grand.update(counts)
        lines.append(_row(name, counts))
    lines.append(_row("**all**", grand))
    return "\n".join(lines)


def _row(name: str, counts: Counter[str]) -> str:
    return (
        f"| {name} | {counts['paraphrase_ok']}/{counts['paraphrase']} "
        f"| {counts['near_miss_ok']}/{counts['near_miss']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(READ_SETS))
    parser.add_argument("--save", type=Path, help="write every pair's verdict")
    parser.add_argument("--diff", type=Path, help="pairs changed since --save")
    parser.add_argument("--missed", metavar="CATEGORY_PREFIX", default=None)
    parser.add_argument("--served", action="store_true", help="near-misses served")
    args = parser.parse_args()
    rows = run(args.sets)
    print(totals(rows))
    if args.save:
        verdicts = {_key(row): [row["ok"], row["check"]] for row in rows}
        args.save.write_text(json.dumps(verdicts, indent=0), encoding="utf-8")
    if args.diff:
        before = json.loads(args.diff.read_text(encoding="utf-8"))
        for row in rows:
            was = before.get(_key(row))
            if was is not None and was[0] != row["ok"]:
                change = "now served" if row["ok"] else "now rejected"
                print(f"\n{change} [{row['label']} {row['category']}] {_key(row)}")
                print(f"  cached: {row['cached']}\n  query:  {row['query']}")
                print(f"  check:  {was[1]} -> {row['check']}")
    for row in rows:
        missed = (
            args.missed is not None
            and row["label"] == "paraphrase"
            and not row["ok"]
            and row["category"].startswith(args.missed)
        )
        served = args.served and row["label"] == "near_miss" and row["ok"]
        if missed or served:
            print(f"\n[{row['category']}] {_key(row)} {row['check']}")
            print(f"  cached: {row['cached']}\n  query:  {row['query']}")
            if row["check"] == "alignment":
                query_words, cached_words = unexplained(row["query"], row["cached"])
                print(f"  left:   {' '.join(query_words)} | {' '.join(cached_words)}")


if __name__ == "__main__":
    main()
