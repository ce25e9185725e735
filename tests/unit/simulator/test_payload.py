from __future__ import annotations

import pytest

from services.simulator import payload
from services.simulator.errors import ApiError
from services.simulator.text import Image, Message, ToolCall


def test_responses_string_input_with_instructions() -> None:
    body = {"instructions": "Be brief.", "input": "Hi"}
    assert payload.responses_messages(body) == [
        Message("system", "Be brief."),
        Message("user", "Hi"),
    ]


def test_responses_item_list_with_parts() -> None:
    body = {
        "input": [
            {"role": "system", "content": "sys"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "42"},
        ]
    }
    assert payload.responses_messages(body) == [
        Message("system", "sys"),
        Message("user", "a\nb", ("a", "b"), (Image("https://x/y.png"),)),
        Message("assistant", "", tool_calls=(ToolCall("c", "f", "{}"),)),
        Message("tool", "42", call_id="c"),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 3}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"content": "no role"}]}, "input[0].role"),
        ({"input": "x", "instructions": 1}, "instructions"),
    ],
)
def test_responses_bad_input(body: payload.Body, param: str) -> None:
    with pytest.raises(ApiError) as caught:
        payload.responses_messages(body)
    assert caught.value.status == 400
    assert caught.value.param == param


def test_chat_messages_with_text_parts_and_null_content() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    }
    assert payload.chat_messages(body) == [
        Message("user", "hello", ("hello",)),
        Message("assistant", ""),
    ]


def test_chat_messages_require_a_role() -> None:
    with pytest.raises(ApiError) as caught:
        payload.chat_messages({"messages": [{"content": "x"}]})
    assert caught.value.param == "messages[0].role"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_embedding_inputs(value: object, expected: list[object]) -> None:
    assert payload.embedding_inputs({"input": value}) == expected


@pytest.mark.parametrize("value", ["", [], [""], ["a", 3], [[]], {"a": 1}, None])
def test_embedding_inputs_rejected(value: object) -> None:
    with pytest.raises(ApiError) as caught:
        payload.embedding_inputs({"input": value})
    assert caught.value.param == "input"


def test_scalar_helpers() -> None:
    body = {"n": 3, "flag": True, "t": 0.5, "s": "x", "b": True}
    assert payload.optional_int(body, "n", minimum=1, maximum=5) == 3
    assert payload.optional_int(body, "missing", minimum=1, maximum=5) is None
    assert payload.optional_bool(body, "flag") is True
    assert payload.optional_number(body, "t", minimum=0, maximum=2) == 0.5
    with pytest.raises(ApiError, match="integer"):
        payload.optional_int(body, "b", minimum=0, maximum=5)
    with pytest.raises(ApiError) as caught:
        payload.optional_int(body, "n", minimum=4, maximum=5)
    assert caught.value.code == "integer_out_of_range"
    with pytest.raises(ApiError):
        payload.required_str(body, "nope")
    with pytest.raises(ApiError):
        payload.metadata({"metadata": {"k": 1}})
    assert payload.metadata({"metadata": {"k": "v"}}) == {"k": "v"}
