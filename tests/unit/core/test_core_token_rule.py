"""The gateway's input-token count, case by case, in process: it equals the
simulator's independent count of the very body the gateway sends, and, less the
fixed overheads written in ``services/core/prompt_tokens.py``'s docstring (as
literal numbers here, so that a changed constant fails), the tiktoken count of
every text.

``bench/token_agreement.py`` (run by ``test_core_token_agreement.py``) prints the
same comparison as a table; this file adds a json_object format, images built here
byte by byte, and asserts each overhead by its documented value.
"""

from __future__ import annotations

import base64
import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from services.core.conversation import (
    FormatKind,
    ImageDetail,
    ImagePart,
    Message,
    Prompt,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    canonical_json,
)
from services.core.prompt_tokens import count_prompt
from services.gateway.domain import UpstreamCall
from services.gateway.responses_api import request_body
from services.simulator import payload, text

VOCABULARY = Path(__file__).parents[2] / "data" / "o200k_base.tiktoken.gz"

# The documented overheads (prompt_tokens.py's table), as literal numbers.
PRIMING, PER_MESSAGE, PER_TOOL_CALL = 3, 3, 3
TOOLS_BLOCK, PER_TOOL = 12, 7
JSON_SCHEMA, JSON_OBJECT = 8, 3


def _png(width: int, height: int) -> str:
    """A real black RGB PNG of ``width`` x ``height`` as a data URL."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\x00" * 3 * width) * height
    image = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(image).decode()


WEATHER = Tool(
    "get_weather",
    "The forecast for a city, by day.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City and country."},
            "when": {
                "type": "object",
                "properties": {
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "hours": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    },
    strict=True,
)
CALENDAR = Tool("find_slot", "A free slot in the calendar.", {"type": "object"})
CALL_A = ToolCall("call_a", "get_weather", '{"city": "Oslo, Norway"}')
CALL_B = ToolCall("call_b", "find_slot", "{}")
INVOICE = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    },
    "required": ["vendor", "lines"],
    "additionalProperties": False,
}


def _user(*content: str | ImagePart) -> Message:
    return Message(Role.USER, content)


# Each case: the prompt, its documented overhead and its images' tokens.
CASES: dict[str, tuple[Prompt, int, int]] = {
    "one message": (Prompt.of_text("What is a token bucket?"), PRIMING + 3, 0),
    "three turns and instructions": (
        Prompt(
            instructions="You are a patient tutor.",
            messages=(
                _user("What is a token bucket?"),
                Message(Role.ASSISTANT, ("A bucket that refills at a fixed rate.",)),
                _user("And when it is empty?"),
            ),
        ),
        PRIMING + 4 * PER_MESSAGE,
        0,
    ),
    "agent turn with tool calls and results": (
        Prompt(
            instructions="Use tools when they help.",
            messages=(
                _user("Will it rain in Oslo, and when am I free?"),
                Message(Role.ASSISTANT, tool_calls=(CALL_A, CALL_B)),
                Message(Role.TOOL, ('{"rain": [false, true]}',), tool_call_id="call_a"),
                Message(Role.TOOL, ('"Tuesday 10:00"',), tool_call_id="call_b"),
                _user("Then book the dry day."),
            ),
            tools=(WEATHER, CALENDAR),
        ),
        PRIMING + 6 * PER_MESSAGE + 2 * PER_TOOL_CALL + TOOLS_BLOCK + 2 * PER_TOOL,
        0,
    ),
    # Sent as a message item, then function_call items: the upstream reads the
    # calls as an assistant turn of their own (3 + "assistant" more).
    "assistant text beside its tool calls": (
        Prompt(
            messages=(
                _user("Will it rain in Oslo?"),
                Message(Role.ASSISTANT, ("Let me check.",), (CALL_A,)),
                Message(Role.TOOL, ('{"rain": [false, true]}',), tool_call_id="call_a"),
                _user("Thanks."),
            ),
            tools=(WEATHER,),
        ),
        PRIMING + 5 * PER_MESSAGE + PER_TOOL_CALL + TOOLS_BLOCK + PER_TOOL,
        0,
    ),
    # Sent as one string each, the parts joined by newlines.
    "assistant and tool texts in parts": (
        Prompt(
            messages=(
                _user("Rain?"),
                Message(Role.ASSISTANT, ("yes", "no"), (CALL_A,)),
                Message(Role.TOOL, ("wet", "cold"), tool_call_id="call_a"),
                _user("ok"),
            ),
            tools=(WEATHER,),
        ),
        PRIMING + 5 * PER_MESSAGE + PER_TOOL_CALL + TOOLS_BLOCK + PER_TOOL,
        0,
    ),
    "nested tool schemas": (
        Prompt(messages=(_user("Weather in Oslo?"),), tools=(WEATHER,)),
        PRIMING + PER_MESSAGE + TOOLS_BLOCK + PER_TOOL,
        0,
    ),
    "strict json schema": (
        Prompt(
            messages=(_user("ACME GmbH, 2 x SKU-1."),),
            response_format=ResponseFormat(
                FormatKind.JSON_SCHEMA, "invoice", INVOICE, strict=True
            ),
        ),
        PRIMING + PER_MESSAGE + JSON_SCHEMA,
        0,
    ),
    "json object": (
        Prompt(
            messages=(_user("Answer in JSON: the capital of Peru?"),),
            response_format=ResponseFormat(FormatKind.JSON_OBJECT),
        ),
        PRIMING + PER_MESSAGE + JSON_OBJECT,
        0,
    ),
    # 1024x512 at high detail: 2 x 1 tiles, 85 + 2 x 170.
    "png 1024x512 high": (
        Prompt(
            messages=(
                _user("What is this?", ImagePart(_png(1024, 512), ImageDetail.HIGH)),
            )
        ),
        PRIMING + PER_MESSAGE,
        425,
    ),
    "png 1024x512 low": (
        Prompt(
            messages=(
                _user("What is this?", ImagePart(_png(1024, 512), ImageDetail.LOW)),
            )
        ),
        PRIMING + PER_MESSAGE,
        85,
    ),
    # An https image's size is unknown: the documented estimate of 1024x1024.
    "https image, size unknown": (
        Prompt(
            messages=(_user("What is this?", ImagePart("https://example.com/a.png")),)
        ),
        PRIMING + PER_MESSAGE,
        765,
    ),
}


def _simulator_count(prompt: Prompt) -> int:
    body = request_body(UpstreamCall("gpt-4.1-mini", prompt, 0, None))
    parsed = payload.responses_prompt(body)  # instructions become a system turn
    return text.count_input_tokens(parsed.messages, parsed.tools, parsed.output_format)


def _texts(prompt: Prompt) -> Iterator[str]:
    """Every text the rule counts: roles, contents, calls, tools, the schema."""
    if prompt.instructions:
        yield from ("system", prompt.instructions)
    for message in prompt.messages:
        yield message.role.value
        if message.role in (Role.ASSISTANT, Role.TOOL):
            yield message.text  # one string in the body
        else:
            yield from (part for part in message.content if isinstance(part, str))
        if message.role is Role.ASSISTANT and message.text and message.tool_calls:
            yield message.role.value  # the calls' own turn
        for call in message.tool_calls:
            yield from (call.name, call.arguments)
    for tool in prompt.tools:
        yield from (tool.name, tool.description, canonical_json(tool.parameters or {}))
    fmt = prompt.response_format
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        yield from (fmt.name, canonical_json(fmt.schema or {}))


@pytest.fixture(scope="module")
def tiktoken_count(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], int]:
    """tiktoken's o200k_base over the bundled vocabulary, without network."""
    path = tmp_path_factory.mktemp("tiktoken") / "o200k_base.tiktoken"
    path.write_bytes(gzip.decompress(VOCABULARY.read_bytes()))
    real_load = tiktoken.load.load_tiktoken_bpe

    def load_bundled(_url: str, expected_hash: str | None = None) -> Any:
        return real_load(str(path), expected_hash)

    with mock.patch.object(openai_public, "load_tiktoken_bpe", load_bundled):
        encoding = tiktoken.Encoding(**openai_public.o200k_base())

    def count(value: str) -> int:
        return len(encoding.encode(value, disallowed_special=()))

    return count


@pytest.mark.parametrize("case", CASES)
def test_the_gateway_counts_what_the_simulator_bills(case: str) -> None:
    prompt, _, _ = CASES[case]

    assert count_prompt(prompt).total == _simulator_count(prompt)


@pytest.mark.parametrize("case", CASES)
def test_beyond_the_documented_overheads_every_token_is_a_tiktoken_token(
    case: str, tiktoken_count: Callable[[str], int]
) -> None:
    prompt, overhead, image_tokens = CASES[case]

    counted = count_prompt(prompt).total

    assert counted - overhead - image_tokens == sum(map(tiktoken_count, _texts(prompt)))


def test_only_the_https_image_is_an_estimate() -> None:
    estimated = {
        case: count_prompt(p).estimated_images for case, (p, _, _) in CASES.items()
    }

    assert estimated.pop("https image, size unknown") == 1
    assert set(estimated.values()) == {0}
