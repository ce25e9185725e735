"""Prompt complexity: trivial, simple, moderate or complex, from cheap text features.

No model is called. :func:`extract_features` measures a prompt (exact o200k tokens,
questions, enumerated parts, code, maths, verbs of analysis, lookup phrasing, stated
constraints); a :class:`ComplexityModel` turns the features into one score with a
linear model and cuts it into the four classes with three ordered thresholds (an
ordinal, cumulative-link model). The weights ship in ``complexity_model.json`` and
are fitted on the dev split of ``bench/data/router_complexity.jsonl`` by
``bench/router_quality.py --calibrate``; the held-out split measures them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from services.router.enums import Complexity
from services.router.keywords import PromptFeatures, extract_features

if TYPE_CHECKING:
    from services.router.domain import ConversationShape

MODEL_RESOURCE = "complexity_model.json"

CLASSES: tuple[Complexity, ...] = (
    Complexity.TRIVIAL,
    Complexity.SIMPLE,
    Complexity.MODERATE,
    Complexity.COMPLEX,
)
"""The classes in increasing order of difficulty."""

# The lexicons and their measurements are the same in the learned model, which
# reads them as 15 of its inputs: one copy, in services/router/keywords.py.


@dataclass(frozen=True, slots=True)
class ComplexityModel:
    """A linear score cut into the four classes by three ordered thresholds."""

    weights: Mapping[str, float]
    thresholds: Sequence[float]
    """Score above which a prompt is at least simple, moderate, complex."""

    def score(self, features: PromptFeatures) -> float:
        """The prompt's complexity score (higher is harder)."""
        return sum(
            self.weights.get(name, 0.0) * value
            for name, value in features.vector().items()
        )

    def classify(self, prompt: str) -> Complexity:
        """The complexity class of ``prompt``."""
        score = self.score(extract_features(prompt))
        return CLASSES[sum(score > threshold for threshold in self.thresholds)]

    def to_json(self) -> str:
        """The model file's text."""
        return json.dumps(
            {"weights": dict(self.weights), "thresholds": list(self.thresholds)},
            indent=2,
        )


def load_complexity_model() -> ComplexityModel:
    """The calibrated model that ships with the router."""
    text = (resources.files("services.router") / MODEL_RESOURCE).read_text("utf-8")
    data = json.loads(text)
    return ComplexityModel(
        weights={name: float(weight) for name, weight in data["weights"].items()},
        thresholds=tuple(float(t) for t in data["thresholds"]),
    )


# Conversations this long (earlier user turns) carry context a small model loses.
LONG_CONVERSATION_TURNS = 4


def conversation_floor(shape: ConversationShape) -> Complexity:
    """The least complexity the conversation's shape alone implies.

    The text classifier sees the last user turn only; what comes with it raises the
    floor: tools to choose and call, a schema to satisfy, images to read, or a long
    conversation make a request at least SIMPLE, so it never lands on the smallest
    tier, which handles these worst.
    """
    if (
        shape.tools
        or shape.tool_exchanges
        or shape.json_schema
        or shape.images
        or shape.earlier_user_turns >= LONG_CONVERSATION_TURNS
    ):
        return Complexity.SIMPLE
    return Complexity.TRIVIAL
