"""The router's complexity encoder: MiniLM fine-tuned on labelled prompts, in ONNX.

The model file (``complexity_encoder.onnx`` beside the complexity model file, int8,
written by ``bench/router_finetune.py``) reads the word pieces of
:func:`services.router.encoder_input.encoder_input` and the request's measurements
(:func:`services.router.complexity.measure`), and gives one logit per boundary
between levels; the model file's calibration turns them into probabilities. The
file and the vendored tokenizer are checked against their pinned sha256 at load.
Nothing is downloaded.

Loading takes a fraction of a second and happens on the first ``auto`` request, in
a worker thread, so a router that never sees ``auto`` never loads the model. Runs
happen one at a time in one worker thread (onnxruntime releases the GIL). When the
model cannot be loaded (the ``router`` extra is not installed, a file is not the
pinned one), the error is logged once and every call raises
:class:`BackendUnavailableError`; the classifier then keeps its student's answer.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from services.core.errors import BackendUnavailableError
from services.core.onnx_models import checked, cpu_session, load_tokenizer
from services.router.complexity import FEATURE_NAMES, FloatArray
from services.router.encoder_input import encoder_input

_log = structlog.get_logger("tollgate.router")


class OnnxComplexityEncoder:
    """One loaded encoder: session and tokenizer. Use :meth:`load`."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, path: Path, sha256: str) -> OnnxComplexityEncoder:
        """Load the pinned model and tokenizer and warm the session up.

        Raises:
            ModelFileError: a file is missing or not the pinned one.
        """
        session = cpu_session(checked(path, sha256))
        tokenizer = load_tokenizer()
        tokenizer.no_truncation()
        tokenizer.no_padding()
        encoder = cls(session, tokenizer)
        # The first run allocates (keep it off requests) and fails here, not on a
        # request, when the file reads other measurements than this build's.
        encoder.logits("warm up", "", np.zeros(len(FEATURE_NAMES)))
        return encoder

    def logits(self, text: str, previous: str, measurements: FloatArray) -> FloatArray:
        """The three boundary logits of one request, on the calling thread."""
        ids, first = encoder_input(self._tokenizer, text, previous)
        input_ids = np.array([ids], dtype=np.int64)
        token_types = np.zeros_like(input_ids)
        token_types[0, first:] = 1
        (logits,) = self._session.run(
            None,
            {
                "input_ids": input_ids,
                "attention_mask": np.ones_like(input_ids),
                "token_type_ids": token_types,
                "measurements": measurements.astype(np.float32)[None, :],
            },
        )
        result: FloatArray = np.asarray(logits[0], dtype=np.float64)
        return result


class LazyComplexityEncoder:
    """A :class:`~services.router.ports.ComplexityEncoder` loading on first use."""

    def __init__(self, path: Path, sha256: str) -> None:
        self._path = path
        self._sha256 = sha256
        self._encoder: OnnxComplexityEncoder | None = None
        self._failed: str | None = None
        self._loading: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="complexity")

    async def _load_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._encoder = await loop.run_in_executor(
                self._executor, OnnxComplexityEncoder.load, self._path, self._sha256
            )
            _log.info("complexity_encoder_loaded")
        except Exception as error:  # ImportError, ModelFileError, ORT errors
            self._failed = f"{type(error).__name__}: {error}"
            _log.error("complexity_encoder_unavailable", error=self._failed)

    async def _loaded(self) -> OnnxComplexityEncoder:
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_once())
        # Shielded: a caller whose deadline passes mid-load leaves the load running
        # for the next caller instead of throwing the loaded model away.
        await asyncio.shield(self._loading)
        if self._encoder is None:
            raise BackendUnavailableError(
                f"complexity encoder unavailable ({self._failed})",
                reason="COMPLEXITY_ENCODER_UNAVAILABLE",
            )
        return self._encoder

    async def logits(
        self, text: str, previous: str, measurements: FloatArray
    ) -> FloatArray:
        """The three boundary logits of one request.

        Raises:
            BackendUnavailableError: the model cannot be loaded or run.
        """
        encoder = await self._loaded()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, encoder.logits, text, previous, measurements
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendUnavailableError(
                "complexity encoder failed", reason="COMPLEXITY_ENCODER_FAILED"
            ) from error

    async def close(self) -> None:
        """Finish a load in flight and stop the worker thread."""
        if self._loading is not None and not self._loading.done():
            await asyncio.wait([self._loading])
        self._executor.shutdown(wait=True)
