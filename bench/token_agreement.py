"""How the gateway's input-token count agrees with the simulator's and with tiktoken.

For each case (a conversation, an agent turn with tool calls and results, tools with
nested schemas, a strict JSON schema, images of known and unknown size) three counts
of the same request:

- ``gateway``: :func:`services.core.prompt_tokens.count_prompt`, what the gateway
  reserves and budgets with;
- ``simulator``: the simulator's own implementation of OpenAI's rule, fed the very
  Responses API body the gateway sends (:func:`services.gateway.responses_api.
  request_body`), which is what it bills;
- ``tiktoken``: tiktoken's o200k_base (the reference tokenizer, loaded offline from
  the bundled vocabulary) over every text of the body, plus the documented fixed
  overheads and the images' tile-formula tokens: the rule written down, counted by
  the reference.

Run from the repository root: ``python bench/token_agreement.py``. Prints a table and
writes ``bench/results/token_agreement.{json,md}`` (``--check``: prints only). Exits
non-zero when any case disagrees.
"""

from __future__ import annotations

import gzip
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "gen" / "python"))

from services.core.conversation import (  # noqa: E402
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
from services.core.prompt_tokens import (  # noqa: E402
    JSON_SCHEMA_TOKENS,
    MESSAGE_TOKENS,
    PRIMING_TOKENS,
    TOOL_CALL_TOKENS,
    TOOL_TOKENS,
    TOOLS_TOKENS,
    count_prompt,
    image_part_tokens,
)
from services.gateway.domain import UpstreamCall  # noqa: E402
from services.gateway.responses_api import request_body  # noqa: E402
from services.simulator import payload, text  # noqa: E402
from tests.images import png_data_url  # noqa: E402

VOCABULARY = ROOT / "tests" / "data" / "o200k_base.tiktoken.gz"
RESULTS = ROOT / "bench" / "results"

WEATHER = Tool(
    "get_weather",
    "The forecast for a city, by day.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City and country."},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "hours": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    strict=True,
)
INVOICE = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total_cents": {"type": "integer", "minimum": 0},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
            },
        },
    },
    "required": ["vendor", "total_cents", "lines"],
}
CALL = ToolCall("call_7", "get_weather", '{"city": "Oslo, Norway", "unit": "celsius"}')


def _user(content: str | ImagePart, *more: str | ImagePart) -> Message:
    return Message(Role.USER, (content, *more))


CASES: dict[str, Prompt] = {
    "one message": Prompt.of_text("What is a token bucket?"),
    "three-turn conversation": Prompt(
        instructions="You are a patient tutor.",
        messages=(
            _user("What is a token bucket?"),
            Message(Role.ASSISTANT, ("A bucket that refills at a fixed rate.",)),
            _user("And when it is empty?"),
            Message(Role.ASSISTANT, ("Requests wait or are refused.",)),
            _user("How big for bursts of 20 requests?"),
        ),
    ),
    "tools offered": Prompt(
        messages=(_user("Will it rain in Oslo this week?"),), tools=(WEATHER,)
    ),
    "tool call and result": Prompt(
        instructions="Use tools when they help.",
        messages=(
            _user("Will it rain in Oslo this week?"),
            Message(Role.ASSISTANT, tool_calls=(CALL,)),
            Message(
                Role.TOOL, ('{"rain": [false, true, true]}',), tool_call_id="call_7"
            ),
            _user("Then which day should I hike?"),
        ),
        tools=(WEATHER,),
    ),
    "strict json schema": Prompt(
        messages=(_user("ACME GmbH, 2 x SKU-1, 1 x SKU-9, 129.00 EUR."),),
        response_format=ResponseFormat(
            FormatKind.JSON_SCHEMA, "invoice", INVOICE, strict=True
        ),
    ),
    "image 1024x512 high": Prompt(
        messages=(
            _user(
                "What is on this screenshot?",
                ImagePart(png_data_url(1024, 512), ImageDetail.HIGH),
            ),
        )
    ),
    "image 2048x4096 auto": Prompt(
        messages=(_user("Describe it.", ImagePart(png_data_url(2048, 4096))),)
    ),
    "image low detail": Prompt(
        messages=(
            _user("Describe it.", ImagePart(png_data_url(800, 600), ImageDetail.LOW)),
        )
    ),
    "https image, size unknown": Prompt(
        messages=(_user("Describe it.", ImagePart("https://example.com/cat.png")),)
    ),
}


def _reference() -> tiktoken.Encoding:
    """Tiktoken's o200k_base, fed the bundled vocabulary instead of a download."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "o200k_base.tiktoken"
        path.write_bytes(gzip.decompress(VOCABULARY.read_bytes()))
        real_load = tiktoken.load.load_tiktoken_bpe

        def load_bundled(_url: str, expected_hash: str | None = None) -> Any:
            return real_load(str(path), expected_hash)

        with mock.patch.object(openai_public, "load_tiktoken_bpe", load_bundled):
            return tiktoken.Encoding(**openai_public.o200k_base())


def _by_the_rule(prompt: Prompt, encoding: tiktoken.Encoding) -> int:
    """The documented rule, every text counted by tiktoken."""

    def count(value: str) -> int:
        return len(encoding.encode(value, disallowed_special=()))

    total = PRIMING_TOKENS
    if prompt.instructions:
        total += MESSAGE_TOKENS + count("system") + count(prompt.instructions)
    for message in prompt.messages:
        total += MESSAGE_TOKENS + count(message.role.value)
        for part in message.content:
            total += (
                count(part) if isinstance(part, str) else image_part_tokens(part)[0]
            )
        for call in message.tool_calls:
            total += TOOL_CALL_TOKENS + count(call.name) + count(call.arguments)
    if prompt.tools:
        total += TOOLS_TOKENS
        for tool in prompt.tools:
            total += TOOL_TOKENS + count(tool.name) + count(tool.description)
            total += count(canonical_json(tool.parameters or {}))
    fmt = prompt.response_format
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        total += (
            JSON_SCHEMA_TOKENS + count(fmt.name) + count(canonical_json(fmt.schema))
        )
    return total


def _simulator(prompt: Prompt) -> int:
    body = request_body(UpstreamCall("gpt-4.1-mini", prompt, 0, None))
    parsed = payload.responses_prompt(body)  # instructions included, as a system turn
    return text.count_input_tokens(parsed.messages, parsed.tools, parsed.output_format)


def main() -> int:
    """Count every case three ways; print the table, and write it unless --check."""
    encoding = _reference()
    rows = []
    for name, prompt in CASES.items():
        counted = count_prompt(prompt)
        rows.append(
            {
                "case": name,
                "gateway": counted.total,
                "simulator": _simulator(prompt),
                "tiktoken_rule": _by_the_rule(prompt, encoding),
                "estimated_images": counted.estimated_images,
            }
        )
    agree = sum(r["gateway"] == r["simulator"] == r["tiktoken_rule"] for r in rows)
    lines = [
        "# Input-token agreement: gateway, simulator, tiktoken",
        "",
        "Generated by `python bench/token_agreement.py`. `tiktoken_rule` is the",
        "documented rule (docs/requests.md) with every text counted by tiktoken's",
        "o200k_base; images by the tile formula (an https image of unknown size is",
        "the documented 765-token estimate, reconciled from the upstream's usage).",
        "",
        "| case | gateway | simulator | tiktoken_rule | images estimated |",
        "|---|---|---|---|---|",
        *(
            f"| {r['case']} | {r['gateway']} | {r['simulator']} | "
            f"{r['tiktoken_rule']} | {r['estimated_images']} |"
            for r in rows
        ),
        "",
        f"{agree} of {len(rows)} cases agree exactly across all three.",
        "",
    ]
    print("\n".join(lines))
    if "--check" in sys.argv[1:]:
        return 0 if agree == len(rows) else 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "token_agreement.md").write_text("\n".join(lines), encoding="utf-8")
    (RESULTS / "token_agreement.json").write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "tiktoken": tiktoken.__version__,
                "cases": rows,
                "agreeing": agree,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
