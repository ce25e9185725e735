"""Deterministic embedding vectors.

Each vector is drawn from a generator seeded with the sha256 of the model and
the input, then L2-normalised. The raw components do not depend on the
requested ``dimensions``, so a shorter vector is the renormalised prefix of a
longer one, as with OpenAI's text-embedding-3 models.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from collections.abc import Sequence

DEFAULT_DIMENSIONS = 1536
"""Vector size when the request gives no ``dimensions`` (text-embedding-3-small)."""

LARGE_MODEL_DIMENSIONS = 3072
"""Vector size of ``text-embedding-3-large`` when no ``dimensions`` is given."""

MAX_DIMENSIONS = 8192
"""Largest ``dimensions`` the simulator accepts."""


def default_dimensions(model: str) -> int:
    """Return the native vector size of ``model``."""
    return LARGE_MODEL_DIMENSIONS if model.endswith("-large") else DEFAULT_DIMENSIONS


def embed(model: str, item: str | Sequence[int], dimensions: int) -> list[float]:
    """Return the unit vector of ``item`` (text or token ids) for ``model``."""
    if isinstance(item, str):
        material = "text\0" + item
    else:
        material = "ids\0" + ",".join(str(i) for i in item)
    digest = hashlib.sha256(f"{model}\0{material}".encode()).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    raw = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(math.fsum(x * x for x in raw))
    if norm == 0.0:  # pragma: no cover - needs every draw to be exactly 0.0
        raw[0], norm = 1.0, 1.0
    return [x / norm for x in raw]


def encode_base64(vector: Sequence[float]) -> str:
    """Encode ``vector`` as OpenAI does: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
