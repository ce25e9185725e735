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
the encoder it names.

The encoder's run costs milliseconds, so a *student* answers first
(:class:`StudentHead`): a linear classifier over the prompt's hashed words and the
measurements, distilled from the encoder (``bench/router_student.py``). When it is
sure, its answer stands and the encoder does not run; when it is not, or the
encoder cannot run, the encoder's answer stands, or the student's.

Nothing here downloads anything or calls a model.
"""

from __future__ import annotations

import hashlib
import itertools
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
MODEL_FORMAT = "tollgate-complexity/5"

CLASSES: tuple[Complexity, ...] = (
    Complexity.TRIVIAL,
    Complexity.SIMPLE,
    Complexity.MODERATE,
    Complexity.COMPLEX,
)
"""The classes in increasing order of difficulty."""

BOUNDARIES = len(CLASSES) - 1
"""One head per boundary: P(≥ simple), P(≥ moderate), P(complex)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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
the student's measurements (after its hashed words)."""


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


STUDENT_BUCKETS = 1 << 18
"""Buckets of the student's hashed features (crc32 of each, modulo this)."""


def student_buckets(prompt: str, buckets: int = STUDENT_BUCKETS) -> IntArray:
    """The distinct buckets of the prompt window's hashed features, sorted.

    The features: each lower-cased word, each pair of adjacent words, the first
    word and the first two words ("what is" opens other prompts than "prove
    that"). crc32 rather than ``hash()``: Python salts ``hash()`` per process,
    and the buckets must be the ones the student was fitted with.
    """
    words = _WORD.findall(prompt[:_WINDOW].lower())
    keys = {f"w:{word}" for word in words}
    keys.update(f"b:{a} {b}" for a, b in itertools.pairwise(words))
    keys.add("o1:" + " ".join(words[:1]))
    keys.add("o:" + " ".join(words[:2]))
    hashed = np.fromiter(
        (zlib.crc32(key.encode()) % buckets for key in keys), np.int64, len(keys)
    )
    result: IntArray = np.unique(hashed)
    return result


@dataclass(frozen=True, slots=True)
class StudentHead:
    """A linear classifier distilled from the encoder, and when it may answer alone.

    ``softmax(words[b].sum() / sqrt(len(b)) + u @ measurement_weights + bias)``
    over the buckets ``b`` of :func:`student_buckets` and the standardised
    measurements ``u = (x - mean) * scale``: about 0.1 ms, no model run. Fitted
    by ``bench/router_student.py`` on the encoder's own probabilities for every
    prompt of the training files and the cache's pair sets, so it learns where
    the encoder puts a prompt, not a second opinion.

    It answers alone when it is sure (:meth:`settles`); otherwise the encoder
    runs. It also answers whenever the encoder cannot run.
    """

    path: Path
    """The ``words`` file, a float16 ``.npy`` of buckets by levels."""
    sha256: str
    words: npt.NDArray[np.float16]
    mean: FloatArray
    scale: FloatArray
    """One over the standard deviation of each measurement on the training set."""
    measurement_weights: FloatArray
    """Measurements by levels."""
    bias: FloatArray
    confidence: float
    """The student answers alone when its chosen tier's probability is at least
    this (1.0 or more: never)..."""
    premium_ceiling: float
    """...and, when that tier is not the premium one, the premium tier's is at
    most this: an under-routed complex prompt is the expensive mistake."""

    def probabilities(self, prompt: str, measurements: FloatArray) -> FloatArray:
        """P(trivial), P(simple), P(moderate), P(complex); sums to one."""
        return self.probabilities_of(
            student_buckets(prompt, self.words.shape[0]), measurements
        )

    def probabilities_of(
        self, buckets: IntArray, measurements: FloatArray
    ) -> FloatArray:
        """:meth:`probabilities` from the prompt's :func:`student_buckets`."""
        logits = self.words[buckets].sum(axis=0, dtype=np.float64)
        logits /= math.sqrt(len(buckets))
        logits += (measurements - self.mean) * self.scale @ self.measurement_weights
        logits += self.bias
        exp = np.exp(logits - logits.max())
        result: FloatArray = exp / exp.sum()
        return result

    def settles(
        self,
        probabilities: Sequence[float],
        level: Complexity,
        tier_of: Mapping[Complexity, str],
        quality_bias: float,
    ) -> bool:
        """True when the student's ``level`` stands without the encoder.

        Its tier's probability must reach :attr:`confidence`; below premium, the
        premium tier's may not pass :attr:`premium_ceiling`, and a bias that
        wants premium at a lower probability than that ceiling (above about 1.7)
        is the encoder's to judge: the student was fitted to be sure, not to
        weigh small chances of needing premium.
        """
        pooled: dict[str, float] = {}
        for each, p in zip(CLASSES, probabilities, strict=True):
            pooled[tier_of[each]] = pooled.get(tier_of[each], 0.0) + float(p)
        tier = tier_of[level]
        premium = tier_of[Complexity.COMPLEX]
        if self.confidence >= 1.0 or pooled[tier] < self.confidence:
            return False
        return tier == premium or (
            pooled[premium] <= self.premium_ceiling
            and premium_threshold(quality_bias) >= self.premium_ceiling
        )

    def to_dict(self) -> dict[str, object]:
        """The head as JSON-ready values (the words named by their file)."""
        return {
            "file": self.path.name,
            "sha256": self.sha256,
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "measurement_weights": [_rounded(r) for r in self.measurement_weights],
            "bias": _rounded(self.bias),
            "confidence": self.confidence,
            "premium_ceiling": self.premium_ceiling,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], directory: Path) -> StudentHead:
        """The head of a model file; its words file is read from ``directory``.

        Raises:
            OSError: the words file cannot be read.
            ValueError: an array has the wrong shape, or the words file is not
                the one the model names.
        """
        path = directory / Path(str(data["file"])).name
        sha256 = str(data["sha256"])
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise ValueError(f"{path.name} is not the file the model names")
        words = np.load(path, mmap_mode="r")
        if (
            words.dtype != np.float16
            or words.ndim != 2
            or words.shape[1] != len(CLASSES)
        ):
            raise ValueError(f"{path.name} is not a float16 array of buckets by levels")
        features = len(FEATURE_NAMES)
        return cls(
            path=path,
            sha256=sha256,
            words=words,
            **_arrays(
                data,
                {
                    "mean": (features,),
                    "scale": (features,),
                    "measurement_weights": (features, len(CLASSES)),
                    "bias": (len(CLASSES),),
                },
                prefix="student.",
            ),
            confidence=float(str(data["confidence"])),
            premium_ceiling=float(str(data["premium_ceiling"])),
        )


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
    """The fine-tuned encoder's calibration, and the student that answers first."""

    version: str
    """A name for logs and shadow comparisons (the file's ``version``)."""
    encoder: EncoderHead
    student: StudentHead
    default_quality_bias: float
    """The bias the fit was tuned for (see :func:`choose_complexity`)."""

    def probabilities(
        self,
        prompt: str,
        conversation: ConversationFeatures,
        encoder_logits: FloatArray | None,
        tokens: int | None = None,
    ) -> FloatArray:
        """P(trivial), P(simple), P(moderate), P(complex) of one request.

        ``encoder_logits``: the encoder's three logits for this request; None
        asks the student. ``tokens``: the prompt's exact o200k_base tokens, when
        the caller counted them (see :func:`measure`).
        """
        if encoder_logits is not None:
            return self.encoder.probabilities(encoder_logits)
        return self.student.probabilities(prompt, measure(prompt, conversation, tokens))

    def to_json(self) -> str:
        """The model file's text (the encoder and the student's words by file name)."""
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "version": self.version,
                "classes": [c.value for c in CLASSES],
                "features": list(FEATURE_NAMES),
                "default_quality_bias": self.default_quality_bias,
                "encoder": {
                    "file": self.encoder.path.name,
                    "sha256": self.encoder.sha256,
                    "slope": _rounded(self.encoder.slope),
                    "intercept": _rounded(self.encoder.intercept),
                },
                "student": self.student.to_dict(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, directory: Path) -> ComplexityModel:
        """Parse and check a model file; the files it names are in ``directory``.

        Raises:
            OSError: the student's words file cannot be read.
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
            student=StudentHead.from_dict(
                _mapping(data["student"], "student"), directory
            ),
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
