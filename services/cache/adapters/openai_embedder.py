"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence

import openai

from services.cache.adapters.batching import MicroBatcher, Vector
from services.core.errors import BackendUnavailableError


class OpenAIEmbedder:
    """An :class:`~services.cache.ports.Embedder` calling the embeddings API.

    Args:
        client: the SDK client (base URL and key set).
        model: the embedding model, for example ``text-embedding-3-small``.
        dimensions: the vector size to ask for.
    """

    def __init__(self, client: openai.AsyncOpenAI, model: str, dimensions: int) -> None:
        self._client = client
        self._model = model
        self.dimension = dimensions
        self.version = f"openai:{model}:{dimensions}"
        self._batcher = MicroBatcher(self._run, max_batch=256)
        self._last_call_ok = True

    async def _run(self, texts: list[str]) -> list[Vector]:
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=texts, dimensions=self.dimension
            )
        except openai.OpenAIError as error:
            self._last_call_ok = False
            raise BackendUnavailableError(
                f"embeddings endpoint failed: {type(error).__name__}",
                reason="EMBEDDING_FAILED",
            ) from error
        self._last_call_ok = True
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise BackendUnavailableError(
                "embeddings endpoint returned the wrong number of vectors",
                reason="EMBEDDING_FAILED",
            )
        return [_unit(item.embedding) for item in ordered]

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One unit vector per text, batched with concurrent callers."""
        return await self._batcher.embed(texts)

    async def ping(self) -> bool:
        """Whether the last call succeeded: health checks must not spend money."""
        return self._last_call_ok

    async def close(self) -> None:
        """Finish the batch in flight and close the HTTP client."""
        await self._batcher.close()
        await self._client.close()


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
