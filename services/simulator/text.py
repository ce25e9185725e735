"""Deterministic answers and exact token accounting.

An answer depends only on the model, the instructions and the input messages:
the same request always gets the same text, a different one a different text.
The ``max_output_tokens`` cap is deliberately *not* part of the seed, so a
capped answer is a token-exact prefix of the uncapped one, as with a real model
that runs out of budget.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.core.images import image_url_tokens
from services.core.tokens import count_tokens, count_tokens_batch, truncate_tokens

PRIMING_TOKENS = 3
"""Tokens of every request: the priming of the reply (``<|im_start|>assistant``)."""

MESSAGE_TOKENS = 3
"""Tokens per input message besides its role and content (the chat framing)."""

TOOL_CALL_TOKENS = 3
"""Tokens per tool call on an assistant turn besides its name and arguments."""

TOOLS_TOKENS = 12
"""Tokens of the tool block, when a request gives any tools."""

TOOL_TOKENS = 7
"""Tokens per tool besides its name, description and parameters."""

JSON_SCHEMA_TOKENS = 8
"""Tokens of a ``json_schema`` response format besides its name and schema."""

JSON_OBJECT_TOKENS = 3
"""Tokens of a ``json_object`` response format."""

REASONING_TOKENS: Mapping[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 64,
    "medium": 192,
    "high": 512,
}
"""Reasoning tokens reported per ``reasoning.effort`` / ``reasoning_effort``."""

MIN_NATURAL_TOKENS = 8
"""Shortest natural answer, in tokens (unless the configured maximum is lower)."""

_OPENER_WORDS = 5

# A fixed vocabulary: changing it changes every simulated answer, so treat it as
# part of the simulator's contract with recorded test expectations.
_WORDS: tuple[str, ...] = (
    "gateway", "token", "stream", "cache", "budget", "route", "signal", "vector",
    "latency", "request", "answer", "model", "window", "context", "quota", "ledger",
    "breaker", "policy", "shard", "replica", "queue", "batch", "delta", "prompt",
    "metric", "trace", "header", "payload", "channel", "tenant", "limit", "window",
    "simple", "quick", "steady", "careful", "bright", "quiet", "narrow", "broad",
    "measures", "returns", "follows", "balances", "records", "checks", "routes",
    "carries", "holds", "keeps", "finds", "shows", "the", "a", "every", "each",
    "with", "from", "into", "over", "under", "before", "after", "because",
)  # fmt: skip

_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_DELTA_RE = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class Image:
    """An image part of a message: an https or ``data:`` URL and its detail."""

    url: str
    detail: str = "auto"

    @property
    def tokens(self) -> int:
        """Input tokens by OpenAI's tile formula (:mod:`services.core.images`)."""
        return image_url_tokens(self.url, self.detail)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call: made by the model, or on an assistant turn of the input."""

    call_id: str
    name: str
    arguments: str
    """The arguments as a JSON text."""


@dataclass(frozen=True, slots=True)
class Message:
    """One input message, reduced to what the simulator reads.

    A tool result (a ``function_call_output`` item or a ``tool`` message) is a
    message with role ``tool`` whose text is the output and whose ``call_id``
    names the call it answers.
    """

    role: str
    text: str
    """The text parts joined by newlines."""
    parts: tuple[str, ...] | None = None
    """The text parts when the content was an array (None: ``text`` is the one part)."""
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    call_id: str | None = None

    @property
    def texts(self) -> tuple[str, ...]:
        """The text parts, each counted on its own."""
        return (self.text,) if self.parts is None else self.parts


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str = ""
    parameters: Mapping[str, object] | None = None
    """The JSON Schema of the arguments (None: no parameters)."""
    strict: bool = False


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """The requested answer format: ``text``, ``json_schema`` or ``json_object``."""

    kind: str
    name: str = ""
    schema: Mapping[str, object] | None = None
    strict: bool = False
    description: str | None = None


TEXT_FORMAT = OutputFormat("text")


@dataclass(frozen=True, slots=True)
class Prompt:
    """Everything in a request that shapes the answer and the input tokens."""

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    """``auto``, ``none``, ``required``, or ``function`` (see ``forced_tool``)."""
    forced_tool: str | None = None
    """The function named by ``tool_choice``, if it names one."""
    parallel_tool_calls: bool = True
    output_format: OutputFormat = field(default=TEXT_FORMAT)
    reasoning_effort: str | None = None

    @property
    def reasoning_tokens(self) -> int:
        """The reasoning tokens the answer reports (0 without an effort)."""
        effort = self.reasoning_effort
        return 0 if effort is None else REASONING_TOKENS.get(effort, 0)


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with its exact o200k_base token count."""

    text: str
    output_tokens: int
    """Every output token: the text (or tool calls) and the reasoning."""
    truncated: bool
    """Whether ``max_output_tokens`` cut the natural answer short."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The function calls the model makes instead of a text answer."""
    reasoning_tokens: int = 0


def canonical_json(value: object) -> str:
    """The canonical JSON text of ``value`` (sorted keys, no spaces), as counted."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_seed(
    model: str,
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] = (),
    output_format: OutputFormat = TEXT_FORMAT,
) -> bytes:
    """Return the sha256 digest that seeds the answer to a request.

    Instructions are passed as a leading ``system`` message. Images, tool calls,
    tools and a response format join the seed only when present, so a plain
    text conversation keeps the seed it always had.
    """
    entries: list[list[object]] = []
    for m in messages:
        entry: list[object] = [m.role, m.text]
        if m.images:
            entry.append([_digest(i.url) + i.detail for i in m.images])
        if m.tool_calls:
            entry.append([[c.call_id, c.name, c.arguments] for c in m.tool_calls])
        if m.call_id is not None:
            entry.append(m.call_id)
        entries.append(entry)
    request: dict[str, object] = {"model": model, "messages": entries}
    if tools:
        request["tools"] = [[t.name, t.parameters] for t in tools]
    if output_format.kind != "text":
        request["format"] = [output_format.kind, output_format.schema]
    canonical = json.dumps(
        request, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def message_tokens(message: Message) -> int:
    """Return the input tokens of one message (see :func:`count_input_tokens`)."""
    return count_input_tokens([message]) - PRIMING_TOKENS


def count_input_tokens(
    messages: Sequence[Message],
    tools: Sequence[Tool] = (),
    output_format: OutputFormat = TEXT_FORMAT,
) -> int:
    """Return the input tokens billed for a request.

    The formula, with ``count`` the exact o200k_base count and JSON in canonical
    form (:func:`canonical_json`)::

        3                                     the reply's priming
        + per message (instructions first, as a system message):
            3 + count(role) + count(each text part) + tokens of each image
            + per tool call on an assistant turn: 3 + count(name) + count(arguments)
        + when tools are given: 12
            + per tool: 7 + count(name) + count(description) + count(parameters)
        + a json_schema format: 8 + count(name) + count(schema)
        + a json_object format: 3

    A tool result counts as a message with role ``tool`` whose text is its output.
    Images count by OpenAI's tile formula (:mod:`services.core.images`).
    """
    texts: list[str] = []
    total = PRIMING_TOKENS
    for message in messages:
        total += MESSAGE_TOKENS + TOOL_CALL_TOKENS * len(message.tool_calls)
        total += sum(image.tokens for image in message.images)
        texts.append(message.role)
        texts.extend(message.texts)
        for call in message.tool_calls:
            texts += [call.name, call.arguments]
    if tools:
        total += TOOLS_TOKENS + TOOL_TOKENS * len(tools)
        for tool in tools:
            texts += [
                tool.name,
                tool.description,
                canonical_json(tool.parameters or {}),
            ]
    if output_format.kind == "json_schema":
        total += JSON_SCHEMA_TOKENS
        texts += [output_format.name, canonical_json(output_format.schema or {})]
    elif output_format.kind == "json_object":
        total += JSON_OBJECT_TOKENS
    return total + sum(count_tokens_batch(texts) if texts else [])


def tool_call_tokens(calls: Sequence[ToolCall]) -> int:
    """Return the output tokens of tool calls: 3 + name + arguments for each."""
    texts = [text for call in calls for text in (call.name, call.arguments)]
    return TOOL_CALL_TOKENS * len(calls) + sum(
        count_tokens_batch(texts) if texts else []
    )


def natural_length(seed: bytes, max_natural_tokens: int) -> int:
    """Return the natural answer length in tokens for ``seed``.

    It lies in ``[min(MIN_NATURAL_TOKENS, max_natural_tokens), max_natural_tokens]``.
    """
    low = min(MIN_NATURAL_TOKENS, max_natural_tokens)
    span = max_natural_tokens - low + 1
    return low + int.from_bytes(seed[:8], "big") % span


def generate_answer(
    seed: bytes,
    messages: Sequence[Message],
    *,
    max_natural_tokens: int,
    max_output_tokens: int | None = None,
    opener: str | None = None,
) -> Answer:
    """Return the deterministic answer for a request.

    Args:
        seed: the request digest from :func:`request_seed`.
        messages: the input messages; a few words of the last user message open
            the answer, so that it visibly refers to the request.
        max_natural_tokens: upper bound of the natural answer length.
        max_output_tokens: the request's cap; a longer natural answer is cut at
            exactly this many tokens and marked truncated.
        opener: the answer's first sentence instead of the usual one; it is
            never cut short by the natural length (only by the cap).
    """
    target = natural_length(seed, max_natural_tokens)
    if opener is None:
        text = _natural_text(seed, _opener(messages), target)
    else:
        text = _natural_text(seed, opener, target + count_tokens(opener))
    if max_output_tokens is not None:
        cut = truncate_tokens(text, max_output_tokens)
        if cut.truncated:
            return Answer(text=cut.text, output_tokens=cut.kept_tokens, truncated=True)
    return Answer(text=text, output_tokens=count_tokens(text), truncated=False)


def split_deltas(text: str) -> list[str]:
    """Split ``text`` into stream deltas: one word with its leading space each.

    The deltas concatenate back to ``text`` exactly.
    """
    return _DELTA_RE.findall(text)


def _opener(messages: Sequence[Message]) -> str:
    user_texts = [m.text for m in messages if m.role == "user"]
    source = user_texts[-1] if user_texts else (messages[-1].text if messages else "")
    words = _WORD_RE.findall(source)[:_OPENER_WORDS]
    if not words:
        return "Simulated answer:"
    return f'Simulated answer to "{" ".join(words)}":'


def _natural_text(seed: bytes, opener: str, target: int) -> str:
    rng = random.Random(int.from_bytes(seed, "big"))
    pieces = [opener]
    # Every piece is at least one token, so ``target`` words are always enough;
    # the text is then cut back to ``target`` tokens on a word boundary.
    sentence_left = 0
    for _ in range(target):
        word = rng.choice(_WORDS)
        if sentence_left == 0:
            sentence_left = rng.randint(5, 12)
            word = word.capitalize()
        sentence_left -= 1
        pieces.append(f"{word}." if sentence_left == 0 else word)
    full = " ".join(pieces)
    cut = truncate_tokens(full, target)
    text = cut.text
    if cut.truncated and not full[len(text)].isspace() and " " in text:
        text = text[: text.rindex(" ")]
    text = text.rstrip()
    # End on a full stop when it still fits, so uncapped answers read finished.
    while not text.endswith(".") and " " in text:
        if count_tokens(text + ".") <= target:
            return text + "."
        text = text[: text.rindex(" ")].rstrip(".")
    return text
