r"""Pick the router's default ``quality_bias`` on shipped encoders' own blind sets.

``router_finetune.py calibrate`` picks the bias on a held-out encoder (one trained
without five writers' files) predicting those writers. Read blind afterwards, that
bias was too high twice running: the held-out encoder, trained on less, is less sure
of itself than the one that ships, so the margin it needs for the complex prompts it
doubts is wider than the shipped encoder needs. This picks the bias where it is
used: each shipped encoder's probabilities on a blind set read after it shipped
(never in its training data), pooled, under the same rule (:func:`pick_bias`: the
best right-tier rate with at most 3.5% of complex prompts under-routed and 4% of
trivial prompts sent to premium).

Each ``--pair COMMIT:FILE`` names an encoder (the model file and encoder at that
commit) and a blind set of ``bench/data`` that was read, once, after it shipped. A
set whose blind report (``bench/results/router_quality_blind_<suffix>.json``) does
not exist has not been read: it is refused, so an unread blind set stays unread.
The calibration slopes stay those of the model file; only the bias is picked.

Example (from the repository root)::

    python bench/router_bias.py --pair 933b48e:router_blind_2026-12g.jsonl \
        --pair f946b7b:router_blind_2026-12h.jsonl --ship

→ ``bench/results/router_bias.{json,md}``; ``--ship`` writes the bias into
``services/router/complexity_model.json``. DEVELOPMENT figures: the bias is chosen
on these sets, so their rates at it are in-sample for the choice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from router_train import (
    BIAS_GRID,
    DATA,
    RESULTS,
    ROOT,
    decide,
    figure_cell,
    load,
    pick_bias,
    routing_figures,
)

from services.router.adapters.encoder import OnnxComplexityEncoder
from services.router.complexity import (
    CLASSES,
    MODEL_RESOURCE,
    load_complexity_model,
    measure,
)

ROUTER = ROOT / "services" / "router"
SHOWN_BIASES = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def _git_show(commit: str, path: Path, target: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    target.write_bytes(
        subprocess.run(
            ["git", "show", f"{commit}:{relative}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
    )


def probabilities_at(commit: str, blind: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The encoder of ``commit``: its calibrated probabilities on ``blind``."""
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        _git_show(commit, ROUTER / MODEL_RESOURCE, folder / MODEL_RESOURCE)
        model = load_complexity_model(folder / MODEL_RESOURCE)
        encoder_file = folder / model.encoder.path.name
        _git_show(commit, ROUTER / model.encoder.path.name, encoder_file)
        encoder = OnnxComplexityEncoder.load(encoder_file, model.encoder.sha256)
        rows, labels = [], []
        for example in load(blind, blind.name):
            measured = measure(example.prompt, example.conversation)
            logits = encoder.logits(example.prompt, example.previous, measured)
            conversation = example.conversation
            rows.append(model.probabilities(example.prompt, conversation, logits))
            labels.append(CLASSES.index(example.label))
        return np.array(rows), np.array(labels), model.version


def figures(probabilities: np.ndarray, y: np.ndarray, bias: float) -> dict[str, object]:
    return routing_figures([CLASSES[i] for i in y], decide(probabilities, bias))


def markdown(report: dict[str, object]) -> str:
    sets = report["sets"]
    assert isinstance(sets, dict)
    lines = [
        "# The router's default quality_bias, picked out of sample",
        "",
        "`python bench/router_bias.py`: each shipped encoder's calibrated "
        "probabilities on a blind set read once after it shipped (so never in its "
        "training data), pooled; the bias with the best right-tier rate that keeps "
        "complex prompts under-routed at most 3.5% and trivial prompts sent to "
        "premium at most 4% (`pick_bias`). DEVELOPMENT figures: the bias is chosen "
        "on these sets.",
        "",
        f"**Picked: {report['quality_bias']}** (the model file's default when "
        f"this ran: {report['model_file_default']}).",
        "",
        "| set (encoder) | bias | right tier | complex under-routed "
        "| trivial to premium | exact |",
        "|---|---:|---|---|---|---|",
    ]
    for name, entry in sets.items():
        for bias, row in entry["curve"].items():
            lines.append(
                f"| {name} | {bias} | {figure_cell(row['right_tier'])} "
                f"| {figure_cell(row['complex_under_routed'])} "
                f"| {figure_cell(row['trivial_to_premium'])} "
                f"| {figure_cell(row['exact_accuracy'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", action="append", required=True, metavar="COMMIT:FILE")
    parser.add_argument("--ship", action="store_true", help=f"write {MODEL_RESOURCE}")
    args = parser.parse_args(argv)

    collected: list[tuple[str, np.ndarray, np.ndarray]] = []
    report_sets: dict[str, dict[str, object]] = {}
    for pair in args.pair:
        commit, _, name = pair.partition(":")
        suffix = name.removeprefix("router_blind_").removesuffix(".jsonl")
        if not (RESULTS / f"router_quality_blind_{suffix}.json").exists():
            print(f"{name} has no blind report: it stays unread", file=sys.stderr)
            return 2
        p, y, version = probabilities_at(commit, DATA / name)
        collected.append((f"{name} ({version})", p, y))
    pooled_p = np.concatenate([p for _, p, _ in collected])
    pooled_y = np.concatenate([y for _, _, y in collected])
    bias = pick_bias(pooled_p, pooled_y)
    shown = sorted({*SHOWN_BIASES, bias})
    for name, p, y in [*collected, ("pooled", pooled_p, pooled_y)]:
        report_sets[name] = {
            "curve": {str(b): figures(p, y, b) for b in shown},
            "at_picked": figures(p, y, bias),
        }
        at = report_sets[name]["at_picked"]
        assert isinstance(at, dict)
        print(
            f"{name}: at {bias} right tier {figure_cell(at['right_tier'])}, "
            f"complex under {figure_cell(at['complex_under_routed'])}, "
            f"trivial to premium {figure_cell(at['trivial_to_premium'])}"
        )
    target = ROUTER / MODEL_RESOURCE
    data = json.loads(target.read_text("utf-8"))
    report = {
        "pairs": args.pair,
        "bias_grid": [BIAS_GRID[0], BIAS_GRID[-1]],
        "quality_bias": bias,
        "model_file_default": data["default_quality_bias"],
        "sets": report_sets,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_bias.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "router_bias.md").write_text(markdown(report))
    if args.ship:
        data["default_quality_bias"] = bias
        target.write_text(json.dumps(data, separators=(",", ":")) + "\n", "utf-8")
        print(f"wrote {target.relative_to(ROOT)}: bias {bias}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
