from __future__ import annotations

import json
from importlib import resources

from services.core.tokens import count_tokens
from services.router.complexity import (
    MODEL_RESOURCE,
    ComplexityModel,
    extract_features,
    load_complexity_model,
)
from services.router.enums import Complexity


def test_the_model_file_weighs_exactly_the_features_measured() -> None:
    data = json.loads(
        (resources.files("services.router") / MODEL_RESOURCE).read_text("utf-8")
    )

    assert list(data["weights"]) == list(extract_features("x").vector())
    assert data["thresholds"] == sorted(data["thresholds"])
    assert len(data["thresholds"]) == 3


def test_length_is_counted_in_exact_tokens_outside_quoted_material() -> None:
    passage = "The quarterly numbers rose by eighteen percent across regions."
    prompt = f'Summarize this: "{passage}"'

    features = extract_features(prompt)

    assert features.quoted_tokens == count_tokens(f'"{passage}"')
    assert features.tokens == count_tokens('Summarize this: ""')


def test_code_maths_and_parts_are_detected() -> None:
    code = extract_features("Why does this fail? def f(x): return x[0]; f([])")
    maths = extract_features("Prove that 3 + 4 = 7 and derive the general rule.")
    parts = extract_features("What is X? How does Y work?\n- first\n- second")

    assert code.code_pasted > 0
    assert maths.math_terms >= 2
    assert (parts.questions, parts.list_items) == (2, 2)


def test_the_score_is_cut_by_the_thresholds_in_order() -> None:
    model = ComplexityModel(weights={"log_tokens": 1.0}, thresholds=(2.0, 4.0, 6.0))

    # log2(1 + tokens): "hi" is 1 token (1.0), a long text is far above 6.
    assert model.classify("hi") is Complexity.TRIVIAL
    assert model.classify("word " * 200) is Complexity.COMPLEX


def test_the_shipped_model_separates_the_extremes() -> None:
    model = load_complexity_model()

    assert model.classify("What is the capital of France?") is Complexity.TRIVIAL
    assert (
        model.classify(
            "Analyze the trade-offs of event sourcing versus CRUD for a payments "
            "ledger with strict auditability, and design the migration."
        )
        is Complexity.COMPLEX
    )
