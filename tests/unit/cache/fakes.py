"""A deterministic embedder for domain tests: hashed bag of words."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from services.core.errors import BackendUnavailableError


class BagOfWordsEmbedder:
    """Texts sharing words get similar unit vectors; no model needed."""

    dimension = 64
    version = "bag-of-words-test"

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def embed(self, texts: Sequence[str]) -> list[Sequence[float]]:
        self.calls += 1
        if self.fail:
            raise BackendUnavailableError("embedder down")
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            vector[digest[0] % self.dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    async def ping(self) -> bool:
        return not self.fail

    async def close(self) -> None:
        return None


class ScriptedPairJudge:
    """A pair judge whose score for each cached text the test sets."""

    version = "scripted-judge-test"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.asked: list[tuple[str, str]] = []
        self.fail = False

    async def score(self, query: str, cached: str) -> float:
        self.asked.append((query, cached))
        if self.fail:
            raise BackendUnavailableError("judge down", reason="PAIR_JUDGE_FAILED")
        return self.scores.get(cached, 0.0)

    async def close(self) -> None:
        return None
