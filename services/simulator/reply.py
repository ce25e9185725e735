"""What the simulated model answers: tool calls, structured JSON, or text.

The rules are deterministic, so that tests can predict them:

- **Tool calls.** With tools given, ``tool_choice`` not ``none`` and the last
  input message not a tool result, the model calls a tool when ``tool_choice``
  is ``required`` or names a function, or when the last user message mentions a
  tool's name (case-insensitive; underscores may be written as spaces). It calls
  the named function, else the first tool mentioned, else the first tool; with
  ``parallel_tool_calls`` not false it calls every mentioned tool once, in the
  order the text mentions them. Arguments are generated from the tool's
  parameters schema (:mod:`services.simulator.schema_gen`); call ids are
  ``call_`` and hex digits of the request seed.
- **After tool results.** When the last input message is a tool result, the
  answer opens by quoting the trailing tool outputs, then goes on as usual.
- **Structured outputs.** A ``json_schema`` format gets compact JSON that
  validates against the schema; ``json_object`` gets ``{"answer": "..."}``.
- **Reasoning.** A reasoning effort adds fixed reasoning tokens
  (:data:`~services.simulator.text.REASONING_TOKENS`) to the output tokens; they
  spend the ``max_output_tokens`` budget first, as a reasoning model's do.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from services.core.tokens import count_tokens, truncate_tokens
from services.simulator import schema_gen
from services.simulator.text import (
    Answer,
    Message,
    Prompt,
    Tool,
    ToolCall,
    generate_answer,
    tool_call_tokens,
)

_QUOTE_CHARS = 200
_ARGUMENT_FRAGMENT = re.compile(r"[^,:]*[,:]|[^,:]+")


def compose_answer(
    seed: bytes,
    prompt: Prompt,
    *,
    max_natural_tokens: int,
    max_output_tokens: int | None = None,
) -> Answer:
    """Return the deterministic answer to ``prompt``.

    Args:
        seed: the request digest from :func:`~services.simulator.text.request_seed`.
        prompt: the request's messages, tools, format and reasoning effort.
        max_natural_tokens: upper bound of a natural text answer's length.
        max_output_tokens: the request's cap on output tokens (reasoning
            included); a longer text is cut at exactly the cap.
    """
    reasoning = prompt.reasoning_tokens
    cap = max_output_tokens
    if cap is not None:
        reasoning = min(reasoning, cap)
        cap -= reasoning
    calls = plan_tool_calls(seed, prompt)
    if calls:
        return Answer(
            text="",
            output_tokens=tool_call_tokens(calls) + reasoning,
            truncated=False,
            tool_calls=calls,
            reasoning_tokens=reasoning,
        )
    if cap == 0:
        return Answer("", reasoning, truncated=True, reasoning_tokens=reasoning)
    messages = prompt.messages
    fmt = prompt.output_format
    if fmt.kind == "json_schema":
        value = schema_gen.generate(fmt.schema or {}, seed, strict=fmt.strict)
        answer = _capped(
            json.dumps(value, ensure_ascii=False, separators=(",", ":")), cap
        )
    elif fmt.kind == "json_object":
        text = generate_answer(
            seed, messages, max_natural_tokens=max_natural_tokens
        ).text
        answer = _capped(json.dumps({"answer": text}, ensure_ascii=False), cap)
    else:
        answer = generate_answer(
            seed,
            messages,
            max_natural_tokens=max_natural_tokens,
            max_output_tokens=cap,
            opener=tool_result_opener(messages),
        )
    return Answer(
        text=answer.text,
        output_tokens=answer.output_tokens + reasoning,
        truncated=answer.truncated,
        reasoning_tokens=reasoning,
    )


def plan_tool_calls(seed: bytes, prompt: Prompt) -> tuple[ToolCall, ...]:
    """Return the calls the model makes for ``prompt`` (empty: it answers in text)."""
    tools = prompt.tools
    messages = prompt.messages
    if not tools or prompt.tool_choice == "none":
        return ()
    if messages and messages[-1].role == "tool":
        return ()
    mentioned = mentioned_tools(_last_user_text(messages), tools)
    chosen: list[Tool]
    if prompt.forced_tool is not None:
        chosen = [t for t in tools if t.name == prompt.forced_tool][:1]
    elif mentioned:
        chosen = mentioned if prompt.parallel_tool_calls else mentioned[:1]
    elif prompt.tool_choice == "required":
        chosen = [tools[0]]
    else:
        return ()
    return tuple(
        ToolCall(
            call_id="call_" + _hex(seed, b"call", index, 24),
            name=tool.name,
            arguments=tool_arguments(tool, seed + index.to_bytes(2, "big")),
        )
        for index, tool in enumerate(chosen)
    )


def tool_arguments(tool: Tool, seed: bytes) -> str:
    """Return JSON arguments for ``tool`` that validate against its parameters."""
    schema = tool.parameters or {"type": "object", "properties": {}}
    value = schema_gen.generate(schema, seed + tool.name.encode(), strict=tool.strict)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def mentioned_tools(text: str, tools: Sequence[Tool]) -> list[Tool]:
    """Return the tools whose name ``text`` mentions, in order of first mention.

    Names match case-insensitively as whole words, with underscores written
    either as underscores or as spaces.
    """
    lowered = text.lower()
    found: list[tuple[int, int, Tool]] = []
    for order, tool in enumerate(tools):
        name = tool.name.lower()
        positions = [
            match.start()
            for variant in {name, name.replace("_", " ")}
            if variant.strip()
            for match in [re.search(rf"(?<!\w){re.escape(variant)}(?!\w)", lowered)]
            if match is not None
        ]
        if positions:
            found.append((min(positions), order, tool))
    found.sort(key=lambda entry: (entry[0], entry[1]))
    unique: dict[str, Tool] = {}
    for _, _, tool in found:
        unique.setdefault(tool.name, tool)
    return list(unique.values())


def tool_result_opener(messages: Sequence[Message]) -> str | None:
    """Return the sentences quoting the trailing tool results, or None if none."""
    results: list[Message] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.append(message)
    if not results:
        return None
    names = {
        call.call_id: call.name for message in messages for call in message.tool_calls
    }
    sentences = []
    for result in reversed(results):
        name = names.get(result.call_id or "", "function")
        quote = _excerpt(result.text)
        sentences.append(
            f'The {name} tool returned "{quote}".'
            if quote
            else f"The {name} tool returned nothing."
        )
    return " ".join(sentences)


def argument_fragments(arguments: str) -> list[str]:
    """Split JSON arguments into stream deltas; they concatenate back exactly."""
    return _ARGUMENT_FRAGMENT.findall(arguments)


def _capped(text: str, cap: int | None) -> Answer:
    if cap is not None:
        cut = truncate_tokens(text, cap)
        if cut.truncated:
            return Answer(cut.text, cut.kept_tokens, truncated=True)
    return Answer(text, count_tokens(text), truncated=False)


def _last_user_text(messages: Sequence[Message]) -> str:
    return next((m.text for m in reversed(messages) if m.role == "user"), "")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= _QUOTE_CHARS:
        return flat
    cut = flat[:_QUOTE_CHARS]
    return (cut[: cut.rindex(" ")] if " " in cut else cut) + "…"


def _hex(seed: bytes, purpose: bytes, index: int, size: int) -> str:
    digest = hashlib.sha256(seed + purpose + index.to_bytes(2, "big")).hexdigest()
    return digest[:size]
