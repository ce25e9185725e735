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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from services.core.tokens import count_tokens
from services.router.enums import Complexity

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

# Verbs and phrases that ask for reasoning over several steps or trade-offs.
_ANALYSIS = re.compile(
    r"\b(analy[sz]e|analysis|evaluate|assess|critique|design|architect\w*|"
    r"trade-?offs?|prove|proof|derive|diagnose|debug|root cause|refactor|"
    r"implement|optimi[sz]e|strategy|justify|recommend\w*|estimate|"
    r"threat model|complexity|guarantee|scal(e|ing|able)|migrat\w+|"
    r"fault-tolerant|concurren\w+|race condition|deadlock|consisten\w+|"
    r"why does|why is|what is going wrong|failure modes?)\b",
    re.IGNORECASE,
)
# Verbs that ask for a structured answer of some length.
_STRUCTURE = re.compile(
    r"\b(explain|summari[sz]e|summary|compare|describe|outline|list|steps?|"
    r"step-by-step|guide|plan|checklist|agenda|itinerary|recipe|example|"
    r"pros and cons|differences?|organi[sz]e|tests?|"
    r"draft|create|action items|bullet points?|paragraphs?|"
    r"list (?:\d+|the|some|all|of)|how does|how do \w+ work|what are the)\b",
    re.IGNORECASE,
)
# Vocabulary of specialist depth: systems, security, statistics, finance, law.
_EXPERT = re.compile(
    r"\b(distributed|consensus|cluster|replicat\w+|partition\w*|throughput|"
    r"latency|p9\d|bottleneck|concurren\w+|thread-safe|multi-region|"
    r"exactly-once|idempoten\w+|encrypt\w*|security|exploit\w*|vulnerab\w+|"
    r"compliance|regulat\w+|gdpr|ccpa|legal|ethical|statistic\w*|"
    r"sample size|significan\w+|assumptions?|sensitiv\w+|roi|lifetime value|"
    r"churn|cohort|financial|speculative|infinitely|irrational|theorem|"
    r"undefined behaviou?r|memory leak|leaks?|garbage|heap|deadlocks?)\b",
    re.IGNORECASE,
)
# Classification of a given text: a label, however long the text.
_LABEL_TASK = re.compile(
    r"\b(classify|label|tag|sentiment|is this (?:email |message |review )?spam|"
    r"positive or negative|which language|one category)\b",
    re.IGNORECASE,
)
# Quoted material the prompt works on (a passage to summarise or rewrite).
_QUOTED = re.compile(r"\"[^\"]{20,}\"|“[^”]{20,}”")
# Short tasks that need little reasoning: rewording, tiny creative pieces.
_LIGHT_TASK = re.compile(
    r"\b(haiku|limerick|tagline|slogan|tweet|title|name for|synonyms?|"
    r"paraphrase|rephrase|fix the grammar|correct the spelling|shorten|"
    r"make this|turn this into|polite|thank-you|birthday|quote|one-line|"
    r"one sentence|briefly|in simple terms|keep it short|short)\b",
    re.IGNORECASE,
)
# Questions that look something up.
_LOOKUP = re.compile(
    r"^\s*(what(?:'s| is| are| does| year| time| color| language)|who(?:'s| is| was|"
    r" wrote| painted| discovered| invented)?|when(?: was| did)?|where(?: is)?|"
    r"which|define|how many|how much|is|are|does|name|spell|translate|round|"
    r"convert|classify|label|tag|give me a synonym)\b",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks?|thank you|ok|okay|good (morning|evening|night))\b",
    re.IGNORECASE,
)
# Source code or machine output pasted into the prompt.
_CODE = re.compile(
    r"(```|\bdef \w+\(|\bclass \w+|\breturn\b|=>|\{|\}|;\s|\bimport \w+|"
    r"Traceback|Exception|error:|\w+\(\w*\)|\bSELECT\b|\[\[|\w+\.\w+\()",
)
# A request to write a program, query or configuration.
_CODE_REQUEST = re.compile(
    r"\b(code|function|script|program|query|class|module|service|algorithm|"
    r"regex|regular expression|sql|python|java|javascript|typescript|go|rust|"
    r"c\+\+|bash|terraform|asyncio|api)\b",
    re.IGNORECASE,
)
_MATH = re.compile(
    r"(\bprove\b|\bderive\b|\bsolve\b|\bsqrt\b|\bintegral\b|\bconverge\w*|"
    r"\bprobabilit\w+|\bexpected (number|value)\b|\bregression\b|"
    r"\d+\s*[-+*/^=]\s*\d+|\bO\(|\birrational\b|\bequation\b)",
    re.IGNORECASE,
)
# Stated constraints and scale: quantities with units, "with", "including", ...
_CONSTRAINT = re.compile(
    r"(\b\d[\d,.]*\s*(k|m|tb|gb|mb|ms|%|x|/day|/s|per second|requests?|users?|"
    r"transactions?|engineers?)\b|\$\d|\bwith(out)?\b|\bincluding\b|\bcovering\b|"
    r"\bconsidering\b|\bgiven\b|\bmust\b|\bwhile\b|\bwithout\b|\bhandle\b)",
    re.IGNORECASE,
)
# Joints between demands: "..., and explain", "then", ";", ":".
_CLAUSE = re.compile(r",\s*(?:and|then)\b|\bthen\b|;|:\s")
_LIST_ITEM = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


@dataclass(frozen=True, slots=True)
class PromptFeatures:
    """Measurements of one prompt, the inputs of the complexity score."""

    tokens: int
    """Exact o200k_base tokens of the instruction (outside quoted material)."""
    quoted_tokens: int
    """Exact o200k_base tokens of quoted material."""
    sentences: int
    questions: int
    list_items: int
    analysis_terms: int
    structure_terms: int
    light_task_terms: int
    expert_terms: int
    label_task: bool
    clauses: int
    lookup: bool
    small_talk: bool
    code_pasted: int
    code_requested: bool
    math_terms: int
    constraints: int

    def vector(self) -> dict[str, float]:
        """The named numeric features the linear score weighs."""
        short = self.tokens <= 16
        return {
            "log_tokens": math.log2(1 + self.tokens),
            "log_quoted_tokens": math.log2(1 + self.quoted_tokens),
            "parts": float(
                min(self.questions + self.list_items + self.sentences - 1, 8)
            ),
            "clauses": float(min(self.clauses, 6)),
            "expert": float(min(self.expert_terms, 4)),
            "label_task": float(self.label_task),
            "analysis": float(min(self.analysis_terms, 4)),
            "structure": float(min(self.structure_terms, 4)),
            "light_task": float(min(self.light_task_terms, 2)),
            "short_lookup": float(self.lookup and short),
            "small_talk": float(self.small_talk and short),
            "code_pasted": float(min(self.code_pasted, 4)),
            "code_requested": float(self.code_requested),
            "math": float(min(self.math_terms, 3)),
            "constraints": float(min(self.constraints, 6)),
        }


def extract_features(prompt: str) -> PromptFeatures:
    """Measure ``prompt``: linear in its length, no model calls."""
    quoted = _QUOTED.findall(prompt)
    instruction = _QUOTED.sub('""', prompt)
    return PromptFeatures(
        tokens=count_tokens(instruction),
        quoted_tokens=sum(count_tokens(q) for q in quoted),
        sentences=max(1, len(_SENTENCE_END.findall(instruction))),
        questions=prompt.count("?"),
        list_items=len(_LIST_ITEM.findall(prompt)),
        analysis_terms=len(_ANALYSIS.findall(prompt)),
        structure_terms=len(_STRUCTURE.findall(prompt)),
        light_task_terms=len(_LIGHT_TASK.findall(prompt)),
        expert_terms=len(_EXPERT.findall(prompt)),
        label_task=_LABEL_TASK.search(instruction) is not None,
        clauses=len(_CLAUSE.findall(instruction)),
        lookup=_LOOKUP.search(prompt) is not None,
        small_talk=_SMALL_TALK.search(prompt) is not None,
        code_pasted=len(_CODE.findall(prompt)),
        code_requested=_CODE_REQUEST.search(prompt) is not None,
        math_terms=len(_MATH.findall(prompt)),
        constraints=len(_CONSTRAINT.findall(prompt)),
    )


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
