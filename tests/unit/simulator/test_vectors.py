from __future__ import annotations

import array
import base64
import math

import pytest

from services.simulator.vectors import default_dimensions, embed, encode_base64


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.parametrize("dimensions", [1, 3, 256, 1536, 3072])
def test_vectors_are_unit_length(dimensions: int) -> None:
    vector = embed("text-embedding-3-small", "hello", dimensions)
    assert len(vector) == dimensions
    assert _norm(vector) == pytest.approx(1.0, abs=1e-12)


def test_vectors_are_deterministic_and_input_dependent() -> None:
    a = embed("text-embedding-3-small", "hello", 64)
    assert a == embed("text-embedding-3-small", "hello", 64)
    assert a != embed("text-embedding-3-small", "hello!", 64)
    assert a != embed("text-embedding-3-large", "hello", 64)
    assert a != embed("text-embedding-3-small", [15339], 64)


def test_shorter_vector_is_the_renormalised_prefix_of_a_longer_one() -> None:
    long = embed("m", "prefix", 512)
    short = embed("m", "prefix", 128)
    scale = _norm(long[:128])
    assert short == pytest.approx([x / scale for x in long[:128]])


def test_token_id_inputs_are_hashed_by_value() -> None:
    assert embed("m", [1, 2, 3], 16) == embed("m", [1, 2, 3], 16)
    assert embed("m", [1, 2, 3], 16) != embed("m", [1, 23], 16)


def test_base64_matches_the_sdk_decoding() -> None:
    vector = embed("m", "x", 32)
    decoded = array.array("f", base64.b64decode(encode_base64(vector))).tolist()
    assert decoded == pytest.approx(vector, rel=1e-6)


def test_default_dimensions_follow_the_model() -> None:
    assert default_dimensions("text-embedding-3-small") == 1536
    assert default_dimensions("text-embedding-3-large") == 3072
    assert default_dimensions("anything") == 1536
