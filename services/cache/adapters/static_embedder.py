"""Local embeddings without a forward pass: MiniLM distilled to a word-piece table.

``services/cache/data/minilm-static-384.npy`` holds one 384-d vector per word
piece of MiniLM's vocabulary, distilled from all-MiniLM-L6-v2 by
``bench/static_embedder_distill.py`` (model2vec's recipe: each piece through the
model, PCA, frequency weights). A text's vector is the sum of its pieces' rows,
L2-normalised: a tokenizer call and a gather, tens of microseconds where the
transformer takes milliseconds (``bench/results/semantic_path.md``).

It is a weaker sentence model than MiniLM, and in the cache it need not be
stronger: the vector only nominates candidates above the similarity threshold,
and the verification guard decides every hit from the two texts. On the read
pair sets the rules accept as many paraphrases among its candidates as among
MiniLM's (``bench/results/static_embedder.md``).

Runs on the calling thread: cheaper than the hop to a worker thread would be.
It reads at most the first :data:`MAX_CHARS` characters of a text, so one call
holds the event loop for a bounded time whatever it is given (shadow mode compares
whole answers); MiniLM reads fewer, 256 word pieces. The guard, not the vector,
decides a hit, and it reads both texts whole. The table is memory-mapped, so only
the rows in use are resident.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.cache.adapters.batching import Vector
from services.core.onnx_models import TOKENIZER_PATH, checked, load_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "minilm-static-384.npy"
TABLE_SHA256 = "31a5cc9577300bfb555230a2b15c6cab3f5baa44caa0c71c5bd31f813133a80a"
DIMENSION = 384
# About 1,000 word pieces: a few hundred microseconds of tokenizing at most.
MAX_CHARS = 4096
# The vector of a text with no word pieces (empty or whitespace): a unit vector,
# as the index's cosine needs, the same for every such text.
_NO_PIECES = (1.0,) + (0.0,) * (DIMENSION - 1)


class StaticEmbedder:
    """An :class:`~services.cache.ports.Embedder` summing distilled piece vectors.

    Use :meth:`load`; the constructor takes an already loaded table and tokenizer.
    """

    dimension = DIMENSION
    version = f"minilm-static-384@{TABLE_SHA256[:12]}"

    def __init__(self, table: np.ndarray, tokenizer: Tokenizer) -> None:
        if table.ndim != 2 or table.shape[1] != DIMENSION:
            raise ValueError(f"a static table has {DIMENSION} columns")
        self._table = table
        self._encode = tokenizer.encode

    @classmethod
    def load(
        cls, table_path: Path = TABLE_PATH, tokenizer_path: Path = TOKENIZER_PATH
    ) -> StaticEmbedder:
        """Map the pinned table and load the tokenizer.

        Raises:
            ModelFileError: a file is missing or its sha256 is not the pinned one.
        """
        mapped = np.load(checked(table_path, TABLE_SHA256), mmap_mode="r")
        # A plain array over the same mapping: rows taken from a ``np.memmap``
        # come back as memmaps, each paying its subclass's Python hooks.
        table = np.asarray(mapped)
        tokenizer = load_tokenizer(tokenizer_path)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(table, tokenizer)

    def encode(self, texts: Sequence[str]) -> list[Vector]:
        """One unit vector per text (its first :data:`MAX_CHARS` characters).

        A text without word pieces gets the first axis.
        """
        vectors = []
        for text in texts:
            ids = self._encode(text[:MAX_CHARS], add_special_tokens=False).ids
            summed = self._table[ids].sum(axis=0, dtype=np.float32)
            norm = float(np.linalg.norm(summed))
            vectors.append((summed / norm).tolist() if norm > 0 else list(_NO_PIECES))
        return vectors

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """One unit vector per text, computed on the calling thread."""
        return self.encode(texts)

    async def ping(self) -> bool:
        """Always true once loaded: the table is in this process."""
        return True

    async def close(self) -> None:
        """Nothing to release: the mapping goes with the process."""
