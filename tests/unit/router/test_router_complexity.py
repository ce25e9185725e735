from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from services.core.tokens import count_tokens
from services.router.complexity import (
    CLASSES,
    FEATURE_NAMES,
    MODEL_FORMAT,
    MODEL_RESOURCE,
    STUDENT_BUCKETS,
    ComplexityModel,
    ConversationFeatures,
    choose_complexity,
    conversation_floor,
    load_complexity_model,
    measure,
    premium_threshold,
    student_buckets,
)
from services.router.domain import ConversationShape
from services.router.enums import Complexity

BUILT_IN_TIERS = {
    Complexity.TRIVIAL: "economy",
    Complexity.SIMPLE: "standard",
    Complexity.MODERATE: "standard",
    Complexity.COMPLEX: "premium",
}
NO_CONVERSATION = ConversationFeatures()


def test_the_model_file_weighs_exactly_the_features_measured() -> None:
    data = json.loads(
        (resources.files("services.router") / MODEL_RESOURCE).read_text("utf-8")
    )

    assert data["format"] == MODEL_FORMAT == "tollgate-complexity/5"
    assert tuple(data["features"]) == FEATURE_NAMES
    assert len(measure("x", NO_CONVERSATION)) == len(FEATURE_NAMES)
    assert data["classes"] == [c.value for c in CLASSES]
    # The encoder's file ships beside the model file, pinned by its digest, with
    # one calibration per boundary between adjacent levels.
    encoder = data["encoder"]
    path = Path(str(resources.files("services.router") / encoder["file"]))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == encoder["sha256"]
    assert len(encoder["slope"]) == len(encoder["intercept"]) == 3
    # The student that answers first: its words file pinned the same way, a
    # weight per bucket and level, and per measurement and level.
    student = data["student"]
    path = Path(str(resources.files("services.router") / student["file"]))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == student["sha256"]
    assert np.load(path).shape == (STUDENT_BUCKETS, len(CLASSES))
    assert np.asarray(student["measurement_weights"]).shape == (
        len(FEATURE_NAMES),
        len(CLASSES),
    )
    assert 0.5 < student["confidence"] < 1.0


def test_a_model_file_of_a_previous_format_is_refused(tmp_path: Path) -> None:
    data = json.loads(load_complexity_model().to_json())
    for previous in ("tollgate-complexity-heads/3", "tollgate-complexity/4"):
        data["format"] = previous
        path = tmp_path / "model.json"
        path.write_text(json.dumps(data))

        with pytest.raises(ValueError, match="not a tollgate-complexity/5"):
            load_complexity_model(path)


def test_a_model_file_with_truncated_student_weights_is_refused(
    tmp_path: Path,
) -> None:
    model = load_complexity_model()
    data = json.loads(model.to_json())
    data["student"]["measurement_weights"] = data["student"]["measurement_weights"][:-1]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    shutil.copyfile(model.student.path, tmp_path / model.student.path.name)

    with pytest.raises(ValueError, match=r"student\.measurement_weights has shape"):
        load_complexity_model(path)


def test_a_student_words_file_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    model = load_complexity_model()
    path = tmp_path / "model.json"
    path.write_text(model.to_json())
    words = np.load(model.student.path)
    words[0, 0] += 1
    np.save(tmp_path / model.student.path.name, words)

    with pytest.raises(ValueError, match="not the file the model names"):
        load_complexity_model(path)


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ({"slope": [1.0, 1.0]}, r"encoder\.slope has shape"),
        ({"intercept": [0.0, 0.0, 0.0, 0.0]}, r"encoder\.intercept has shape"),
        ({"slope": [1.0, 0.0, 1.0]}, "slopes must be positive"),
    ],
)
def test_a_model_file_with_a_broken_encoder_calibration_is_refused(
    tmp_path: Path, calibration: dict[str, list[float]], message: str
) -> None:
    data = json.loads(load_complexity_model().to_json())
    data["encoder"].update(calibration)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))

    with pytest.raises(ValueError, match=message):
        load_complexity_model(path)


def test_the_files_a_model_names_are_found_beside_it(tmp_path: Path) -> None:
    shipped = load_complexity_model()
    path = tmp_path / "model.json"
    path.write_text(shipped.to_json())
    shutil.copyfile(shipped.student.path, tmp_path / shipped.student.path.name)

    model = load_complexity_model(path)

    assert model.encoder.path == tmp_path / "complexity_encoder.onnx"
    assert model.student.path == tmp_path / "complexity_student.npy"


def test_a_model_file_for_other_features_is_refused(tmp_path: Path) -> None:
    data = json.loads(load_complexity_model().to_json())
    data["features"] = data["features"][:-1]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))

    with pytest.raises(ValueError, match="other features"):
        load_complexity_model(path)


def test_a_model_survives_its_own_json() -> None:
    model = load_complexity_model()

    again = ComplexityModel.from_json(model.to_json(), model.encoder.path.parent)

    assert again.to_json() == model.to_json()


def test_measurements_count_exact_tokens_code_and_conversation() -> None:
    prompt = "Why does this fail?\n```python\ndef f(x):\n    return x[0]\n```"
    features = dict(
        zip(
            FEATURE_NAMES,
            measure(prompt, ConversationFeatures(messages=5, earlier_user_turns=2)),
            strict=True,
        )
    )

    assert features["log_tokens"] == pytest.approx(np.log2(1 + count_tokens(prompt)))
    assert features["code_block"] == 1.0
    assert features["questions"] == 1.0
    assert features["pasted_fraction"] > 0.5
    assert features["log_earlier_user_turns"] == pytest.approx(np.log2(3))


def test_the_students_features_hash_to_the_same_buckets_in_every_process() -> None:
    buckets = student_buckets("Prove it. PROVE it!")

    # crc32, not the salted hash(): words and word pairs case folded, each once,
    # and the opening word and words.
    keys = ("w:prove", "w:it", "b:prove it", "b:it prove", "o1:prove", "o:prove it")
    expected = sorted({zlib.crc32(k.encode()) % STUDENT_BUCKETS for k in keys})
    assert buckets.tolist() == expected


def test_the_students_features_read_a_bounded_window() -> None:
    log = "worker timed out\n" * 1000

    assert student_buckets(log + "prove the theorem").tolist() == (
        student_buckets(log).tolist()
    )


def test_a_long_pasted_log_is_measured_within_a_bounded_window() -> None:
    log = "2026-12-05 ERROR worker 7 timed out after 30s\n" * 5000
    # Same length, same first 6,000 characters, and a tail that would change every
    # measurement if it were read: questions, code fences, digits, CJK, lists.
    tail = "? ```\n- 42 \u4e2d\u6587\n" * len(log)
    other = log[:6000] + tail[: len(log) - 6000]

    features = dict(zip(FEATURE_NAMES, measure(log, NO_CONVERSATION), strict=True))

    assert features["log_tokens"] > np.log2(50_000)  # scaled from the window
    assert list(measure(other, NO_CONVERSATION)) == list(measure(log, NO_CONVERSATION))


def test_probabilities_sum_to_one_with_and_without_the_encoder() -> None:
    model = load_complexity_model()

    encoded = model.probabilities(
        "Define entropy.", NO_CONVERSATION, np.array([2.0, -1.0, -3.0])
    )
    student = model.probabilities("Define entropy.", NO_CONVERSATION, None)

    assert encoded.sum() == pytest.approx(1.0)
    assert student.sum() == pytest.approx(1.0)
    assert (encoded >= 0).all() and (student >= 0).all()


def test_a_larger_boundary_logit_moves_probability_above_that_boundary() -> None:
    model = load_complexity_model()
    low = model.probabilities("x", NO_CONVERSATION, np.array([1.0, -1.0, -4.0]))
    high = model.probabilities("x", NO_CONVERSATION, np.array([1.0, -1.0, 2.0]))

    assert high[3] > low[3]
    assert high[:3].sum() == pytest.approx(1.0 - high[3])


def test_encoder_logits_that_disagree_still_give_monotone_probabilities() -> None:
    # P(complex) above P(>= moderate) would be a negative P(moderate): clipped.
    model = load_complexity_model()

    p = model.probabilities("x", NO_CONVERSATION, np.array([-5.0, -5.0, 5.0]))

    assert (p >= 0).all()
    assert p[2] == 0.0


@pytest.mark.parametrize(
    "prompt",
    [
        "hi",
        "What is the capital of France?",
        "Summarize this paragraph in two sentences: the meeting moved to Friday.",
        "Prove that there are infinitely many primes and derive a bound on gaps.",
    ],
)
def test_the_quality_bias_never_lowers_the_tier_as_it_rises(prompt: str) -> None:
    model = load_complexity_model()
    p = list(model.probabilities(prompt, NO_CONVERSATION, None))
    tiers = ("economy", "standard", "premium")

    ranks = [
        tiers.index(BUILT_IN_TIERS[choose_complexity(p, bias / 4, BUILT_IN_TIERS)])
        for bias in range(-40, 41)
    ]

    assert ranks == sorted(ranks)


def test_the_premium_threshold_falls_as_the_quality_bias_rises() -> None:
    assert premium_threshold(0.0) == pytest.approx(0.5)
    assert premium_threshold(1.5) < premium_threshold(0.0) < premium_threshold(-1.0)


@pytest.mark.parametrize(
    ("probabilities", "bias", "expected"),
    [
        # Likeliest tier wins at bias 0: simple + moderate pool to 0.6.
        ((0.4, 0.3, 0.3, 0.0), 0.0, Complexity.SIMPLE),
        # A 30% chance of needing premium is enough once the bias is 1.
        ((0.1, 0.3, 0.3, 0.3), 1.0, Complexity.COMPLEX),
        ((0.1, 0.3, 0.3, 0.3), 0.0, Complexity.SIMPLE),
        ((0.7, 0.2, 0.0, 0.1), 1.0, Complexity.TRIVIAL),
        ((0.0, 0.2, 0.5, 0.3), 0.5, Complexity.MODERATE),
    ],
)
def test_choose_complexity_pools_levels_by_tier(
    probabilities: tuple[float, ...], bias: float, expected: Complexity
) -> None:
    assert choose_complexity(probabilities, bias, BUILT_IN_TIERS) is expected


def test_the_floor_keeps_tools_schemas_and_images_off_the_smallest_tier() -> None:
    assert conversation_floor(ConversationShape()) is Complexity.TRIVIAL
    assert conversation_floor(ConversationShape(tools=2)) is Complexity.SIMPLE
    assert conversation_floor(ConversationShape(json_schema=True)) is (
        Complexity.SIMPLE
    )
    assert conversation_floor(ConversationShape(images=1)) is Complexity.SIMPLE
    # A long text conversation is the model's to judge, not a floor.
    assert conversation_floor(ConversationShape(earlier_user_turns=9)) is (
        Complexity.TRIVIAL
    )


@pytest.mark.parametrize(
    ("probabilities", "level", "settled"),
    [
        ((0.90, 0.05, 0.03, 0.02), Complexity.TRIVIAL, True),
        ((0.70, 0.20, 0.05, 0.05), Complexity.TRIVIAL, False),  # not sure enough
        # Sure of the standard tier (0.8), but 0.18 of needing premium is too much.
        ((0.02, 0.50, 0.30, 0.18), Complexity.SIMPLE, False),
        ((0.02, 0.50, 0.34, 0.14), Complexity.SIMPLE, True),
        ((0.00, 0.05, 0.10, 0.85), Complexity.COMPLEX, True),
    ],
)
def test_the_student_settles_only_a_tier_it_is_sure_of(
    probabilities: tuple[float, ...], level: Complexity, settled: bool
) -> None:
    student = replace(
        load_complexity_model().student, confidence=0.8, premium_ceiling=0.15
    )

    assert student.settles(probabilities, level, BUILT_IN_TIERS, 1.2) is settled


def test_a_confidence_of_one_never_settles_even_a_certain_answer() -> None:
    # A softmax can round to exactly 1.0; 1.0 must still mean "always the encoder".
    student = replace(load_complexity_model().student, confidence=1.0)

    assert not student.settles(
        (1.0, 0.0, 0.0, 0.0), Complexity.TRIVIAL, BUILT_IN_TIERS, 1.2
    )


def test_a_bias_that_wants_premium_on_small_chances_is_the_encoders_to_judge() -> None:
    student = replace(
        load_complexity_model().student, confidence=0.8, premium_ceiling=0.15
    )
    sure = (0.97, 0.02, 0.005, 0.005)

    assert student.settles(sure, Complexity.TRIVIAL, BUILT_IN_TIERS, 1.5)
    # premium_threshold(2.0) = 0.12: below the ceiling, so not the student's call.
    assert not student.settles(sure, Complexity.TRIVIAL, BUILT_IN_TIERS, 2.0)
    # Premium itself the student may still settle at any bias.
    assert student.settles((0, 0, 0.1, 0.9), Complexity.COMPLEX, BUILT_IN_TIERS, 5)


def test_the_student_separates_the_extremes() -> None:
    model = load_complexity_model()

    def level(prompt: str) -> Complexity:
        p = model.probabilities(prompt, NO_CONVERSATION, None)
        return choose_complexity(list(p), model.default_quality_bias, BUILT_IN_TIERS)

    assert level("What is the capital of France?") is Complexity.TRIVIAL
    assert (
        level(
            "Analyze the trade-offs of event sourcing versus CRUD for a payments "
            "ledger with strict auditability, design the migration, and prove "
            "that no transaction is lost or applied twice during the cut-over."
        )
        is Complexity.COMPLEX
    )


_COUNTED_PROMPTS = (
    "What is Python?",
    "Why does this fail?\n```python\ndef f(x):\n    return x[0]\n```",
    "Résumé in 日本語, please: « une phrase assez longue pour être citée »",
    "Prove that there are infinitely many primes. " * 130,  # 5,850 characters
)


@pytest.mark.parametrize("prompt", _COUNTED_PROMPTS)
def test_a_supplied_count_gives_the_same_measurements_and_probabilities(
    prompt: str,
) -> None:
    # What the gateway sends (its exact count of the whole text) must classify a
    # prompt exactly as the router's own count does.
    model = load_complexity_model()
    conversation = ConversationFeatures(messages=3, earlier_user_turns=1)
    supplied = count_tokens(prompt)

    assert len(prompt) <= 6000
    assert np.array_equal(
        measure(prompt, conversation, supplied), measure(prompt, conversation)
    )
    assert np.array_equal(
        model.probabilities(prompt, conversation, None, tokens=supplied),
        model.probabilities(prompt, conversation, None),
    )


def test_a_supplied_count_replaces_the_scaled_window_count_of_a_long_prompt() -> None:
    prompt = "Summarise this log line by line.\n" + "GET /health 200 3ms\n" * 2000
    exact = count_tokens(prompt)
    features = dict(
        zip(FEATURE_NAMES, measure(prompt, NO_CONVERSATION, exact), strict=True)
    )
    scaled = dict(zip(FEATURE_NAMES, measure(prompt, NO_CONVERSATION), strict=True))

    assert features["log_tokens"] == pytest.approx(np.log2(1 + exact))
    window = count_tokens(prompt[:6000]) * len(prompt) // 6000
    assert scaled["log_tokens"] == pytest.approx(np.log2(1 + window))
    assert {k: v for k, v in features.items() if k != "log_tokens"} == {
        k: v for k, v in scaled.items() if k != "log_tokens"
    }
