"""Keyword measurements of a prompt: the lexicons of the first complexity classifier.

They were written for the earlier 240-prompt benchmark (and partly with its test
split in view). The router's current model no longer reads them (the hashed words
of :mod:`services.router.complexity` learn the same from data, for a fraction of
the time); they stay for the previous classifiers that
``bench/router_baseline/`` runs beside it on the blind sets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from services.core.tokens import count_tokens

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


def extract_features(prompt: str, prompt_tokens: int | None = None) -> PromptFeatures:
    """Measure ``prompt``: linear in its length, no model calls.

    ``prompt_tokens``, the exact tokens of the whole prompt when the caller has
    counted them, saves counting again when nothing is quoted.
    """
    quoted = _QUOTED.findall(prompt)
    instruction = _QUOTED.sub('""', prompt) if quoted else prompt
    return PromptFeatures(
        tokens=(
            prompt_tokens
            if prompt_tokens is not None and not quoted
            else count_tokens(instruction)
        ),
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


KEYWORD_NAMES: tuple[str, ...] = tuple(extract_features("x").vector())
"""The keyword measurements, in the order :func:`keyword_vector` gives them."""


def keyword_vector(prompt: str, prompt_tokens: int | None = None) -> list[float]:
    """The keyword measurements of ``prompt``, in ``KEYWORD_NAMES`` order."""
    return list(extract_features(prompt, prompt_tokens).vector().values())
