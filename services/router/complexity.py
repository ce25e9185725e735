"""Prompt complexity: a calibrated probability for trivial, simple, moderate, complex.

The classifier is all-MiniLM-L6-v2 fine-tuned on labelled prompts
(``bench/router_finetune.py``): it reads the last user text (its start and its
end), the first words of the user message before it
(:mod:`services.router.encoder_input`) and cheap measurements of the request
(:data:`FEATURE_NAMES`: exact o200k tokens, lines, paragraphs, list items,
questions, code blocks and punctuation, digits, pasted material, non-ASCII and CJK
letters, tokens per word, the first and last lines and how much of the prompt its
largest paragraph holds, and the conversation's shape: earlier user turns,
messages, tools, a JSON schema, images, tool exchanges, a reasoning effort), and
gives one logit per boundary between adjacent levels (at least simple? at least
moderate? complex?). It runs as an int8 ONNX model in the router
(:mod:`services.router.adapters.encoder`).

Each logit goes through its own calibration (a slope and an intercept fitted on
logits for writers the encoder never saw), giving P(level ≥ k); the three are made
monotone and differenced into a probability per level that sums to one
(:meth:`ComplexityModel.probabilities`). :func:`choose_complexity` turns them into
a decision with one setting, ``quality_bias``, that trades cost for quality. The
calibration ships in ``complexity_model.json`` (format :data:`MODEL_FORMAT`) beside
the encoder it names; *text-only heads* over the measurements and the prompt's
words hashed into :data:`HASH_BUCKETS` buckets (fitted by ``bench/router_train.py``)
classify when the encoder cannot run.

Nothing here downloads anything or calls a model.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.core.tokens import count_tokens
from services.router.enums import Complexity

if TYPE_CHECKING:
    from services.router.domain import ConversationShape

MODEL_RESOURCE = "complexity_model.json"
MODEL_FORMAT = "tollgate-complexity/4"

CLASSES: tuple[Complexity, ...] = (
    Complexity.TRIVIAL,
    Complexity.SIMPLE,
    Complexity.MODERATE,
    Complexity.COMPLEX,
)
"""The classes in increasing order of difficulty."""

BOUNDARIES = len(CLASSES) - 1
"""One head per boundary: P(≥ simple), P(≥ moderate), P(complex)."""

HASH_BUCKETS = 1024
"""Buckets of the hashed words (crc32 of each lower-cased word, modulo this)."""

FloatArray = npt.NDArray[np.float64]

# Measurements read at most this much of a prompt: the training prompts are all
# shorter, and a pasted 100 kB log must not cost milliseconds per request.
_WINDOW = 6000
_LIST_ITEM = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+")
_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_QUOTED = re.compile(r"\"[^\"]{20,}\"|“[^”]{20,}”|«[^»]{20,}»")
_CODE_PUNCTUATION = re.compile(r"[{}();=<>\[\]_/\\|$#]")
_DIGIT = re.compile(r"\d")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_CJK = re.compile(r"[\u3040-\u9fff\uac00-\ud7af]")
_SPACE = re.compile(r"\s")
_PARAGRAPH = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\w+")


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
    "log_paragraphs",
    "list_items",
    "questions",
    "code_block",
    "code_punctuation",
    "digits",
    "pasted_fraction",
    "non_ascii",
    "cjk",
    "tokens_per_word",
    "log_first_line_words",
    "log_last_line_words",
    "largest_paragraph_share",
    "log_shortest_paragraph_words",
    "log_earlier_user_turns",
    "log_messages",
    "tools",
    "json_schema",
    "images",
    "tool_exchanges",
    "reasoning",
)
"""The measurements, in the order of the encoder's ``measurements`` input and of
the text-only heads' inputs (before the hashed words)."""


def measure(
    prompt: str, conversation: ConversationFeatures, tokens: int | None = None
) -> FloatArray:
    """The measurements of ``prompt`` and its conversation, in ``FEATURE_NAMES`` order.

    Reads at most the first 6,000 characters; shares are of that window.
    ``tokens`` is the prompt's exact o200k_base count when the caller has it (the
    gateway sends it): then nothing is counted here, and the router never loads
    the vocabulary. Without it the window is counted and the count scaled up to
    the whole prompt, the same number for any prompt of at most 6,000 characters
    (every training prompt is shorter).
    """
    window = prompt[:_WINDOW]
    if tokens is None:
        tokens = count_tokens(window)
        if len(prompt) > _WINDOW:
            tokens = tokens * len(prompt) // _WINDOW
    chars = max(1, len(window))
    words = window.split()
    word_count = max(1, len(words))
    lines = [line for line in window.splitlines() if line.strip()]
    paragraphs = [len(p.split()) for p in _PARAGRAPH.split(window) if p.strip()]
    pasted = sum(len(m) for m in _CODE_FENCE.findall(window))
    pasted += sum(len(m) for m in _QUOTED.findall(_CODE_FENCE.sub("", window)))
    non_space = max(1, chars - len(_SPACE.findall(window)))
    return np.array(
        [
            math.log2(1 + tokens),
            math.log2(1 + len(lines)),
            math.log2(1 + len(paragraphs)),
            min(len(_LIST_ITEM.findall(window)), 8),
            min(window.count("?"), 4),
            float("```" in window),
            min(len(_CODE_PUNCTUATION.findall(window)) / non_space, 0.5),
            min(len(_DIGIT.findall(window)) / non_space, 0.5),
            min(pasted / chars, 1.0),
            len(_NON_ASCII.findall(window)) / non_space,
            len(_CJK.findall(window)) / non_space,
            min(tokens / word_count, 4.0) if len(prompt) <= _WINDOW else 1.0,
            math.log2(1 + len(lines[0].split())) if lines else 0.0,
            math.log2(1 + len(lines[-1].split())) if lines else 0.0,
            max(paragraphs, default=0) / word_count,
            math.log2(1 + min(paragraphs, default=0)),
            math.log2(1 + conversation.earlier_user_turns),
            math.log2(max(1, conversation.messages)),
            math.log2(1 + conversation.tools),
            float(conversation.json_schema),
            math.log2(1 + conversation.images),
            math.log2(1 + conversation.tool_exchanges),
            float(conversation.reasoning),
        ],
        dtype=np.float64,
    )


def word_buckets(prompt: str, buckets: int = HASH_BUCKETS) -> FloatArray:
    """1.0 in the bucket of each distinct lower-cased word of the prompt's window.

    crc32 rather than ``hash()``: Python salts ``hash()`` per process, and the
    buckets must be the ones the model was fitted with.
    """
    result = np.zeros(buckets, dtype=np.float64)
    words = set(_WORD.findall(prompt[:_WINDOW].lower()))
    result[[zlib.crc32(word.encode()) % buckets for word in words]] = 1.0
    return result


@dataclass(frozen=True, slots=True)
class HiddenLayer:
    """Rectified units over the standardised inputs, added to the heads' logits.

    ``max(0, u @ weights + bias) @ output`` with ``u = (x - mean) * scale``.
    """

    weights: FloatArray
    """Inputs by hidden units."""
    bias: FloatArray
    output: FloatArray
    """Hidden units by boundaries."""

    def to_dict(self) -> dict[str, object]:
        """The layer as JSON-ready lists (six significant digits)."""
        return {
            "weights": [_rounded(row) for row in self.weights],
            "bias": _rounded(self.bias),
            "output": [_rounded(row) for row in self.output],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], inputs: int) -> HiddenLayer:
        """A layer from its JSON form.

        Raises:
            ValueError: the arrays do not fit ``inputs`` inputs and 3 boundaries.
        """
        bias = np.asarray(data["bias"], dtype=np.float64)
        units = bias.shape[0] if bias.ndim == 1 and bias.size else 1
        return cls(
            **_arrays(
                data,
                {
                    "weights": (inputs, units),
                    "bias": (units,),
                    "output": (units, BOUNDARIES),
                },
                prefix="hidden.",
            )
        )


@dataclass(frozen=True, slots=True)
class BoundaryHeads:
    """Three calibrated heads over one input vector.

    Head ``k`` gives ``P(level ≥ CLASSES[k + 1]) = sigmoid(slope[k] * z[k] +
    intercept[k])`` with ``z = u @ weights + bias`` (plus the hidden layer's
    output, when there is one) and ``u = (x - mean) * scale``.
    """

    mean: FloatArray
    scale: FloatArray
    """One over the standard deviation of each input on the training set."""
    weights: FloatArray
    """Inputs by boundaries."""
    bias: FloatArray
    slope: FloatArray
    """Calibration of each head's logit, fitted out of fold."""
    intercept: FloatArray
    hidden: HiddenLayer | None = None

    def logits(self, inputs: FloatArray) -> FloatArray:
        """The uncalibrated logit of each boundary (the last axis of ``inputs``)."""
        standardised = (inputs - self.mean) * self.scale
        result: FloatArray = standardised @ self.weights + self.bias
        if self.hidden is not None:
            units = np.maximum(standardised @ self.hidden.weights + self.hidden.bias, 0)
            result = result + units @ self.hidden.output
        return result

    def probabilities(self, inputs: FloatArray) -> FloatArray:
        """The probability of each level, in ``CLASSES`` order; sums to one."""
        logits = self.logits(inputs)
        calibrated = np.clip(self.slope * logits + self.intercept, -30.0, 30.0)
        return _levels(1.0 / (1.0 + np.exp(-calibrated)))

    def to_dict(self) -> dict[str, object]:
        """The heads as JSON-ready lists (six significant digits)."""
        data: dict[str, object] = {
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "weights": [_rounded(row) for row in self.weights],
            "bias": _rounded(self.bias),
            "slope": _rounded(self.slope),
            "intercept": _rounded(self.intercept),
        }
        if self.hidden is not None:
            data["hidden"] = self.hidden.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object], inputs: int) -> BoundaryHeads:
        """Heads from their JSON form.

        Raises:
            ValueError: the arrays do not have ``inputs`` rows and 3 boundaries,
                or a calibration slope is not positive.
        """
        hidden = data.get("hidden")
        heads = cls(
            **_arrays(
                data,
                {
                    "mean": (inputs,),
                    "scale": (inputs,),
                    "weights": (inputs, BOUNDARIES),
                    "bias": (BOUNDARIES,),
                    "slope": (BOUNDARIES,),
                    "intercept": (BOUNDARIES,),
                },
            ),
            hidden=(
                None
                if hidden is None
                else HiddenLayer.from_dict(_mapping(hidden, "hidden"), inputs)
            ),
        )
        if not (heads.slope > 0).all():
            raise ValueError("calibration slopes must be positive")
        return heads


def _arrays(
    data: Mapping[str, object], shapes: Mapping[str, tuple[int, ...]], prefix: str = ""
) -> dict[str, FloatArray]:
    """The named arrays of ``data``, each checked against its shape.

    Raises:
        ValueError: an array has another shape (named with ``prefix``).
    """
    arrays = {}
    for name, shape in shapes.items():
        array = np.asarray(data[name], dtype=np.float64)
        if array.shape != shape:
            raise ValueError(
                f"{prefix}{name} has shape {array.shape}, expected {shape}"
            )
        arrays[name] = array
    return arrays


def _mapping(value: object, name: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object")
    return value


def _rounded(values: FloatArray) -> list[float]:
    return [float(f"{float(v):.6g}") for v in values]


@dataclass(frozen=True, slots=True)
class EncoderHead:
    """The fine-tuned encoder's file and the calibration of its three logits.

    The encoder (:mod:`services.router.adapters.encoder`) gives one logit per
    boundary; ``P(level ≥ CLASSES[k + 1]) = sigmoid(slope[k] * logit[k] +
    intercept[k])``, the slope and intercept fitted on logits of writers the
    encoder never saw.
    """

    path: Path
    """The ONNX file (the model file names it relative to its own directory)."""
    sha256: str
    slope: FloatArray
    intercept: FloatArray

    def probabilities(self, logits: FloatArray) -> FloatArray:
        """The probability of each level, in ``CLASSES`` order; sums to one."""
        calibrated = np.clip(self.slope * logits + self.intercept, -30.0, 30.0)
        return _levels(1.0 / (1.0 + np.exp(-calibrated)))


def _levels(at_least: FloatArray) -> FloatArray:
    """Per-level probabilities from P(≥ simple), P(≥ moderate), P(complex)."""
    monotone = np.minimum.accumulate(at_least)
    upper = np.concatenate([[1.0], monotone])
    lower = np.concatenate([monotone, [0.0]])
    result: FloatArray = upper - lower
    return result


@dataclass(frozen=True, slots=True)
class ComplexityModel:
    """The fine-tuned encoder's calibration, and text-only heads without it."""

    version: str
    """A name for logs and shadow comparisons (the file's ``version``)."""
    encoder: EncoderHead
    text_only: BoundaryHeads
    """Over the measurements and hashed words alone: the fallback when the encoder
    cannot run (not installed, a file not the pinned one, turned off)."""
    default_quality_bias: float
    """The bias the fit was tuned for (see :func:`choose_complexity`)."""
    hash_buckets: int = HASH_BUCKETS

    def probabilities(
        self,
        prompt: str,
        conversation: ConversationFeatures,
        encoder_logits: FloatArray | None,
        tokens: int | None = None,
    ) -> FloatArray:
        """P(trivial), P(simple), P(moderate), P(complex) of one request.

        ``encoder_logits``: the encoder's three logits for this request; None uses
        the text-only heads. ``tokens``: the prompt's exact o200k_base tokens, when
        the caller counted them (see :func:`measure`).
        """
        if encoder_logits is not None:
            return self.encoder.probabilities(encoder_logits)
        text = np.concatenate(
            [
                measure(prompt, conversation, tokens),
                word_buckets(prompt, self.hash_buckets),
            ]
        )
        return self.text_only.probabilities(text)

    def to_json(self) -> str:
        """The model file's text (the encoder named by its file name)."""
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "version": self.version,
                "classes": [c.value for c in CLASSES],
                "features": list(FEATURE_NAMES),
                "hash_buckets": self.hash_buckets,
                "default_quality_bias": self.default_quality_bias,
                "encoder": {
                    "file": self.encoder.path.name,
                    "sha256": self.encoder.sha256,
                    "slope": _rounded(self.encoder.slope),
                    "intercept": _rounded(self.encoder.intercept),
                },
                "text_only": self.text_only.to_dict(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, directory: Path) -> ComplexityModel:
        """Parse and check a model file; its encoder file is in ``directory``.

        Raises:
            ValueError: the file is of another format, weighs other features, or
                its arrays have the wrong shapes.
        """
        data = json.loads(text)
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(
                f"not a {MODEL_FORMAT} model file (format {data.get('format')!r})"
            )
        if tuple(data["features"]) != FEATURE_NAMES:
            raise ValueError("the model weighs other features than this build")
        if tuple(data["classes"]) != tuple(c.value for c in CLASSES):
            raise ValueError("the model has other classes than this build")
        buckets = int(data["hash_buckets"])
        encoder = _mapping(data["encoder"], "encoder")
        calibration = _arrays(
            encoder,
            {"slope": (BOUNDARIES,), "intercept": (BOUNDARIES,)},
            prefix="encoder.",
        )
        if not (calibration["slope"] > 0).all():
            raise ValueError("calibration slopes must be positive")
        return cls(
            version=str(data["version"]),
            encoder=EncoderHead(
                path=directory / Path(str(encoder["file"])).name,
                sha256=str(encoder["sha256"]),
                **calibration,
            ),
            text_only=BoundaryHeads.from_dict(
                data["text_only"], len(FEATURE_NAMES) + buckets
            ),
            default_quality_bias=float(data["default_quality_bias"]),
            hash_buckets=buckets,
        )


def load_complexity_model(path: Path | None = None) -> ComplexityModel:
    """The model in ``path``, or the one that ships with the router.

    Raises:
        OSError: ``path`` cannot be read.
        ValueError: the file is not a valid model
            (see :meth:`ComplexityModel.from_json`).
    """
    if path is None:
        shipped = resources.files("services.router") / MODEL_RESOURCE
        path = Path(str(shipped))
    return ComplexityModel.from_json(path.read_text("utf-8"), path.parent)


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
