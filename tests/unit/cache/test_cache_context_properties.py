"""The exact key of a whole request: key order never matters, every answer-changing
field always does (hypothesis), through the path the gateway takes."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.cache.domain import CacheableRequest, exact_key, semantic_scope
from services.core.conversation import (
    FormatKind,
    Message,
    Prompt,
    ReasoningEffort,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    cache_context,
)

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=8),
)
JSON_OBJECT = st.recursive(
    st.dictionaries(st.text(min_size=1, max_size=6), JSON_LEAF, max_size=4),
    lambda children: st.dictionaries(
        st.text(min_size=1, max_size=6),
        st.one_of(JSON_LEAF, children, st.lists(children, max_size=3)),
        max_size=4,
    ),
    max_leaves=12,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """``value`` with every object's keys in another order (same JSON meaning)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


def _prompt(schema: dict[str, Any], arguments: dict[str, Any]) -> Prompt:
    call = ToolCall("call_1", "lookup", json.dumps(arguments))
    return Prompt(
        instructions="Be brief.",
        messages=(
            Message(Role.USER, ("Find order 42.",)),
            Message(Role.ASSISTANT, tool_calls=(call,)),
            Message(Role.TOOL, ("shipped",), tool_call_id="call_1"),
            Message(Role.USER, ("And when will it arrive?",)),
        ),
        tools=(Tool("lookup", "Finds an order.", schema, strict=True),),
        tool_choice=ToolChoice(mode=ToolChoiceMode.AUTO),
        parallel_tool_calls=False,
        response_format=ResponseFormat(FormatKind.JSON_SCHEMA, "eta", schema),
        reasoning_effort=ReasoningEffort.LOW,
    )


def _request(prompt: Prompt, **fields: Any) -> CacheableRequest:
    """The cache's request for ``prompt``, as the gateway's plan stage builds it."""
    context = cache_context(prompt)
    request = CacheableRequest(
        tenant_id="acme",
        model="gpt-4.1-mini",
        instructions=prompt.instructions,
        input=context.text,
        temperature=0.0,
        max_output_tokens=500,
        tools_json=context.tools_json,
        response_format_json=context.response_format_json,
        multi_turn=context.multi_turn,
        context_digest=context.context_digest,
        exact_only_reason=context.exact_only_reason,
    )
    return dataclasses.replace(request, **fields)


@settings(max_examples=150, deadline=None)
@given(schema=JSON_OBJECT, arguments=JSON_OBJECT, seed=st.integers(0, 2**32 - 1))
def test_json_key_order_never_changes_the_key(
    schema: dict[str, Any], arguments: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    one = _request(_prompt(schema, arguments))
    other = _request(_prompt(_shuffled(schema, rng), _shuffled(arguments, rng)))
    assert exact_key(one) == exact_key(other)


BASE = _prompt({"type": "object"}, {"id": 42})
CHANGES: dict[str, Prompt] = {
    "an earlier turn": dataclasses.replace(
        BASE,
        messages=(Message(Role.USER, ("Find order 43.",)), *BASE.messages[1:]),
    ),
    "a tool result": dataclasses.replace(
        BASE,
        messages=(
            *BASE.messages[:2],
            Message(Role.TOOL, ("lost",), tool_call_id="call_1"),
            BASE.messages[3],
        ),
    ),
    "a tool call's arguments": _prompt({"type": "object"}, {"id": 43}),
    "a tool's description": dataclasses.replace(
        BASE, tools=(Tool("lookup", "Finds a parcel.", {"type": "object"}, True),)
    ),
    "a tool's schema": _prompt({"type": "object", "required": ["id"]}, {"id": 42}),
    "tool_choice": dataclasses.replace(
        BASE, tool_choice=ToolChoice(mode=ToolChoiceMode.REQUIRED)
    ),
    "parallel_tool_calls": dataclasses.replace(BASE, parallel_tool_calls=True),
    "the response format": dataclasses.replace(
        BASE, response_format=ResponseFormat(FormatKind.JSON_OBJECT)
    ),
    "the reasoning effort": dataclasses.replace(
        BASE, reasoning_effort=ReasoningEffort.HIGH
    ),
    "the instructions": dataclasses.replace(BASE, instructions="Be thorough."),
    "the last question": BASE.replace_last_user_text("Where is it now?"),
}


@given(change=st.sampled_from(sorted(CHANGES)))
def test_every_part_that_changes_the_answer_changes_the_key(change: str) -> None:
    assert exact_key(_request(CHANGES[change])) != exact_key(_request(BASE))


@given(
    field=st.sampled_from(
        [
            ("temperature", 0.7),
            ("top_p", 0.5),
            ("max_output_tokens", 100),
            ("model", "gpt-4.1"),
            ("tenant_id", "globex"),
        ]
    )
)
def test_every_sampling_and_scope_field_changes_the_key(
    field: tuple[str, Any],
) -> None:
    name, value = field
    assert exact_key(_request(BASE, **{name: value})) != exact_key(_request(BASE))


def test_the_semantic_tier_never_compares_across_conversations() -> None:
    earlier = CHANGES["an earlier turn"]
    assert _request(earlier).input == _request(BASE).input  # the same last question
    assert semantic_scope(_request(earlier), "v") != semantic_scope(_request(BASE), "v")
