"""Measure the router's complexity classifier beside the shipped one and the seed's.

Four classifiers, each given what the router is given (the last user text and the
conversation's shape):

- ``new``: the model of ``services/router/complexity_model.json``: its fine-tuned
  encoder (run by the router's own adapter) over the last user text, the user
  message before it and the measurements, calibrated, at the model's default
  ``quality_bias``, with the conversation floor (``services/router/complexity.py``);
- ``shipped``: the softmax model shipped before it (commit ca4b34e), run from
  verbatim copies of its ``complexity.py`` and ``complexity_model.json``
  (``bench/router_baseline/complexity_v2.py``), at its default bias, with the floor;
- ``keywords``: the keyword model shipped before that (``complexity_v1.py``);
- ``seed``: the seed article's keyword rules.

Figures: exact accuracy, right tier (the tier of the built-in routing table the
label needs: trivial → economy gpt-4.1-nano, simple and moderate → standard
gpt-4.1-mini, complex → premium gpt-4.1), the share of complex prompts routed below
premium, the share of trivial prompts routed to premium, each with its 95% Wilson
interval, and the worst-case cost against always using premium.

Run from the repository root:

- ``python bench/router_quality.py``: the two development files the new model was
  fitted on (so IN-SAMPLE for it; ``router_dev.md`` has held-out-writer figures)
  → ``bench/results/router_quality.*``;
- ``python bench/router_quality.py --blind FILE``: one blind set, evaluated once
  → ``bench/results/router_quality_blind_<suffix>.*`` (the suffix from the file
  name: ``router_blind_2026-12b.jsonl`` → ``2026-12b``) with the file's sha256;
- ``python bench/router_quality.py --latency``: time per classification (the
  encoder's run, then calibration and decision), and of the cache's embedding
  → ``bench/results/router_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from router_baseline import complexity_v1, complexity_v2
from router_train import (
    DATA,
    OLD_BLIND_FILE,
    OLD_DEV_FILE,
    RESULTS,
    ROOT,
    TIER_OF,
    TRAIN_FILES,
    Example,
    load,
    routing_figures,
)

from services.core.tokens import count_tokens
from services.router.adapters.encoder import LazyComplexityEncoder
from services.router.complexity import (
    CLASSES,
    ConversationFeatures,
    conversation_floor,
    load_complexity_model,
    measure,
    student_buckets,
)
from services.router.domain import (
    Classifier,
    ConversationShape,
    RouteRequest,
    worst_case_cost_micros,
)
from services.router.enums import Complexity, Priority, RequestType
from services.router.table import load_routing_table

BASELINE = ROOT / "bench" / "router_baseline"
Classify = Callable[[Sequence[Example], np.ndarray], list[Complexity]]


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


def _shape(conversation: ConversationFeatures) -> ConversationShape:
    return ConversationShape(
        messages=conversation.messages,
        earlier_user_turns=conversation.earlier_user_turns,
    )


def _route_request(example: Example) -> RouteRequest:
    """What the router is given for ``example``: the gateway counts the tokens."""
    tokens = count_tokens(example.prompt)
    return RouteRequest(
        tenant_id="bench",
        user_id="bench",
        priority=Priority.STANDARD,
        request_type=RequestType.CHAT,
        requested_model="auto",
        input=example.prompt,
        input_tokens=tokens,
        max_output_tokens=0,
        conversation=_shape(example.conversation),
        previous_input=example.previous,
        input_text_tokens=tokens,
    )


@dataclass(frozen=True)
class RouterRun:
    """The router's own classifier over a list of prompts, in one event loop."""

    levels: list[Complexity]
    """Each prompt's level, with the conversation floor."""
    milliseconds: list[float]
    """Each ``Classifier.classify`` call, the encoder in its worker thread."""
    by_student: int
    """How many the student settled alone."""


def run_router_classifier(examples: Sequence[Example], mode: str) -> RouterRun:
    """``services.router.domain.Classifier`` as the router runs it.

    ``mode``: ``cascade`` (the shipped setting: the student, and the encoder when
    the student is not sure), ``encoder`` (student confidence 1.0: the encoder
    for every prompt) or ``student`` (no encoder, as with it turned off). The
    encoder is loaded and run once before the first timed call.
    """
    model = load_complexity_model()
    encoder = (
        None
        if mode == "student"
        else LazyComplexityEncoder(model.encoder.path, model.encoder.sha256)
    )
    classifier = Classifier(
        model, encoder, student_confidence=1.0 if mode == "encoder" else None
    )
    requests = [_route_request(example) for example in examples]

    async def run() -> RouterRun:
        levels: list[Complexity] = []
        milliseconds: list[float] = []
        by_student = 0
        try:
            if encoder is not None:
                await encoder.logits(
                    "warm", "", measure("warm", ConversationFeatures())
                )
            for request in requests:
                start = time.perf_counter()
                answer = await classifier.classify(request, TIER_OF)
                milliseconds.append((time.perf_counter() - start) * 1e3)
                by_student += answer.classifier == "student"
                floor = conversation_floor(request.conversation)
                levels.append(max(answer.complexity, floor, key=CLASSES.index))
        finally:
            if encoder is not None:
                await encoder.close()
        return RouterRun(levels, milliseconds, by_student)

    return asyncio.run(run())


def new_classifier(mode: str = "cascade") -> Classify:
    """The model in the repository, at its default bias, with the floor."""

    def classify(examples: Sequence[Example], vectors: np.ndarray) -> list[Complexity]:
        return run_router_classifier(examples, mode).levels

    return classify


def _share(count: int, of: int) -> dict[str, object]:
    return {"count": count, "of": of, "rate": round(count / of, 4)}


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of a list of milliseconds."""
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def shipped_classifier() -> Classify:
    """The softmax model shipped before this change (commit ca4b34e), with its floor."""
    model = complexity_v2.ComplexityModel.from_json(
        (BASELINE / "complexity_model_v2.json").read_text("utf-8")
    )

    def classify(examples: Sequence[Example], vectors: np.ndarray) -> list[Complexity]:
        result = []
        for example, vector in zip(examples, vectors, strict=True):
            conversation = complexity_v2.ConversationFeatures(
                messages=example.conversation.messages,
                earlier_user_turns=example.conversation.earlier_user_turns,
            )
            p = model.probabilities(example.prompt, conversation, vector)
            level = complexity_v2.choose_complexity(
                list(p), model.default_quality_bias, TIER_OF
            )
            floor = complexity_v2.conversation_floor(_shape(example.conversation))
            result.append(max(level, floor, key=CLASSES.index))
        return result

    return classify


def keyword_classifier() -> Classify:
    """The keyword model shipped before the softmax, with its own floor."""
    data = json.loads((BASELINE / "complexity_model_v1.json").read_text("utf-8"))
    model = complexity_v1.ComplexityModel(
        weights={k: float(v) for k, v in data["weights"].items()},
        thresholds=tuple(float(t) for t in data["thresholds"]),
    )

    def classify(examples: Sequence[Example], vectors: np.ndarray) -> list[Complexity]:
        return [
            max(
                model.classify(e.prompt),
                complexity_v1.conversation_floor(_shape(e.conversation)),
                key=CLASSES.index,
            )
            for e in examples
        ]

    return classify


def seed_classifier(
    examples: Sequence[Example], vectors: np.ndarray
) -> list[Complexity]:
    """The seed heuristic over the last user text."""
    return [seed_heuristic(e.prompt) for e in examples]


def cost_figures(
    examples: Sequence[Example], predicted: Sequence[Complexity]
) -> dict[str, object]:
    """Worst-case cost of the routing against always premium and the oracle."""
    table = load_routing_table(None)
    budget = table.request_types[RequestType.CHAT].max_output_tokens
    premium = table.tiers[table.premium_tier_name()]
    routed = oracle = always = 0
    for example, level in zip(examples, predicted, strict=True):
        tokens = count_tokens(example.prompt)
        routed += worst_case_cost_micros(table.tiers[TIER_OF[level]], tokens, budget)
        oracle += worst_case_cost_micros(
            table.tiers[TIER_OF[example.label]], tokens, budget
        )
        always += worst_case_cost_micros(premium, tokens, budget)
    return {
        "routed_cost_micros": routed,
        "oracle_cost_micros": oracle,
        "premium_cost_micros": always,
        "saved_vs_premium_percent": round(100 * (1 - routed / always), 1),
    }


def evaluate(
    examples: Sequence[Example], vectors: np.ndarray, keep_predictions: bool = False
) -> dict[str, object]:
    """The figures of the four classifiers on ``examples``.

    With ``keep_predictions``, each classifier's level for every prompt id too
    (``predicted``), so two runs can be compared prompt by prompt
    (``bench/router_paired.py``).
    """
    labels = [e.label for e in examples]
    results: dict[str, object] = {}
    for name, classify in (
        ("new", new_classifier()),
        ("new: encoder alone", new_classifier("encoder")),
        ("new: student alone", new_classifier("student")),
        ("shipped", shipped_classifier()),
        ("keywords", keyword_classifier()),
        ("seed", seed_classifier),
    ):
        predicted = classify(examples, vectors)
        figures = routing_figures(labels, predicted)
        figures.update(cost_figures(examples, predicted))
        if keep_predictions:
            figures["predicted"] = {
                e.id: level.value for e, level in zip(examples, predicted, strict=True)
            }
        results[name] = figures
    return results


def embed(examples: Sequence[Example]) -> np.ndarray:
    """The MiniLM vectors of the prompts (what the router computes)."""
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

    embedder = OnnxEmbedder.load()
    vectors: list[Sequence[float]] = []
    prompts = [e.prompt for e in examples]
    for start in range(0, len(prompts), 16):
        vectors += embedder.encode(prompts[start : start + 16])
    return np.asarray(vectors, dtype=np.float64)


def _cell(figure: object) -> str:
    assert isinstance(figure, dict)
    low, high = figure["wilson95"]
    return (
        f"{figure['rate']:.1%} ({figure['count']}/{figure['of']}) "
        f"[{low:.1%}, {high:.1%}]"
    )


def markdown(title: str, notes: Sequence[str], sets: dict[str, object]) -> str:
    """The report's text."""
    lines = [f"# {title}", "", *notes, ""]
    lines += [
        "| set | classifier | exact | right tier | complex under-routed | "
        "trivial → premium | saved vs premium |",
        "|---|---|---|---|---|---|---|",
    ]
    for set_name, results in sets.items():
        assert isinstance(results, dict)
        for name, r in results.items():
            lines.append(
                f"| {set_name} | {name} | {_cell(r['exact_accuracy'])} | "
                f"{_cell(r['right_tier'])} | {_cell(r['complex_under_routed'])} | "
                f"{_cell(r['trivial_to_premium'])} | "
                f"{r['saved_vs_premium_percent']}% |"
            )
    for set_name, results in sets.items():
        assert isinstance(results, dict)
        for name, r in results.items():
            lines += [
                "",
                f"## Confusion, {set_name}, {name} (rows: label, columns: predicted)",
                "",
                "| label | " + " | ".join(c.value for c in CLASSES) + " |",
                "|---|" + "---|" * len(CLASSES),
            ]
            matrix = r["confusion_rows_label_columns_predicted"]
            for cls, row in zip(CLASSES, matrix, strict=True):
                lines.append(f"| {cls.value} | " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines) + "\n"


def development() -> int:
    """The four classifiers on the two development files (in-sample for ``new``)."""
    sets: dict[str, object] = {}
    for name in (OLD_BLIND_FILE, OLD_DEV_FILE):
        examples = load(DATA / name, name)
        sets[name] = evaluate(examples, embed(examples))
    notes = [
        "Generated by `python bench/router_quality.py`; do not edit by hand.",
        "IN-SAMPLE for the new model: it was fitted on both files (with the other "
        "development files). `router_dev.md` has its figures on writers held out. "
        "The shipped softmax was fitted on `router_complexity.jsonl` and tuned "
        "with `router_blind_2026-12.jsonl` read once; the keyword model's "
        "lexicon was written with `router_complexity.jsonl` in view.",
        "Cells: share (count/of) [95% Wilson interval].",
    ]
    report = {"sets": sets, "model": load_complexity_model().version}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_quality.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown("Router complexity: development files", notes, sets)
    (RESULTS / "router_quality.md").write_text(text)
    print(text)
    return 0


def blind(path: Path) -> int:
    """The four classifiers on a blind set, once."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    examples = load(path, path.name)
    model = load_complexity_model()
    sets: dict[str, object] = {
        "blind": evaluate(examples, embed(examples), keep_predictions=True)
    }
    notes = [
        "Generated by `python bench/router_quality.py --blind "
        f"{path.relative_to(ROOT)}`; do not edit by hand.",
        f"Blind set: `{path.relative_to(ROOT)}`, {len(examples)} prompts, "
        f"sha256 `{digest}`, written by a helper who saw neither the training "
        "data nor the classifier, and read once, after the model file was final.",
        f"New model: `{model.version}` at quality_bias "
        f"{model.default_quality_bias}. Goals (issue 18): right tier ≥ 85%, "
        "complex under-routed ≤ 5%, trivial → premium ≤ 5%.",
        "Cells: share (count/of) [95% Wilson interval].",
    ]
    run = run_router_classifier(examples, "cascade")  # a second pass, timed
    settled = _share(run.by_student, len(examples))
    timing = summary(run.milliseconds)
    notes.insert(
        3,
        f"`new` is the cascade the router runs: the student settled "
        f"{settled['count']} of {settled['of']} prompts alone (confidence "
        f"{model.student.confidence}, premium ceiling "
        f"{model.student.premium_ceiling}), the encoder the rest; one "
        f"classification took p50 {timing['p50']} ms, p95 {timing['p95']} ms, "
        f"mean {timing['mean']} ms (the router's own classifier in one event "
        "loop, the encoder in its worker thread, the tokens counted beforehand "
        "as the gateway does; this machine).",
    )
    report = {
        "blind_file": str(path.relative_to(ROOT)),
        "sha256": digest,
        "prompts": len(examples),
        "model": model.version,
        "quality_bias": model.default_quality_bias,
        "settled_by_student": settled,
        "classification_ms": timing,
        "sets": sets,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = path.stem.removeprefix("router_blind_")
    stem = f"router_quality_blind_{suffix}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(f"Router complexity: blind set {suffix}", notes, sets)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


def latency() -> int:
    """Time per classification (encoder and decision), and of the cache's embedding."""
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

    examples: list[Example] = []
    for name in TRAIN_FILES:
        examples += load(DATA / name, name)
    # Every 4th prompt of the training files: all lengths, languages, shapes.
    examples = examples[::4]
    model = load_complexity_model()
    old = complexity_v2.ComplexityModel.from_json(
        (BASELINE / "complexity_model_v2.json").read_text("utf-8")
    )
    embedder = OnnxEmbedder.load()
    vectors = embed(examples)

    def timed(run: Callable[[Example, np.ndarray], object]) -> list[float]:
        samples: list[float] = []
        for example, vector in zip(examples, vectors, strict=True):
            start = time.perf_counter()
            run(example, vector)
            samples.append((time.perf_counter() - start) * 1e3)
        return samples

    def shipped(example: Example, vector: np.ndarray) -> object:
        conversation = complexity_v2.ConversationFeatures(
            messages=example.conversation.messages,
            earlier_user_turns=example.conversation.earlier_user_turns,
        )
        p = old.probabilities(example.prompt, conversation, vector)
        return complexity_v2.choose_complexity(
            list(p), old.default_quality_bias, TIER_OF
        )

    cascade = run_router_classifier(examples, "cascade")
    classify_ms = cascade.milliseconds
    encoder_ms = run_router_classifier(examples, "encoder").milliseconds
    student_ms = run_router_classifier(examples, "student").milliseconds
    shipped_ms = timed(shipped)
    measure_ms = timed(lambda e, v: measure(e.prompt, e.conversation))
    features_ms = timed(lambda e, v: student_buckets(e.prompt))
    embed_ms = timed(lambda e, v: embedder.encode([e.prompt]))
    long_log = "2026-12-05 ERROR worker 7 timed out after 30s\n" * 2000
    pasted = Example(
        "log", "log", Complexity.SIMPLE, long_log, ConversationFeatures(), "en"
    )
    long_ms = run_router_classifier([pasted] * 50, "cascade").milliseconds

    report = {
        "what": "milliseconds per request on every 4th prompt of the training "
        "files, one pass: the router's own classifier (Classifier.classify in "
        "one event loop, the encoder in its worker thread, the tokens counted "
        "beforehand as the gateway does) as it ships (measurements, the student, "
        "and for the prompts it does not settle the encoder's run with its "
        "tokenisation, calibration and decision), with the encoder for every "
        "prompt, and with the student alone; the student's hashed features; "
        "the softmax over the cache's frozen embedding "
        "shipped two models back, on top of that embedding; the cache's own "
        "embedding of the prompt (what the frozen-embedding classifiers needed "
        "first); a shared 2-core machine, so noisy",
        "model": model.version,
        "classification_ms": summary(classify_ms),
        "settled_by_student": _share(cascade.by_student, len(examples)),
        "encoder_for_every_prompt_ms": summary(encoder_ms),
        "student_alone_ms": summary(student_ms),
        "measurements_only_ms": summary(measure_ms),
        "student_features_only_ms": summary(features_ms),
        "softmax_on_top_of_embedding_ms": summary(shipped_ms),
        "cache_embedding_ms": summary(embed_ms),
        "ratio_p50_classification_over_cache_embedding": round(
            statistics.median(classify_ms) / statistics.median(embed_ms), 3
        ),
        "pasted_100kB_log_ms": summary(long_ms),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "samples": len(classify_ms),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_latency.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Development figures, a blind evaluation, or the latency."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--blind", type=Path, help="a frozen blind set, read once")
    group.add_argument("--latency", action="store_true", help="time a classification")
    args = parser.parse_args(argv)
    if args.blind is not None:
        return blind(args.blind.resolve())
    if args.latency:
        return latency()
    return development()


if __name__ == "__main__":
    sys.exit(main())
