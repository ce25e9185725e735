"""The semantic tier's pair judge: a 3-layer MiniLM cross-encoder on onnxruntime.

Trained by ``bench/cache_pair_train.py`` on labelled paraphrase and near-miss
pairs (all-MiniLM-L6-v2 cut to three layers, fine-tuned, int8 matrix products);
the file is vendored in ``services/cache/data`` and checked against its pinned
sha256 at load. It reads ``[CLS] first [SEP] second [SEP]`` (at most
:data:`MAX_TOKENS` word pieces, the longer text cut first) and gives one logit;
the score is the mean of both orders' probabilities, since the question is
symmetric. Both orders go in one batch, run on the judge's own worker thread
(onnxruntime releases the GIL).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import BackendUnavailableError
from services.core.onnx_models import checked, cpu_session, load_tokenizer

MODEL_PATH = (
    Path(__file__).resolve().parents[1] / "data" / "pair-judge-minilm-l3-int8.onnx"
)
MODEL_SHA256 = "c8586a31f78c834f419ffb61194b5e3385c1623a12d8539da11a445be39530f5"
MAX_TOKENS = 96


class OnnxPairJudge:
    """A :class:`~services.cache.ports.PairJudge` in process. Use :meth:`load`."""

    version = f"pair-judge-minilm-l3-int8@{MODEL_SHA256[:12]}"

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pair-judge")

    @classmethod
    def load(cls, path: Path = MODEL_PATH, sha256: str = MODEL_SHA256) -> OnnxPairJudge:
        """Load the pinned model and tokenizer, and warm the session up.

        Raises:
            ModelFileError: a file is missing or not the pinned one.
        """
        session = cpu_session(checked(path, sha256))
        tokenizer = load_tokenizer()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        judge = cls(session, tokenizer)
        judge.score_now("warm up", "warm-up")  # the first run allocates
        return judge

    def score_now(self, query: str, cached: str) -> float:
        """The score of one pair, on the calling thread."""
        encodings = self._tokenizer.encode_batch([(cached, query), (query, cached)])
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((2, width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            types[row, : len(encoding.ids)] = encoding.type_ids
            mask[row, : len(encoding.ids)] = 1
        (logits,) = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        return float(probabilities.mean())

    async def score(self, query: str, cached: str) -> float:
        """P(the answer cached for ``cached`` serves ``query``).

        Raises:
            BackendUnavailableError: the model run failed.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, self.score_now, query, cached
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendUnavailableError(
                "pair judge failed", reason="PAIR_JUDGE_FAILED"
            ) from error

    async def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)
