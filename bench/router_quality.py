"""Measure the router's complexity classifier against the seed's keyword heuristic.

The labelled set is ``bench/data/router_complexity.jsonl``: prompts written for this
benchmark, each labelled trivial, simple, moderate or complex and assigned to the
``dev`` or ``test`` split by a hash of its id. The classifier's weights are fitted on
``dev`` only (``--calibrate`` refits them and rewrites
``services/router/complexity_model.json``); ``test`` is held out and is the number
to quote.

For both classifiers and both splits the report gives accuracy, the confusion
matrix, how many prompts went to a tier less capable than their label needs
(under-routed: the quality risk) or more capable (over-routed: wasted money), and
the worst-case cost of routing them with the built-in routing table against always
using the premium model (each prompt's exact input tokens plus the chat budget of
output tokens, at list price, as ``Route`` computes it).

Run from the repository root: ``python bench/router_quality.py [--calibrate]``.
Prints the report and writes ``bench/results/router_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from services.core.tokens import count_tokens
from services.router.complexity import (
    CLASSES,
    MODEL_RESOURCE,
    ComplexityModel,
    extract_features,
    load_complexity_model,
)
from services.router.domain import cheapest_capable_tier, worst_case_cost_micros
from services.router.enums import Complexity, RequestType
from services.router.table import RoutingTable, load_routing_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "router_complexity.jsonl"
RESULTS = ROOT / "bench" / "results"
SPLITS = ("dev", "test")
# L2 penalty of the calibration, on standardised features.
L2 = 0.3
RANK = {c: i for i, c in enumerate(CLASSES)}


@dataclass(frozen=True)
class Example:
    """One labelled prompt."""

    id: str
    split: str
    label: Complexity
    prompt: str


def load_examples() -> list[Example]:
    """The labelled set."""
    examples = []
    for line in DATA.read_text("utf-8").splitlines():
        row = json.loads(line)
        examples.append(
            Example(row["id"], row["split"], Complexity(row["label"]), row["prompt"])
        )
    return examples


def seed_heuristic(prompt: str) -> Complexity:
    """The seed's keyword rules (section 7), as the baseline to beat."""
    text = prompt.lower()
    words = len(prompt.split())
    lookups = ("what is", "define", "who is", "when was")
    if words < 10 and any(k in text for k in lookups):
        return Complexity.TRIVIAL
    hard = (
        "analyze",
        "compare",
        "explain why",
        "write code",
        "debug",
        "architecture",
        "design",
        "strategy",
        "evaluate",
        "trade-off",
    )
    if any(k in text for k in hard) or words > 100:
        return Complexity.COMPLEX
    medium = ("summarize", "list", "how do i", "steps to", "example of")
    if any(k in text for k in medium):
        return Complexity.MODERATE
    return Complexity.SIMPLE


def calibrate(examples: Sequence[Example]) -> ComplexityModel:
    """Fit weights and thresholds on ``examples`` (the dev split).

    An all-threshold ordinal logistic regression: for each threshold k, a logistic
    loss on "harder than class k", sharing one weight vector, with an L2 penalty on
    standardised features; plain gradient descent, deterministic.
    """
    vectors = [extract_features(e.prompt).vector() for e in examples]
    names = list(vectors[0])
    raw = np.array([[vector[name] for name in names] for vector in vectors])
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    std[std == 0] = 1.0
    x = (raw - mean) / std
    labels = np.array([RANK[e.label] for e in examples])
    # targets[i, k] = +1 when example i is harder than class k, else -1.
    targets = np.where(labels[:, None] > np.arange(3)[None, :], 1.0, -1.0)
    weights = np.zeros(x.shape[1])
    thresholds = np.array([-1.0, 0.0, 1.0])
    rate = 0.1
    for _ in range(20_000):
        margins = targets * (x @ weights)[:, None] - targets * thresholds[None, :]
        slope = -targets / (1.0 + np.exp(margins))  # d loss / d (score - threshold)
        grad_w = x.T @ slope.sum(axis=1) / len(x) + L2 * weights
        grad_t = -slope.sum(axis=0) / len(x)
        weights -= rate * grad_w
        thresholds -= rate * grad_t
        thresholds.sort()
    # Fold the standardisation back in, so the service scores raw features.
    raw_weights = weights / std
    raw_thresholds = thresholds + float(raw_weights @ mean)
    return ComplexityModel(
        weights={
            name: round(float(w), 6) for name, w in zip(names, raw_weights, strict=True)
        },
        thresholds=tuple(round(float(t), 6) for t in raw_thresholds),
    )


def evaluate(
    examples: Sequence[Example],
    classify: Callable[[str], Complexity],
    table: RoutingTable,
) -> dict[str, object]:
    """Accuracy, confusion, routing errors and cost of ``classify`` on a split."""
    budget = table.request_types[RequestType.CHAT].max_output_tokens
    premium = table.tiers[table.premium_tier_name()]
    confusion = [[0] * len(CLASSES) for _ in CLASSES]
    correct = under = over = 0
    routed = oracle = always_premium = 0
    for example in examples:
        predicted = classify(example.prompt)
        confusion[RANK[example.label]][RANK[predicted]] += 1
        correct += predicted is example.label
        tokens = count_tokens(example.prompt)
        chosen = cheapest_capable_tier(table, predicted)
        needed = cheapest_capable_tier(table, example.label)
        order = table.fallback_order
        chosen_rank = order.index(table.tiers[chosen].model)
        needed_rank = order.index(table.tiers[needed].model)
        under += chosen_rank > needed_rank
        over += chosen_rank < needed_rank
        routed += worst_case_cost_micros(table.tiers[chosen], tokens, budget)
        oracle += worst_case_cost_micros(table.tiers[needed], tokens, budget)
        always_premium += worst_case_cost_micros(premium, tokens, budget)
    return {
        "prompts": len(examples),
        "accuracy": round(correct / len(examples), 4),
        "confusion": {
            "rows_are_labels_columns_are_predictions": [c.value for c in CLASSES],
            "matrix": confusion,
        },
        "under_routed": under,
        "over_routed": over,
        "routed_cost_micros": routed,
        "oracle_cost_micros": oracle,
        "premium_cost_micros": always_premium,
        "saved_vs_premium_percent": round(100 * (1 - routed / always_premium), 1),
    }


def _markdown(report: dict[str, object]) -> str:
    lines = [
        "# Router complexity classifier vs the seed heuristic",
        "",
        "Generated by `python bench/router_quality.py`; do not edit by hand.",
        f"Labelled set: `{report['data']}` ({report['prompts']} prompts, "
        "weights fitted on `dev`, `test` held out).",
        "Costs: worst case per prompt (exact input tokens + the chat budget of "
        "output tokens at list price), summed.",
        "",
        "| split | classifier | accuracy | under-routed | over-routed | "
        "cost (µ$) | always premium (µ$) | saved | oracle cost (µ$) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    results = report["results"]
    assert isinstance(results, dict)
    for split in SPLITS:
        for name in ("seed_heuristic", "router_classifier"):
            r = results[split][name]
            lines.append(
                f"| {split} | {name} | {r['accuracy']:.1%} | {r['under_routed']} | "
                f"{r['over_routed']} | {r['routed_cost_micros']:,} | "
                f"{r['premium_cost_micros']:,} | {r['saved_vs_premium_percent']}% | "
                f"{r['oracle_cost_micros']:,} |"
            )
    for split in SPLITS:
        for name in ("seed_heuristic", "router_classifier"):
            r = results[split][name]
            lines += [
                "",
                f"## Confusion, {split}, {name} (rows: label, columns: predicted)",
                "",
                "| label | " + " | ".join(c.value for c in CLASSES) + " |",
                "|---|" + "---|" * len(CLASSES),
            ]
            for cls, row in zip(CLASSES, r["confusion"]["matrix"], strict=True):
                lines.append(f"| {cls.value} | " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Optionally calibrate, then evaluate both classifiers and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="refit the classifier on the dev split and rewrite its model file",
    )
    args = parser.parse_args(argv)
    examples = load_examples()
    if args.calibrate:
        model = calibrate([e for e in examples if e.split == "dev"])
        target = Path(str(resources.files("services.router") / MODEL_RESOURCE))
        target.write_text(model.to_json() + "\n", "utf-8")
        print(f"calibrated on dev, wrote {target.relative_to(ROOT)}")
    model = load_complexity_model()
    table = load_routing_table(None)
    results = {
        split: {
            "seed_heuristic": evaluate(
                [e for e in examples if e.split == split], seed_heuristic, table
            ),
            "router_classifier": evaluate(
                [e for e in examples if e.split == split], model.classify, table
            ),
        }
        for split in SPLITS
    }
    report: dict[str, object] = {
        "data": str(DATA.relative_to(ROOT)),
        "prompts": len(examples),
        "model": json.loads(model.to_json()),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (RESULTS / "router_quality.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
