"""Two router models on the same blind set, prompt by prompt (exact McNemar test).

Each input is the JSON report of ``bench/router_quality.py --blind`` (which keeps
the new classifier's level for every prompt), one per model: typically the
candidate's run in this tree and the previous model's run from a ``git archive``
of the commit before. Counts the prompts whose tier one model gets right and the
other wrong, and the exact two-sided binomial test on those discordant prompts.

Run from the repository root::

    python bench/router_paired.py CANDIDATE.json PREVIOUS.json --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from router_train import ROOT, TIER_OF, load

from services.router.enums import Complexity


def _tiers(report: dict[str, object]) -> dict[str, str]:
    """Each prompt's predicted tier in one blind report."""
    predicted = report["sets"]["blind"]["new"]["predicted"]  # type: ignore[index]
    return {key: TIER_OF[Complexity(level)] for key, level in predicted.items()}


def exact_mcnemar(first_only: int, second_only: int) -> float:
    """Two-sided p of the discordant counts under "either model is as good"."""
    total = first_only + second_only
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, i) for i in range(min(first_only, second_only) + 1))
    p: float = min(1.0, 2 * tail / 2**total)
    return p


def main(argv: list[str] | None = None) -> int:
    """Compare two blind runs of one set; print and optionally write the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    reports = [
        json.loads(path.read_text("utf-8")) for path in (args.first, args.second)
    ]
    first, second = (_tiers(report) for report in reports)
    if reports[0]["sha256"] != reports[1]["sha256"] or first.keys() != second.keys():
        raise SystemExit("the two reports are not of the same blind set")
    blind_file = ROOT / reports[0]["blind_file"]
    labels = {e.id: TIER_OF[e.label] for e in load(blind_file, blind_file.name)}
    right_first = {k for k in labels if first[k] == labels[k]}
    right_second = {k for k in labels if second[k] == labels[k]}
    result = {
        "blind_sha256": reports[0]["sha256"],
        "prompts": len(labels),
        "models": [report["model"] for report in reports],
        "right_tier": [len(right_first), len(right_second)],
        "right_only_first": len(right_first - right_second),
        "right_only_second": len(right_second - right_first),
        "exact_mcnemar_p_two_sided": round(
            exact_mcnemar(
                len(right_first - right_second), len(right_second - right_first)
            ),
            4,
        ),
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
