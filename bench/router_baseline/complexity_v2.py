"""Prompt complexity: a calibrated probability for trivial, simple, moderate, complex.

A verbatim copy of ``services/router/complexity.py`` at commit ca4b34e (the softmax
model shipped before the boundary heads), kept to run that model beside its
successor on the blind set; its weights are ``complexity_model_v2.json``.

The classifier is a multinomial logistic regression over three kinds of input:

- the all-MiniLM-L6-v2 sentence embedding of the last user text (the vector the
  cache's semantic tier computes; the router embeds the text itself when nobody
  did), which carries what the prompt asks for in any of the training languages;
- cheap text measurements: exact o200k tokens, lines, list items, questions,
  code blocks and code punctuation, digits, pasted material, non-ASCII letters
  and tokens per word (language and jargon), and the keyword counts of the first
  classifier (:mod:`services.router.keywords`), which still add a few points on
  data their author never saw;
- the conversation's shape: earlier user turns, messages, tools, a JSON schema,
  images, tool exchanges, a reasoning effort.

Its output is a probability per level (:meth:`ComplexityModel.probabilities`), not a
class: :func:`choose_complexity` turns them into a decision with one setting,
``quality_bias``, that tilts the odds towards harder levels (more quality, more
cost) or easier ones. The weights ship in ``complexity_model.json``, fitted by
``bench/router_train.py``; a second head over the measurements alone classifies
when no embedding can be had (the embedder failed or is not installed).

Nothing here downloads anything or calls a model: a classification is one small
matrix product (well under 0.2 ms, ``bench/results/router_latency.json``) on top of
the embedding.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.core.tokens import count_tokens
from services.router.enums import Complexity
from services.router.keywords import KEYWORD_NAMES, keyword_vector

if TYPE_CHECKING:
    from services.router.domain import ConversationShape

MODEL_RESOURCE = "complexity_model.json"
MODEL_FORMAT = "tollgate-complexity-softmax/1"

CLASSES: tuple[Complexity, ...] = (
    Complexity.TRIVIAL,
    Complexity.SIMPLE,
    Complexity.MODERATE,
    Complexity.COMPLEX,
)
"""The classes in increasing order of difficulty."""

FloatArray = npt.NDArray[np.float64]

_LIST_ITEM = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+")
_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_QUOTED = re.compile(r"\"[^\"]{20,}\"|“[^”]{20,}”|«[^»]{20,}»")
_CODE_PUNCTUATION = re.compile(r"[{}();=<>\[\]_/\\|$#]")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True, slots=True)
class ConversationFeatures:
    """The part of :class:`ConversationShape` the classifier weighs."""

    messages: int = 1
    earlier_user_turns: int = 0
    tools: int = 0
    json_schema: bool = False
    images: int = 0
    tool_exchanges: int = 0
    reasoning: bool = False

    @classmethod
    def of(cls, shape: ConversationShape) -> ConversationFeatures:
        """The features of a routed request's conversation."""
        return cls(
            messages=shape.messages,
            earlier_user_turns=shape.earlier_user_turns,
            tools=shape.tools,
            json_schema=shape.json_schema,
            images=shape.images,
            tool_exchanges=shape.tool_exchanges,
            reasoning=shape.reasoning,
        )


FEATURE_NAMES: tuple[str, ...] = (
    "log_tokens",
    "log_lines",
    "list_items",
    "questions",
    "code_block",
    "code_punctuation",
    "digits",
    "pasted_fraction",
    "non_ascii",
    "tokens_per_word",
    "log_earlier_user_turns",
    "log_messages",
    "tools",
    "json_schema",
    "images",
    "tool_exchanges",
    "reasoning",
    *(f"keyword_{name}" for name in KEYWORD_NAMES),
)
"""The measurements, in the order of the model file's feature weights."""


def measure(prompt: str, conversation: ConversationFeatures) -> FloatArray:
    """The measurements of ``prompt`` and its conversation, in ``FEATURE_NAMES`` order.

    Linear in the prompt's length; the keyword part is described in
    :mod:`services.router.keywords`.
    """
    tokens = count_tokens(prompt)
    chars = max(1, len(prompt))
    words = max(1, len(prompt.split()))
    lines = sum(1 for line in prompt.splitlines() if line.strip())
    pasted = sum(len(m) for m in _CODE_FENCE.findall(prompt))
    pasted += sum(len(m) for m in _QUOTED.findall(_CODE_FENCE.sub("", prompt)))
    non_space = max(1, len(prompt) - len(_SPACE.findall(prompt)))
    return np.array(
        [
            math.log2(1 + tokens),
            math.log2(1 + lines),
            min(len(_LIST_ITEM.findall(prompt)), 8),
            min(prompt.count("?"), 4),
            float("```" in prompt),
            min(len(_CODE_PUNCTUATION.findall(prompt)) / non_space, 0.5),
            min(sum(c.isdigit() for c in prompt) / non_space, 0.5),
            min(pasted / chars, 1.0),
            sum(not c.isascii() and c.isalpha() for c in prompt) / non_space,
            min(tokens / words, 4.0),
            math.log2(1 + conversation.earlier_user_turns),
            math.log2(max(1, conversation.messages)),
            math.log2(1 + conversation.tools),
            float(conversation.json_schema),
            math.log2(1 + conversation.images),
            math.log2(1 + conversation.tool_exchanges),
            float(conversation.reasoning),
            *keyword_vector(prompt, tokens),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True, slots=True)
class Head:
    """One softmax layer: ``softmax((x - mean) / std @ weights + bias) / T``."""

    mean: FloatArray
    scale: FloatArray
    """One over the standard deviation of each input on the training set."""
    weights: FloatArray
    """Inputs by classes."""
    bias: FloatArray
    temperature: float

    def probabilities(self, inputs: FloatArray) -> FloatArray:
        """The calibrated probability of each class, in ``CLASSES`` order."""
        logits = (((inputs - self.mean) * self.scale) @ self.weights + self.bias) / (
            self.temperature
        )
        logits -= logits.max()
        exp = np.exp(logits)
        result: FloatArray = exp / exp.sum()
        return result

    def to_dict(self) -> dict[str, object]:
        """The head as JSON-ready lists (six decimals)."""
        return {
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "weights": [_rounded(row) for row in self.weights],
            "bias": _rounded(self.bias),
            "temperature": round(self.temperature, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], inputs: int) -> Head:
        """A head from its JSON form.

        Raises:
            ValueError: the arrays do not have ``inputs`` rows and 4 classes.
        """
        head = cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=np.asarray(data["bias"], dtype=np.float64),
            temperature=float(str(data["temperature"])),
        )
        expected = {
            "mean": (inputs,),
            "scale": (inputs,),
            "weights": (inputs, len(CLASSES)),
            "bias": (len(CLASSES),),
        }
        for name, shape in expected.items():
            actual = getattr(head, name).shape
            if actual != shape:
                raise ValueError(f"{name} has shape {actual}, expected {shape}")
        if head.temperature <= 0:
            raise ValueError("temperature must be positive")
        return head


def _rounded(values: FloatArray) -> list[float]:
    return [round(float(v), 6) for v in values]


@dataclass(frozen=True, slots=True)
class ComplexityModel:
    """Two calibrated softmax heads: embedding + measurements, or measurements only."""

    version: str
    """A name for logs and shadow comparisons (the file's ``version``)."""
    embedding_version: str
    """The embedder whose vectors ``full`` was fitted on."""
    embedding_dimension: int
    full: Head
    """Over the embedding followed by the measurements."""
    text_only: Head
    """Over the measurements alone: the fallback when there is no embedding."""
    default_quality_bias: float
    """The bias the fit was tuned for (what ``quality_bias`` 0 means is below)."""

    def probabilities(
        self,
        prompt: str,
        conversation: ConversationFeatures,
        embedding: Sequence[float] | FloatArray | None,
    ) -> FloatArray:
        """P(trivial), P(simple), P(moderate), P(complex) of one request.

        ``embedding`` is the prompt's unit vector from the embedder this model was
        fitted with; None (or a vector of another size) uses the text-only head.
        """
        features = measure(prompt, conversation)
        if embedding is None or len(embedding) != self.embedding_dimension:
            return self.text_only.probabilities(features)
        inputs = np.concatenate([np.asarray(embedding, dtype=np.float64), features])
        return self.full.probabilities(inputs)

    def to_json(self) -> str:
        """The model file's text."""
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "version": self.version,
                "classes": [c.value for c in CLASSES],
                "features": list(FEATURE_NAMES),
                "embedding_version": self.embedding_version,
                "embedding_dimension": self.embedding_dimension,
                "default_quality_bias": self.default_quality_bias,
                "full": self.full.to_dict(),
                "text_only": self.text_only.to_dict(),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ComplexityModel:
        """Parse and check a model file.

        Raises:
            ValueError: the file is of another format, weighs other features, or
                its arrays have the wrong shapes.
        """
        data = json.loads(text)
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} model file")
        if tuple(data["features"]) != FEATURE_NAMES:
            raise ValueError("the model weighs other features than this build")
        if tuple(data["classes"]) != tuple(c.value for c in CLASSES):
            raise ValueError("the model has other classes than this build")
        dimension = int(data["embedding_dimension"])
        return cls(
            version=str(data["version"]),
            embedding_version=str(data["embedding_version"]),
            embedding_dimension=dimension,
            full=Head.from_dict(data["full"], dimension + len(FEATURE_NAMES)),
            text_only=Head.from_dict(data["text_only"], len(FEATURE_NAMES)),
            default_quality_bias=float(data["default_quality_bias"]),
        )


def load_complexity_model(path: Path | None = None) -> ComplexityModel:
    """The model in ``path``, or the one that ships with the router.

    Raises:
        OSError: ``path`` cannot be read.
        ValueError: the file is not a valid model
            (see :meth:`ComplexityModel.from_json`).
    """
    if path is None:
        text = (resources.files("services.router") / MODEL_RESOURCE).read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return ComplexityModel.from_json(text)


def premium_threshold(quality_bias: float) -> float:
    """The probability of needing the most capable tier above which it is used."""
    return 1.0 / (1.0 + math.exp(quality_bias))


def choose_complexity(
    probabilities: Sequence[float],
    quality_bias: float,
    tier_of: Mapping[Complexity, str],
) -> Complexity:
    """The level to route as, from the probabilities and one cost/quality setting.

    Levels are pooled by the tier that serves them (``tier_of``, from the routing
    table: simple and moderate share the standard tier in the built-in table).
    The most capable tier, the one serving COMPLEX, is chosen as soon as the
    pooled probability of needing it reaches ``1 / (1 + exp(quality_bias))``:
    0.5 at bias 0 (the likelier side wins), 0.18 at 1.5, 0.05 at 3. Sending a
    prompt that needs the capable model to a smaller one is the expensive
    mistake, so that is the one the setting trades against cost. Otherwise the
    cheaper tier with the largest pooled probability wins. The answer is the
    most probable level of the chosen tier.
    """
    by_level = dict(zip(CLASSES, probabilities, strict=True))
    pooled: dict[str, float] = {}
    for level, p in by_level.items():
        pooled[tier_of[level]] = pooled.get(tier_of[level], 0.0) + p
    top = tier_of[Complexity.COMPLEX]
    if pooled[top] >= premium_threshold(quality_bias) or len(pooled) == 1:
        tier = top
    else:
        tier = max((t for t in pooled if t != top), key=lambda t: pooled[t])
    return max(
        (lvl for lvl in CLASSES if tier_of[lvl] == tier), key=by_level.__getitem__
    )


def conversation_floor(shape: ConversationShape) -> Complexity:
    """The least complexity the conversation's shape alone implies.

    The training prompts are text conversations: none offers tools, asks for a
    JSON schema or carries images, so the model cannot have learnt what these
    cost. A rule stands in for them: tools to choose and call, a schema to
    satisfy, images to read, or tool results to use make a request at least
    SIMPLE, so it never lands on the smallest tier, which handles these worst.
    (A long text conversation is no longer a floor: the model weighs earlier
    turns itself, and "thanks, that fixed it" after ten turns is still trivial.)
    """
    if shape.tools or shape.tool_exchanges or shape.json_schema or shape.images:
        return Complexity.SIMPLE
    return Complexity.TRIVIAL
