"""The pair judge's model: pinned, symmetric, and it tells the two kinds apart.

Real parts only: the vendored int8 ONNX model and tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.onnx_models import ModelFileError

pytest.importorskip("onnxruntime")

from services.cache.adapters.onnx_pair_judge import (
    MODEL_PATH,
    OnnxPairJudge,
)

CACHED = "How do I create a Python virtual environment?"
PARAPHRASE = "Steps to set up a venv in Python?"
NEAR_MISS = "How do I activate a Python virtual environment?"


@pytest.fixture(scope="module")
def judge() -> OnnxPairJudge:
    return OnnxPairJudge.load()


def test_the_score_is_a_probability_and_the_same_in_either_order(
    judge: OnnxPairJudge,
) -> None:
    forward = judge.score_now(PARAPHRASE, CACHED)
    assert 0.0 <= forward <= 1.0
    assert judge.score_now(CACHED, PARAPHRASE) == pytest.approx(forward, abs=1e-6)


def test_a_paraphrase_scores_above_a_near_miss_of_the_same_question(
    judge: OnnxPairJudge,
) -> None:
    assert judge.score_now(PARAPHRASE, CACHED) > 0.97
    assert judge.score_now(NEAR_MISS, CACHED) < 0.5


def test_a_text_longer_than_the_window_is_cut_not_refused(
    judge: OnnxPairJudge,
) -> None:
    assert 0.0 <= judge.score_now("why " * 400, CACHED) <= 1.0


def test_a_model_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "judge.onnx"
    other.write_bytes(MODEL_PATH.read_bytes()[:-1])
    with pytest.raises(ModelFileError, match="sha256"):
        OnnxPairJudge.load(other)
