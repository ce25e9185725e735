"""The static embedder: MiniLM distilled to a word-piece table, the cache's default.

Real parts only: the pinned table, the vendored tokenizer, the embedded Qdrant
Edge index and the cache's own settings and start-up code.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.cache import verification
from services.cache.adapters.static_embedder import (
    MAX_CHARS,
    TABLE_PATH,
    StaticEmbedder,
)
from services.cache.app import build_semantic_tier
from services.cache.config import CacheSettings
from services.cache.domain import (
    Answer,
    CacheableRequest,
    LookupStatus,
    SemanticPolicy,
    Usage,
)
from services.core.onnx_models import ModelFileError
from tests.unit.cache.builders import edge_cache, store_answer


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder.load()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.dot(a, b))


def test_vectors_are_unit_length_and_independent_of_the_batch(
    embedder: StaticEmbedder,
) -> None:
    alone = embedder.encode(["what is a cache"])[0]
    long = "explain " * 40 + "the semantic tier"
    batched = embedder.encode([long, "what is a cache"])
    assert len(alone) == embedder.dimension == 384
    assert math.fsum(x * x for x in alone) == pytest.approx(1.0, abs=1e-5)
    assert alone == batched[1]


def test_a_paraphrase_is_nearer_than_a_question_on_another_subject(
    embedder: StaticEmbedder,
) -> None:
    cached, paraphrase, other = embedder.encode(
        [
            "How do I reset my password?",
            "how can i reset my password",
            "What is the capital of Australia?",
        ]
    )
    assert _cosine(cached, paraphrase) > 0.8
    assert _cosine(cached, other) < 0.5


def test_only_the_first_max_chars_of_a_long_text_are_read(
    embedder: StaticEmbedder,
) -> None:
    head = ("the deploy failed at step four; " * 200)[:MAX_CHARS]
    first, second, shorter = embedder.encode(
        [head + "a different tail " * 50, head + "x" * 9000, head[:-40]]
    )
    assert first == second
    assert first != shorter


def test_a_text_without_word_pieces_gets_a_unit_vector(
    embedder: StaticEmbedder,
) -> None:
    (blank,) = embedder.encode(["   "])
    assert math.fsum(x * x for x in blank) == pytest.approx(1.0)


def test_a_table_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "table.npy"
    shutil.copyfile(TABLE_PATH, copy)
    with copy.open("r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x01")
    with pytest.raises(ModelFileError):
        StaticEmbedder.load(copy)


async def test_a_reworded_question_is_served_from_the_semantic_tier(
    embedder: StaticEmbedder, tmp_path: Path
) -> None:
    async with edge_cache(embedder, SemanticPolicy(0.5), tmp_path) as cache:
        scope = uuid.uuid4().hex

        def request(text: str) -> CacheableRequest:
            return CacheableRequest(
                tenant_id=scope, model="gpt-4.1-mini", input=text, temperature=0.0
            )

        answer = Answer("Open settings, then keys.", "gpt-4.1-mini", Usage(9, 6, 15))
        await store_answer(
            cache, request("How do I rotate the API keys of my account?"), answer
        )
        hit = await cache.lookup(request("how do i rotate the api keys of my account"))
        assert hit.status is LookupStatus.SEMANTIC and hit.entry is not None
        assert hit.entry.answer.output_text == "Open settings, then keys."
        near_miss = await cache.lookup(
            request("How do I revoke the API keys of my account?")
        )
        assert near_miss.status is LookupStatus.MISS
        assert near_miss.rejected_candidates == 1


@pytest.mark.parametrize(
    ("backend", "version_prefix"),
    [("static", "minilm-static-384@"), ("minilm", "all-MiniLM-L6-v2-int8@")],
)
async def test_the_settings_choose_the_embedder(
    backend: str, version_prefix: str, tmp_path: Path
) -> None:
    settings = CacheSettings(embedding_backend=backend, state_dir=tmp_path)
    tier = await build_semantic_tier(settings)
    assert tier is not None
    try:
        assert tier.embedder.version.startswith(version_prefix)
    finally:
        await tier.embedder.close()
        await tier.index.close()


def test_static_is_the_default_embedder() -> None:
    assert CacheSettings().embedding_backend == "static"


async def test_building_the_tier_reads_the_guards_tables(tmp_path: Path) -> None:
    # A first lookup must not wait for the vocabulary and WordNet to be read.
    tables = (
        verification._vocabulary,
        verification._wordnet_synsets,
        verification._person_nouns,
        verification._derivations,
    )
    for table in tables:
        table.cache_clear()
    tier = await build_semantic_tier(CacheSettings(state_dir=tmp_path))
    assert tier is not None
    try:
        assert all(table.cache_info().currsize == 1 for table in tables)
    finally:
        await tier.embedder.close()
        await tier.index.close()
