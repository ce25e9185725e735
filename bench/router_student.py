r"""Distil the router's complexity encoder into a student that answers first.

The fine-tuned encoder (``bench/router_finetune.py``) reads depth well but costs
milliseconds per ``auto`` request (p50 5.4 ms); issue 18 budgets 0.2 ms. The
student is a linear softmax over the prompt's hashed words, word pairs and opening
words and the router's measurements (:class:`services.router.complexity.StudentHead`),
fitted to the *encoder's probabilities*, not to the labels: the encoder labels any
text, so the student learns from every prompt of the router's writer files and
every question of the cache's pair sets (about 41,000 texts, most of them short
questions), and learns where the encoder puts a prompt. Where the student is sure
of the tier, its answer stands and the encoder does not run; elsewhere the encoder
decides (the cascade).

Nothing here teaches from the sets in :data:`NOT_TAUGHT`: a blind set still frozen,
and the blind sets that judged the shipped student (read after it was fitted).

Steps (``teach``, ``gate`` and ``ship`` in the project venv; ``fit`` needs numpy
and scipy only)::

    .venv/bin/python bench/router_student.py teach
    python3.11 -m venv /tmp/student-venv
    /tmp/student-venv/bin/pip install numpy scipy
    # development: without the blind sets read after the encoder shipped (the
    # encoder never saw them, so its probabilities there are out of sample)
    /tmp/student-venv/bin/python bench/router_student.py fit --name heldout \
        --holdout router_blind_2026-12h.jsonl --holdout router_blind_2026-12i.jsonl \
        --holdout router_blind_2026-12j.jsonl
    .venv/bin/python bench/router_student.py gate --name heldout \
        --holdout router_blind_2026-12h.jsonl ... (the same files)
    # the student to ship: every text, at the operating point gate printed
    /tmp/student-venv/bin/python bench/router_student.py fit --name final
    .venv/bin/python bench/router_student.py ship --name final \
        --confidence 0.8 --premium-ceiling 0.15

``gate`` writes ``bench/results/router_student_dev.json`` and ``.md``: on the
held-out files, the encoder alone, the student alone and the cascade at each
operating point (the share the student settles, right tier, complex prompts
under-routed, trivial prompts sent to premium), at the model's default
quality_bias. Development figures: the operating point is picked on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
ROUTER = ROOT / "services" / "router"
WORK = Path("/tmp/router-student")
STUDENT_FILE = "complexity_student.npy"
BUCKETS = 1 << 18
"""The student's hashed buckets (``services.router.complexity.STUDENT_BUCKETS``)."""
NOT_TAUGHT = frozenset(
    {
        "router_blind_2026-12k.jsonl",  # read once to judge the shipped student
        "router_blind_2026-12l.jsonl",  # read once to judge it again
        "router_blind_2026-12m.jsonl",  # frozen, unread
        "cache_blind_2026-12u.jsonl",  # frozen, unread
        "cache_blind_2026-12v.jsonl",  # frozen, unread
    }
)
"""Sets the shipped student was fitted without (so ``teach`` reproduces it)."""
L2 = 3e-7
"""Weight of the L2 penalty (the development run tried 1e-4 to 1e-7)."""
ITERATIONS = 400
CONFIDENCES = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
PREMIUM_CEILINGS = (0.05, 0.1, 0.15, 0.2)


def _tiers() -> dict[Any, str]:
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    from router_train import TIER_OF

    return dict(TIER_OF)


# ----------------------------------------------------------- project venv


def teach_command(args: argparse.Namespace) -> None:
    """The encoder's probabilities and the student's inputs for every text."""
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    from router_train import load

    from services.router.adapters.encoder import OnnxComplexityEncoder
    from services.router.complexity import (
        CLASSES,
        MODEL_RESOURCE,
        STUDENT_BUCKETS,
        ConversationFeatures,
        EncoderHead,
        measure,
        student_buckets,
    )

    assert STUDENT_BUCKETS == BUCKETS
    # The model file's encoder section alone: the student may not exist yet.
    shipped = json.loads((ROUTER / MODEL_RESOURCE).read_text("utf-8"))
    head = EncoderHead(
        path=ROUTER / shipped["encoder"]["file"],
        sha256=shipped["encoder"]["sha256"],
        slope=np.array(shipped["encoder"]["slope"]),
        intercept=np.array(shipped["encoder"]["intercept"]),
    )
    encoder = OnnxComplexityEncoder.load(head.path, head.sha256)
    texts: list[tuple[str, int, str, str, Any]] = []
    for path in sorted(DATA.glob("router_*.jsonl")):
        if path.name in NOT_TAUGHT or path.name.endswith("_second_labels.jsonl"):
            continue
        for example in load(path, path.name):
            texts.append(
                (
                    path.name,
                    CLASSES.index(example.label),
                    example.prompt,
                    example.previous,
                    example.conversation,
                )
            )
    seen: set[str] = set()
    for path in sorted(DATA.glob("cache_*.jsonl")):
        if path.name in NOT_TAUGHT:
            continue
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            for text in (row["cached"], row["query"]):
                if text not in seen:
                    seen.add(text)
                    texts.append((path.name, -1, text, "", ConversationFeatures()))
    print(f"{len(texts)} texts", flush=True)
    sources, labels, indptr, indices = [], [], [0], []
    measurements, teacher = [], []
    started = time.monotonic()
    for i, (source, label, prompt, previous, conversation) in enumerate(texts):
        measured = measure(prompt, conversation)
        logits = encoder.logits(prompt, previous, measured)
        teacher.append(head.probabilities(logits))
        measurements.append(measured)
        buckets = student_buckets(prompt)
        indices.extend(buckets.tolist())
        indptr.append(len(indices))
        sources.append(source)
        labels.append(label)
        if i % 5000 == 0:
            print(f"{i} ({time.monotonic() - started:.0f} s)", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.work / "teacher.npz",
        sources=np.array(sources),
        labels=np.array(labels),
        indptr=np.array(indptr),
        indices=np.array(indices),
        measurements=np.array(measurements),
        teacher=np.array(teacher),
        default_quality_bias=np.array(shipped["default_quality_bias"]),
    )
    print(f"wrote {args.work / 'teacher.npz'}")


# --------------------------------------------------- numpy and scipy only


def _inputs(data: Any, rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> Any:
    """The sparse design matrix: hashed buckets, then standardised measurements."""
    import scipy.sparse as sp

    from_ = data["indptr"][:-1][rows]
    to = data["indptr"][1:][rows]
    indices = np.concatenate(
        [data["indices"][a:b] for a, b in zip(from_, to, strict=True)]
    )
    counts = to - from_
    values = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    words = sp.csr_matrix((values, indices, indptr), shape=(len(rows), BUCKETS))
    measured = (data["measurements"][rows] - mean) * scale
    return sp.hstack([words, sp.csr_matrix(measured)]).tocsr()


def fit_command(args: argparse.Namespace) -> None:
    """Softmax regression on the encoder's probabilities (L-BFGS, L2)."""
    from scipy.optimize import minimize

    loaded = np.load(args.work / "teacher.npz")
    data: dict[str, Any] = {k: loaded[k] for k in loaded.files}
    rows = np.flatnonzero(~np.isin(data["sources"], args.holdout))
    measurements = data["measurements"][rows]
    mean = measurements.mean(axis=0)
    scale = 1.0 / np.maximum(measurements.std(axis=0), 1e-6)
    x = _inputs(data, rows, mean, scale)
    q = data["teacher"][rows]
    n, d = x.shape
    k = q.shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        weights = w[: d * k].reshape(d, k)
        z = x @ weights + w[d * k :]
        z -= z.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(z - log_sum)
        value = -(q * (z - log_sum)).sum() / n + args.l2 * (weights * weights).sum()
        g = (p - q) / n
        grad = x.T @ g + 2 * args.l2 * weights
        return float(value), np.concatenate([np.asarray(grad).ravel(), g.sum(0)])

    started = time.monotonic()
    result = minimize(
        loss,
        np.zeros(d * k + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": args.iterations},
    )
    weights = result.x[: d * k].reshape(d, k)
    np.savez(
        args.work / f"{args.name}.npz",
        words=weights[:BUCKETS],
        measurement_weights=weights[BUCKETS:],
        bias=result.x[d * k :],
        mean=mean,
        scale=scale,
        holdout=np.array(args.holdout or [""]),
    )
    print(
        f"{args.name}: {n} texts, loss {result.fun:.4f}, {result.nit} iterations, "
        f"{time.monotonic() - started:.0f} s"
    )


# ----------------------------------------------------------- project venv


def _figures(
    labels: np.ndarray, tiers: list[str], tier_of: Any, levels: Any
) -> dict[str, Any]:
    premium = tier_of[levels[3]]
    right = sum(tier_of[levels[y]] == t for y, t in zip(labels, tiers, strict=True))
    complex_ = labels == 3
    trivial = labels == 0
    return {
        "right_tier": round(right / len(labels), 4),
        "right_tier_count": int(right),
        "complex_under_routed": int(
            sum(t != premium for t, c in zip(tiers, complex_, strict=True) if c)
        ),
        "complex": int(complex_.sum()),
        "trivial_to_premium": int(
            sum(t == premium for t, c in zip(tiers, trivial, strict=True) if c)
        ),
        "trivial": int(trivial.sum()),
    }


def gate_command(args: argparse.Namespace) -> None:
    """The cascade on the held-out files at each operating point."""
    tier_of = _tiers()
    from services.router.complexity import CLASSES, StudentHead, choose_complexity

    loaded = np.load(args.work / "teacher.npz")
    data: dict[str, Any] = {k: loaded[k] for k in loaded.files}
    fitted = np.load(args.work / f"{args.name}.npz")
    rows = np.flatnonzero(np.isin(data["sources"], args.holdout))
    labels = data["labels"][rows]
    bias = float(data["default_quality_bias"])
    head = StudentHead(  # the fitted student as it ships (float16 words)
        path=Path(),
        sha256="",
        words=fitted["words"].astype(np.float16),
        mean=fitted["mean"],
        scale=fitted["scale"],
        measurement_weights=fitted["measurement_weights"],
        bias=fitted["bias"],
        confidence=1.0,
        premium_ceiling=0.0,
    )
    indptr, indices = data["indptr"], data["indices"]
    student = [
        head.probabilities_of(
            indices[indptr[row] : indptr[row + 1]], data["measurements"][row]
        )
        for row in rows
    ]
    teacher = data["teacher"][rows]

    def tier(p: np.ndarray) -> tuple[Any, str]:
        level = choose_complexity(list(p), bias, tier_of)
        return level, tier_of[level]

    encoder_tiers = [tier(p)[1] for p in teacher]
    student_answers = [tier(p) for p in student]
    report: dict[str, Any] = {
        "protocol": "student fitted without the held-out files; the encoder never "
        "saw them either; operating point picked here (DEVELOPMENT figures)",
        "holdout": list(args.holdout),
        "prompts": len(rows),
        "quality_bias": bias,
        "encoder": _figures(labels, encoder_tiers, tier_of, CLASSES),
        "student": _figures(labels, [t for _, t in student_answers], tier_of, CLASSES),
        "cascade": [],
    }
    for confidence in CONFIDENCES:
        for ceiling in PREMIUM_CEILINGS:
            gate = replace(head, confidence=confidence, premium_ceiling=ceiling)
            tiers, settled = [], 0
            for (level, t), p, e in zip(
                student_answers, student, encoder_tiers, strict=True
            ):
                if gate.settles(list(p), level, tier_of, bias):
                    settled += 1
                    tiers.append(t)
                else:
                    tiers.append(e)
            figures = _figures(labels, tiers, tier_of, CLASSES)
            figures.update(
                confidence=confidence,
                premium_ceiling=ceiling,
                settled_by_student=round(settled / len(rows), 4),
            )
            report["cascade"].append(figures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_student_dev.json").write_text(
        json.dumps(report, indent=1) + "\n"
    )
    lines = [
        "# The router's student and cascade: development figures",
        "",
        f"`python bench/router_student.py gate --name {args.name}`: the student "
        f"fitted without {', '.join(args.holdout)} ({len(rows)} prompts, the "
        "encoder out of sample on them too), at quality_bias "
        f"{bias}. The operating point is picked on these figures, so they are "
        "development figures.",
        "",
        "| classifier | settled by the student | right tier "
        "| complex under-routed | trivial to premium |",
        "|---|---|---|---|---|",
    ]
    for name in ("encoder", "student"):
        f = report[name]
        share = "100%" if name == "student" else "0%"
        lines.append(
            f"| {name} alone | {share} | {f['right_tier']:.1%} | "
            f"{f['complex_under_routed']}/{f['complex']} | "
            f"{f['trivial_to_premium']}/{f['trivial']} |"
        )
    for f in report["cascade"]:
        lines.append(
            f"| cascade, confidence {f['confidence']}, premium ceiling "
            f"{f['premium_ceiling']} | {f['settled_by_student']:.0%} | "
            f"{f['right_tier']:.1%} | {f['complex_under_routed']}/{f['complex']} | "
            f"{f['trivial_to_premium']}/{f['trivial']} |"
        )
    (RESULTS / "router_student_dev.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def ship_command(args: argparse.Namespace) -> None:
    """The student's words file and its section of the shipped model file."""
    sys.path.insert(0, str(ROOT))
    from services.router.complexity import (
        MODEL_FORMAT,
        MODEL_RESOURCE,
        load_complexity_model,
    )

    fitted = np.load(args.work / f"{args.name}.npz")
    if list(fitted["holdout"]) != [""]:
        raise SystemExit(f"{args.name} was fitted without {list(fitted['holdout'])}")
    target = ROUTER / STUDENT_FILE
    np.save(target, fitted["words"].astype(np.float16))
    model_file = ROUTER / MODEL_RESOURCE
    data = json.loads(model_file.read_text("utf-8"))
    data["format"] = MODEL_FORMAT
    data.pop("text_only", None)  # the student replaced format 4's text-only heads
    data.pop("hash_buckets", None)
    data["student"] = {
        "file": STUDENT_FILE,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "mean": [float(f"{v:.6g}") for v in fitted["mean"]],
        "scale": [float(f"{v:.6g}") for v in fitted["scale"]],
        "measurement_weights": [
            [float(f"{v:.6g}") for v in row] for row in fitted["measurement_weights"]
        ],
        "bias": [float(f"{v:.6g}") for v in fitted["bias"]],
        "confidence": args.confidence,
        "premium_ceiling": args.premium_ceiling,
    }
    model_file.write_text(json.dumps(data, separators=(",", ":")) + "\n", "utf-8")
    load_complexity_model()  # parses, shapes and sha256 checked
    print(f"wrote {target.relative_to(ROOT)} and {model_file.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=WORK)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("teach", help="the encoder's probabilities for every text")
    fit = commands.add_parser("fit", help="fit a student (numpy and scipy)")
    fit.add_argument("--name", required=True)
    fit.add_argument("--holdout", action="append", default=[])
    fit.add_argument("--l2", type=float, default=L2)
    fit.add_argument("--iterations", type=int, default=ITERATIONS)
    gate = commands.add_parser("gate", help="the cascade on the held-out files")
    gate.add_argument("--name", required=True)
    gate.add_argument("--holdout", action="append", required=True)
    ship = commands.add_parser("ship", help="write the student into the router")
    ship.add_argument("--name", required=True)
    ship.add_argument("--confidence", type=float, required=True)
    ship.add_argument("--premium-ceiling", type=float, required=True)
    args = parser.parse_args()
    {
        "teach": teach_command,
        "fit": fit_command,
        "gate": gate_command,
        "ship": ship_command,
    }[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
