"""Fit the router's complexity model and measure it on the development data.

Data (DESIGN.md section 4): ``bench/data/router_train_{a,b,c}.jsonl`` (1,995 prompts
labelled by the capability a small model lacks, written by helpers who never saw
the classifier) and ``bench/data/router_complexity.jsonl`` (240 prompts of the
earlier benchmark). A quarter of the first set, those whose id's sha256 starts
with a byte below 64, is the development split; the earlier 240 are a second
development set. The blind set is not read here.

Design choices (regularisation, features, the conversation floor, the default
``quality_bias``) are made on 5-fold cross-validation of the training split and
reported on the two development sets; the shipped model is then refitted with the
chosen settings on every development and training prompt, so that it has seen as
much as possible before the blind evaluation. Figures on the development sets
are development figures: the settings were picked while looking at them.

The fit is deterministic: exact Newton steps on an L2-penalised multinomial
logistic regression (no random initialisation, no sampling), a temperature fitted
on out-of-fold predictions, and fold membership by hash.

Run from the repository root: ``python bench/router_train.py [--write]``. Prints
the comparison, writes ``bench/results/router_dev.json`` and ``.md``, and with
``--write`` rewrites ``services/router/complexity_model.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from services.router.complexity import (
    CLASSES,
    FEATURE_NAMES,
    MODEL_RESOURCE,
    ComplexityModel,
    ConversationFeatures,
    FloatArray,
    Head,
    choose_complexity,
    measure,
)
from services.router.enums import Complexity
from services.router.keywords import KEYWORD_NAMES

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
TRAIN_FILES = ("router_train_a.jsonl", "router_train_b.jsonl", "router_train_c.jsonl")
OLD_DEV_FILE = "router_complexity.jsonl"
DEV_BYTE_BELOW = 64
FOLDS = 5
L2_GRID = (10.0, 30.0, 100.0)
BIAS_GRID = tuple(round(0.05 * i, 2) for i in range(0, 61))
# The built-in table's tiers: trivial → economy, simple and moderate → standard,
# complex → premium.
TIER_OF = {
    Complexity.TRIVIAL: "economy",
    Complexity.SIMPLE: "standard",
    Complexity.MODERATE: "standard",
    Complexity.COMPLEX: "premium",
}
TIER_RANK = {"economy": 0, "standard": 1, "premium": 2}
RANK = {c: i for i, c in enumerate(CLASSES)}
UNDER_GOAL = 0.04
PREMIUM_GOAL = 0.05


@dataclass(frozen=True)
class Example:
    """One labelled request: its last user text and its conversation."""

    id: str
    source: str
    label: Complexity
    prompt: str
    conversation: ConversationFeatures
    language: str


def shape_of(row: dict[str, object]) -> ConversationFeatures:
    """The conversation shape the gateway would send for a data row."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return ConversationFeatures()
    roles = [str(m["role"]) for m in messages]
    last_user = max(i for i, role in enumerate(roles) if role == "user")
    return ConversationFeatures(
        messages=len(messages),
        earlier_user_turns=sum(role == "user" for role in roles[:last_user]),
    )


def load(path: Path, source: str) -> list[Example]:
    """The labelled requests of one file."""
    examples = []
    for line in path.read_text("utf-8").splitlines():
        row = json.loads(line)
        examples.append(
            Example(
                id=row["id"],
                source=source,
                label=Complexity(row["label"]),
                prompt=row["prompt"],
                conversation=shape_of(row),
                language=row.get("language", "en"),
            )
        )
    return examples


def is_dev(example_id: str) -> bool:
    """The development split: a quarter of the training files, by hash."""
    return hashlib.sha256(example_id.encode()).digest()[0] < DEV_BYTE_BELOW


def fold_of(example_id: str) -> int:
    """The cross-validation fold of a training prompt, by hash."""
    return hashlib.sha256(example_id.encode()).digest()[1] % FOLDS


def embed_all(prompts: Sequence[str]) -> FloatArray:
    """Unit vectors of ``prompts`` from the embedder the router uses."""
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

    embedder = OnnxEmbedder.load()
    vectors: list[Sequence[float]] = []
    for start in range(0, len(prompts), 32):
        vectors += embedder.encode(list(prompts[start : start + 32]))
    return np.asarray(vectors, dtype=np.float64)


def fit_softmax(
    x: FloatArray, y: np.ndarray, l2: float, iterations: int = 15
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Multinomial logistic regression by exact Newton steps.

    Inputs are standardised; the penalty is ``l2 / 2 * |W|^2`` on the mean loss
    times the number of examples (biases unpenalised). Returns mean, scale,
    weights and bias.
    """
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > 1e-9, 1.0 / np.where(std > 1e-9, std, 1.0), 0.0)
    z = np.hstack([(x - mean) * scale, np.ones((len(x), 1))])
    d = z.shape[1]
    k = len(CLASSES)
    onehot = np.eye(k)[y]
    theta = np.zeros((d, k))
    penalty = np.full(d, l2)
    penalty[-1] = 1e-6
    for _ in range(iterations):
        logits = z @ theta
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = z.T @ (p - onehot) + penalty[:, None] * theta
        hessian = np.zeros((d * k, d * k))
        for a in range(k):
            for b in range(a, k):
                w = p[:, a] * ((a == b) - p[:, b])
                block = (z * w[:, None]).T @ z
                if a == b:
                    block += np.diag(penalty)
                hessian[a * d : (a + 1) * d, b * d : (b + 1) * d] = block
                hessian[b * d : (b + 1) * d, a * d : (a + 1) * d] = block.T
        # Column-major flattening keeps each class's block contiguous.
        step = np.linalg.solve(hessian, grad.T.reshape(-1))
        theta -= step.reshape(k, d).T
        if np.abs(step).max() < 1e-6:
            break
    return mean, scale, theta[:-1], theta[-1]


def fit_temperature(logits: FloatArray, y: np.ndarray) -> float:
    """The temperature minimising the log loss of out-of-fold logits."""
    best, best_loss = 1.0, math.inf
    for t in np.arange(0.5, 3.01, 0.05):
        loss = log_loss(softmax(logits / t), y)
        if loss < best_loss:
            best, best_loss = float(t), loss
    return round(best, 2)


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


def log_loss(p: FloatArray, y: np.ndarray) -> float:
    """Mean negative log likelihood."""
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def logits_of(
    params: tuple[FloatArray, FloatArray, FloatArray, FloatArray], x: FloatArray
) -> FloatArray:
    """Uncalibrated logits of a fitted head."""
    mean, scale, weights, bias = params
    result: FloatArray = ((x - mean) * scale) @ weights + bias
    return result


def out_of_fold_logits(
    x: FloatArray, y: np.ndarray, folds: np.ndarray, l2: float
) -> FloatArray:
    """Logits of each training prompt from a model fitted without its fold."""
    result = np.zeros((len(x), len(CLASSES)))
    for fold in range(FOLDS):
        held = folds == fold
        params = fit_softmax(x[~held], y[~held], l2)
        result[held] = logits_of(params, x[held])
    return result


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def routing_figures(
    labels: Sequence[Complexity], predicted: Sequence[Complexity]
) -> dict[str, object]:
    """Exact accuracy, right tier, complex under-routed, trivial to premium."""
    n = len(labels)
    exact = sum(a is b for a, b in zip(labels, predicted, strict=True))
    right_tier = sum(
        TIER_OF[a] == TIER_OF[b] for a, b in zip(labels, predicted, strict=True)
    )
    complex_pred = [
        b for a, b in zip(labels, predicted, strict=True) if a is Complexity.COMPLEX
    ]
    trivial_pred = [
        b for a, b in zip(labels, predicted, strict=True) if a is Complexity.TRIVIAL
    ]
    under = sum(TIER_OF[b] != "premium" for b in complex_pred)
    trivial_premium = sum(TIER_OF[b] == "premium" for b in trivial_pred)
    confusion = [[0] * len(CLASSES) for _ in CLASSES]
    for a, b in zip(labels, predicted, strict=True):
        confusion[RANK[a]][RANK[b]] += 1
    tier_under = sum(
        TIER_RANK[TIER_OF[b]] < TIER_RANK[TIER_OF[a]]
        for a, b in zip(labels, predicted, strict=True)
    )
    tier_over = sum(
        TIER_RANK[TIER_OF[b]] > TIER_RANK[TIER_OF[a]]
        for a, b in zip(labels, predicted, strict=True)
    )

    def share(k: int, m: int) -> dict[str, object]:
        return {
            "count": k,
            "of": m,
            "rate": round(k / m, 4) if m else None,
            "wilson95": wilson(k, m),
        }

    return {
        "prompts": n,
        "exact_accuracy": share(exact, n),
        "right_tier": share(right_tier, n),
        "complex_under_routed": share(under, len(complex_pred)),
        "trivial_to_premium": share(trivial_premium, len(trivial_pred)),
        "under_routed_any": tier_under,
        "over_routed_any": tier_over,
        "confusion_rows_label_columns_predicted": confusion,
    }


def decide(probabilities: FloatArray, bias: float) -> list[Complexity]:
    """The routed level of each row of probabilities."""
    return [choose_complexity(list(row), bias, TIER_OF) for row in probabilities]


def pick_bias(probabilities: FloatArray, labels: Sequence[Complexity]) -> float:
    """The bias with the best right-tier rate that meets the goals out of fold.

    Goals (issue 18): at most 5% of complex prompts under-routed and at most 5% of
    trivial prompts sent to premium; the pick asks for 4% under-routing out of
    fold, a margin for the blind set. When no bias meets both, the one that
    misses them by the least (relative to each goal) is taken.
    """
    scored = []
    for bias in BIAS_GRID:
        figures = routing_figures(labels, decide(probabilities, bias))
        under = figures["complex_under_routed"]["rate"]  # type: ignore[index]
        premium = figures["trivial_to_premium"]["rate"]  # type: ignore[index]
        right = figures["right_tier"]["rate"]  # type: ignore[index]
        miss = max(under / UNDER_GOAL, premium / PREMIUM_GOAL)
        scored.append((miss <= 1.0, right if miss <= 1.0 else -miss, bias))
    return max(scored)[2]


@dataclass
class Variant:
    """One candidate design: which inputs it uses."""

    name: str
    columns: Callable[[FloatArray, FloatArray], FloatArray]


def main(argv: list[str] | None = None) -> int:
    """Compare designs by cross-validation, report dev figures, optionally write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the model file")
    parser.add_argument(
        "--embeddings-cache",
        type=Path,
        help="an .npy file to keep the embeddings in between runs (not committed)",
    )
    args = parser.parse_args(argv)

    train_rows: list[Example] = []
    for name in TRAIN_FILES:
        train_rows += load(DATA / name, name)
    old_dev = load(DATA / OLD_DEV_FILE, OLD_DEV_FILE)
    everything = train_rows + old_dev
    cache: Path | None = args.embeddings_cache
    if cache is not None and cache.exists():
        embeddings = np.load(cache)
    else:
        embeddings = embed_all([e.prompt for e in everything])
        if cache is not None:
            np.save(cache, embeddings)
    features = np.array([measure(e.prompt, e.conversation) for e in everything])
    labels = np.array([RANK[e.label] for e in everything])
    source_train = np.array([e.source != OLD_DEV_FILE for e in everything])
    dev_mask = np.array([e.source != OLD_DEV_FILE and is_dev(e.id) for e in everything])
    train_mask = source_train & ~dev_mask
    old_mask = ~source_train
    folds = np.array([fold_of(e.id) for e in everything])

    plain = len(FEATURE_NAMES) - len(KEYWORD_NAMES)
    variants = [
        Variant("measurements and keywords only", lambda emb, feat: feat),
        Variant("embedding only", lambda emb, feat: emb),
        Variant(
            "embedding + measurements, no keywords",
            lambda emb, feat: np.hstack([emb, feat[:, :plain]]),
        ),
        Variant("embedding + measurements", lambda emb, feat: np.hstack([emb, feat])),
    ]
    report: dict[str, object] = {
        "data": {
            "train_files": list(TRAIN_FILES),
            "old_dev_file": OLD_DEV_FILE,
            "train_split": int(train_mask.sum()),
            "dev_split": int(dev_mask.sum()),
            "old_dev": int(old_mask.sum()),
            "dev_rule": f"sha256(id)[0] < {DEV_BYTE_BELOW}",
        },
        "variants": {},
    }
    chosen: dict[str, tuple[float, float, float]] = {}
    lines = [
        "# Router complexity model: development figures",
        "",
        "Generated by `python bench/router_train.py`; do not edit by hand.",
        f"Training split {int(train_mask.sum())} prompts; development split "
        f"{int(dev_mask.sum())} (sha256(id)[0] < {DEV_BYTE_BELOW}); earlier set "
        f"`{OLD_DEV_FILE}` {int(old_mask.sum())}. These are development figures: "
        "the design was chosen while looking at them.",
        "",
        "Settings chosen by 5-fold cross-validation on the training split "
        "(L2 by log loss, temperature on out-of-fold logits, quality_bias as the "
        "bias with the best right-tier rate among those with ≤4% complex "
        "under-routed and ≤5% trivial to premium out of fold).",
        "",
        "| design | L2 | T | bias | set | exact | right tier | complex under | "
        "trivial → premium | log loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        x_all = variant.columns(embeddings, features)
        x_train, y_train = x_all[train_mask], labels[train_mask]
        best_l2, best_loss, best_oof = L2_GRID[0], math.inf, None
        for l2 in L2_GRID:
            oof = out_of_fold_logits(x_train, y_train, folds[train_mask], l2)
            loss = log_loss(softmax(oof), y_train)
            if loss < best_loss:
                best_l2, best_loss, best_oof = l2, loss, oof
        assert best_oof is not None
        temperature = fit_temperature(best_oof, y_train)
        oof_p = softmax(best_oof / temperature)
        train_labels = [CLASSES[i] for i in y_train]
        bias = pick_bias(oof_p, train_labels)
        chosen[variant.name] = (best_l2, temperature, bias)
        params = fit_softmax(x_train, y_train, best_l2)
        entry: dict[str, object] = {
            "l2": best_l2,
            "temperature": temperature,
            "quality_bias": bias,
        }
        sets = {
            "train (out of fold)": (oof_p, train_labels),
        }
        for set_name, mask in (("dev split", dev_mask), ("earlier 240", old_mask)):
            p = softmax(logits_of(params, x_all[mask]) / temperature)
            sets[set_name] = (p, [CLASSES[i] for i in labels[mask]])
        for set_name, (p, set_labels) in sets.items():
            figures = routing_figures(set_labels, decide(p, bias))
            figures_argmax = routing_figures(set_labels, decide(p, 0.0))
            y = np.array([RANK[c] for c in set_labels])
            figures["log_loss"] = round(log_loss(p, y), 4)
            figures["at_bias_0"] = {
                key: figures_argmax[key]
                for key in (
                    "exact_accuracy",
                    "right_tier",
                    "complex_under_routed",
                    "trivial_to_premium",
                )
            }
            entry[set_name] = figures
            lines.append(
                f"| {variant.name} | {best_l2} | {temperature} | {bias} | {set_name} | "
                + " | ".join(
                    _cell(figures[key])  # type: ignore[arg-type]
                    for key in (
                        "exact_accuracy",
                        "right_tier",
                        "complex_under_routed",
                        "trivial_to_premium",
                    )
                )
                + f" | {figures['log_loss']} |"
            )
        report["variants"][variant.name] = entry  # type: ignore[index]
        print(lines[-3:], flush=True)

    final_name = "embedding + measurements"
    l2, temperature, bias = chosen[final_name]
    text_l2, text_t, _ = chosen["measurements and keywords only"]
    # The shipped model: the chosen settings, refitted on every labelled prompt.
    fit_mask = np.ones(len(everything), dtype=bool)
    x_full = np.hstack([embeddings, features])
    full = fit_softmax(x_full[fit_mask], labels[fit_mask], l2)
    text = fit_softmax(features[fit_mask], labels[fit_mask], text_l2)
    from services.cache.adapters.onnx_embedder import DIMENSION, OnnxEmbedder

    model = ComplexityModel(
        version="softmax-minilm-2026-12",
        embedding_version=OnnxEmbedder.version,
        embedding_dimension=DIMENSION,
        full=Head(full[0], full[1], full[2], full[3], temperature),
        text_only=Head(text[0], text[1], text[2], text[3], text_t),
        default_quality_bias=bias,
    )
    report["shipped"] = {
        "design": final_name,
        "l2": l2,
        "temperature": temperature,
        "default_quality_bias": bias,
        "text_only_l2": text_l2,
        "text_only_temperature": text_t,
        "fitted_on": int(fit_mask.sum()),
        "features": list(FEATURE_NAMES),
    }
    lines += [
        "",
        f"Shipped: {final_name}, L2 {l2}, temperature {temperature}, default "
        f"quality_bias {bias}, refitted on all {int(fit_mask.sum())} labelled "
        "prompts (training and both development sets). The text-only head "
        f"(L2 {text_l2}, T {text_t}) serves when no embedding can be had.",
        "",
        "Cells: share (count/of) [95% Wilson interval].",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_dev.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "router_dev.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.write:
        target = Path(str(resources.files("services.router") / MODEL_RESOURCE))
        target.write_text(model.to_json() + "\n", "utf-8")
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


def _cell(figure: dict[str, object]) -> str:
    wilson95 = figure["wilson95"]
    assert isinstance(wilson95, tuple)
    low, high = wilson95
    share = f"{figure['rate']:.1%} ({figure['count']}/{figure['of']})"
    return f"{share} [{low:.0%}, {high:.0%}]"


if __name__ == "__main__":
    sys.exit(main())
