"""The fine-tuned complexity encoder: its input, its lazy load, its student."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.core.errors import BackendUnavailableError
from services.core.onnx_models import load_tokenizer
from services.core.tokens import count_tokens
from services.router.adapters.encoder import LazyComplexityEncoder
from services.router.complexity import (
    FEATURE_NAMES,
    ConversationFeatures,
    load_complexity_model,
    measure,
)
from services.router.domain import Classifier, RouteRequest
from services.router.encoder_input import (
    CONTEXT_TOKENS,
    HEAD_TOKENS,
    TAIL_TOKENS,
    encoder_input,
    previous_user_message,
)
from services.router.enums import Complexity, Priority, RequestType
from tests.unit.router.encoder_router import router_with_shipped_encoder

HARD = (
    "Prove that every finite group of order p^2, p prime, is abelian, and show "
    "where the argument fails for order p^3."
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    loaded = load_tokenizer()
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def _pieces(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def test_the_input_is_the_text_then_the_message_before_it(tokenizer: Any) -> None:
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

    ids, first = encoder_input(tokenizer, "now make it thread-safe", "def f(): ...")

    text = _pieces(tokenizer, "now make it thread-safe")
    assert ids == [cls, *text, sep, *_pieces(tokenizer, "def f(): ..."), sep]
    assert first == len(text) + 2
    hi = _pieces(tokenizer, "hi")
    assert encoder_input(tokenizer, "hi", "  ") == ([cls, *hi, sep], len(hi) + 2)


def test_a_long_text_keeps_its_start_and_its_end(tokenizer: Any) -> None:
    pasted = " ".join(f"line{n}" for n in range(3000))  # about 30 kB
    text = f"Here is the log. {pasted} What time did the job start?"

    ids, first = encoder_input(tokenizer, text, "an earlier question " * 100)

    question = _pieces(tokenizer, "What time did the job start?")
    assert first == 1 + HEAD_TOKENS + TAIL_TOKENS + 1
    assert ids[first - 1 - len(question) : first - 1] == question
    opening = _pieces(tokenizer, "Here is the log")
    assert ids[1 : 1 + len(opening)] == opening
    assert len(ids) == first + CONTEXT_TOKENS + 1


def test_the_previous_user_message_is_the_one_before_the_last() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ]
    assert previous_user_message(messages) == "first"
    assert previous_user_message(messages[:2]) == ""


def _request(text: str, previous: str = "") -> RouteRequest:
    return RouteRequest(
        tenant_id="acme",
        user_id="user_0001",
        priority=Priority.STANDARD,
        request_type=RequestType.CHAT,
        requested_model="auto",
        input=text,
        input_tokens=count_tokens(text),
        max_output_tokens=0,
        previous_input=previous,
    )


async def test_the_shipped_encoder_separates_the_extremes() -> None:
    async with router_with_shipped_encoder(student_confidence=1.0) as router:
        greeting = await router.route(_request("thanks, that worked!"))
        proof = await router.route(_request(HARD))

    assert (greeting.tier, greeting.complexity) == ("economy", Complexity.TRIVIAL)
    assert (proof.tier, proof.complexity) == ("premium", Complexity.COMPLEX)
    assert greeting.classified_by == proof.classified_by == "encoder"


async def test_the_shipped_student_settles_the_extremes_without_the_encoder() -> None:
    async with router_with_shipped_encoder() as router:
        greeting = await router.route(_request("thanks, that worked!"))
        proof = await router.route(_request(HARD))

    assert (greeting.tier, greeting.complexity) == ("economy", Complexity.TRIVIAL)
    assert (proof.tier, proof.complexity) == ("premium", Complexity.COMPLEX)
    assert greeting.classified_by == proof.classified_by == "student"
    assert "(student)" in greeting.reason


async def test_an_encoder_file_not_the_pinned_one_falls_back_to_the_student(
    tmp_path: Path,
) -> None:
    model = load_complexity_model()
    tampered = tmp_path / "complexity_encoder.onnx"
    shutil.copyfile(model.encoder.path, tampered)
    with tampered.open("ab") as file:
        file.write(b"\0")
    encoder = LazyComplexityEncoder(tampered, model.encoder.sha256)
    classifier = Classifier(model, encoder, student_confidence=1.0)
    tiers = dict.fromkeys(Complexity, "standard")
    try:
        with pytest.raises(BackendUnavailableError):
            await encoder.logits("hi", "", np.zeros(len(FEATURE_NAMES)))
        answer = await classifier.classify(_request(HARD), tiers)
    finally:
        await encoder.close()

    assert answer.classifier == "student"
    assert answer.logits is None
    assert answer.probabilities == tuple(
        round(float(p), 4)
        for p in model.probabilities(HARD, ConversationFeatures(), None)
    )


async def test_a_caller_timing_out_mid_load_does_not_throw_the_model_away() -> None:
    model = load_complexity_model()
    encoder = LazyComplexityEncoder(model.encoder.path, model.encoder.sha256)
    measurements = measure("warm", ConversationFeatures())
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                encoder.logits("warm", "", measurements), timeout=0.001
            )
        assert encoder._loading is not None
        await asyncio.wait_for(encoder._loading, timeout=60)  # still running
        assert encoder._encoder is not None  # loaded once, for the next caller
        logits = await encoder.logits("warm", "", measurements)
        assert logits.shape == (3,)
    finally:
        await encoder.close()


async def test_at_a_high_quality_bias_the_encoder_judges_even_a_greeting() -> None:
    model = load_complexity_model()
    encoder = LazyComplexityEncoder(model.encoder.path, model.encoder.sha256)
    tiers = {
        Complexity.TRIVIAL: "economy",
        Complexity.SIMPLE: "standard",
        Complexity.MODERATE: "standard",
        Complexity.COMPLEX: "premium",
    }
    try:
        default = await Classifier(model, encoder).classify(
            _request("thanks, that worked!"), tiers
        )
        careful = await Classifier(model, encoder, quality_bias=5.0).classify(
            _request("thanks, that worked!"), tiers
        )
    finally:
        await encoder.close()

    assert (default.classifier, default.complexity) == ("student", Complexity.TRIVIAL)
    # At bias 5 premium wins from a 0.7% chance: a chance the student does not
    # weigh, so the encoder runs, and sends it there.
    assert (careful.classifier, careful.complexity) == (
        "encoder",
        Complexity.COMPLEX,
    )
