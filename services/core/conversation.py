"""The request model every stage shares: a conversation with tools, formats, images.

Plain data, no protobuf: the gRPC front and the OpenAI-compatible HTTP front both
decode into a :class:`Prompt`; the pipeline counts, trims, keys, routes and sends it.

Three functions give the rest of the suite one definition each of:
- :func:`validate_prompt`: what a well-formed conversation is (field paths as the
  gRPC contract names them, ``messages[3].tool_call_id``);
- :func:`canonical_json`: the canonical JSON text of any JSON value (sorted keys, no
  whitespace, integral floats as integers), so that key order never changes a key;
- :func:`cache_context`: what the cache compares besides the last user text.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.core.errors import FieldViolation

MAX_MESSAGES = 2048
MAX_TOOLS = 128
MAX_TOOL_CALLS_PER_MESSAGE = 128
MAX_TEXT_BYTES = 1024 * 1024
MAX_PROMPT_BYTES = 8 * 1024 * 1024
MAX_SCHEMA_BYTES = 256 * 1024
MAX_IMAGE_URL_BYTES = 20 * 1024 * 1024
MAX_DESCRIPTION_BYTES = 8 * 1024
MAX_SAFETY_IDENTIFIER_CHARS = 64
MAX_TOOL_CALL_ID_CHARS = 256
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Role(enum.Enum):
    """Who speaks a message; the values are OpenAI's role names."""

    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ImageDetail(enum.Enum):
    """How closely the model looks at an image."""

    AUTO = "auto"
    LOW = "low"
    HIGH = "high"


class ToolChoiceMode(enum.Enum):
    """Whether the model may call tools."""

    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"


class FormatKind(enum.Enum):
    """The shape of an answer."""

    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


class ReasoningEffort(enum.Enum):
    """How hard a reasoning model thinks."""

    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class FinishReason(enum.Enum):
    """Why the model stopped."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image: an https or data URL, with its size when known (0 when not)."""

    url: str
    detail: ImageDetail = ImageDetail.AUTO
    width: int = 0
    height: int = 0


ContentPart = str | ImagePart
"""A part of a message: text, or an image."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of a tool by the model; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""

    @property
    def text(self) -> str:
        """The text parts, joined by newlines."""
        return "\n".join(part for part in self.content if isinstance(part, str))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        """The image parts."""
        return tuple(part for part in self.content if isinstance(part, ImagePart))


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """A mode, or the one function the model must call."""

    mode: ToolChoiceMode | None = None
    function: str = ""


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The answer's shape; ``schema`` only for JSON_SCHEMA."""

    kind: FormatKind
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Everything the model reads: instructions, the conversation, tools, format."""

    instructions: str = ""
    messages: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None

    @classmethod
    def of_text(cls, text: str, instructions: str = "") -> Prompt:
        """The shorthand request: one user message."""
        return cls(instructions=instructions, messages=(Message(Role.USER, (text,)),))

    @property
    def last_user_index(self) -> int | None:
        """Index of the last user message, or None when there is none."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role is Role.USER:
                return index
        return None

    @property
    def last_user_text(self) -> str:
        """The text of the last user message ('' when there is none)."""
        index = self.last_user_index
        return "" if index is None else self.messages[index].text

    @property
    def previous_user_text(self) -> str:
        """The text of the user message before the last one ('' when none)."""
        last = self.last_user_index
        for index in range(-1 if last is None else last - 1, -1, -1):
            if self.messages[index].role is Role.USER:
                return self.messages[index].text
        return ""

    @property
    def has_images(self) -> bool:
        """Whether any message carries an image."""
        return any(message.images for message in self.messages)

    @property
    def wants_json_schema(self) -> bool:
        """Whether the answer must match a JSON schema."""
        return (
            self.response_format is not None
            and self.response_format.kind is FormatKind.JSON_SCHEMA
        )

    def replace_last_user_text(self, text: str) -> Prompt:
        """This prompt with the last user message's text parts replaced by ``text``."""
        index = self.last_user_index
        if index is None:
            return self
        message = self.messages[index]
        content: tuple[ContentPart, ...] = (text, *message.images)
        messages = list(self.messages)
        messages[index] = Message(message.role, content, message.tool_calls)
        return _with_messages(self, tuple(messages))


def _with_messages(prompt: Prompt, messages: tuple[Message, ...]) -> Prompt:
    return Prompt(
        instructions=prompt.instructions,
        messages=messages,
        tools=prompt.tools,
        tool_choice=prompt.tool_choice,
        parallel_tool_calls=prompt.parallel_tool_calls,
        response_format=prompt.response_format,
        reasoning_effort=prompt.reasoning_effort,
    )


def with_messages(prompt: Prompt, messages: Sequence[Message]) -> Prompt:
    """``prompt`` with another conversation."""
    return _with_messages(prompt, tuple(messages))


# -- canonical forms


def normalize_json(value: Any) -> Any:
    """``value`` with integral floats as integers, recursively.

    protobuf's Struct carries every number as a double, so a schema's ``"minimum":
    1`` arrives as ``1.0``; OpenAI and JSON Schema read both the same, and the cache
    key must too.
    """
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(key): normalize_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_json(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """Sorted-key JSON without whitespace, integral floats as integers."""
    return json.dumps(
        normalize_json(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def canonical_arguments(arguments: str) -> str:
    """Tool-call arguments in canonical form; text that is not JSON stays as is."""
    try:
        return canonical_json(json.loads(arguments))
    except ValueError:
        return arguments


def _message_document(message: Message) -> dict[str, Any]:
    content: list[Any] = [
        part
        if isinstance(part, str)
        else {"image": part.url, "detail": part.detail.value}
        for part in message.content
    ]
    document: dict[str, Any] = {"role": message.role.value, "content": content}
    if message.tool_calls:
        document["tool_calls"] = [
            [call.id, call.name, canonical_arguments(call.arguments)]
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        document["tool_call_id"] = message.tool_call_id
    return document


def tools_document(prompt: Prompt) -> list[Any] | None:
    """Tools, tool choice and parallel_tool_calls as plain JSON; None without any."""
    if not prompt.tools and prompt.tool_choice is None:
        return None
    choice = prompt.tool_choice
    return [
        [
            [tool.name, tool.description, tool.parameters or {}, tool.strict]
            for tool in prompt.tools
        ],
        None
        if choice is None
        else (choice.function or (choice.mode.value if choice.mode else None)),
        prompt.parallel_tool_calls,
    ]


def response_format_document(prompt: Prompt) -> dict[str, Any] | None:
    """The response format as plain JSON; None for text, OpenAI's default."""
    fmt = prompt.response_format
    if fmt is None or fmt.kind is FormatKind.TEXT:
        return None
    document: dict[str, Any] = {"type": fmt.kind.value}
    if fmt.kind is FormatKind.JSON_SCHEMA:
        document.update(
            name=fmt.name,
            schema=fmt.schema or {},
            strict=fmt.strict,
            description=fmt.description,
        )
    return document


@dataclass(frozen=True, slots=True)
class CacheContext:
    """What the cache compares besides instructions, model, sampling and the text.

    Attributes:
        text: the last user message's text, which the semantic tier compares.
        tools_json: canonical tools, tool choice and parallel_tool_calls; '' without.
        response_format_json: canonical response format; '' for text.
        context_digest: hex SHA-256 of every other turn and part; '' for a lone
            text message with no reasoning effort.
        multi_turn: whether turns come before the last user message.
        exact_only_reason: why the semantic tier must not answer, or ''.
    """

    text: str
    tools_json: str
    response_format_json: str
    context_digest: str
    multi_turn: bool
    exact_only_reason: str


def cache_context(prompt: Prompt) -> CacheContext:
    """Split ``prompt`` into the text the semantic tier compares and the rest."""
    index = prompt.last_user_index
    tools = tools_document(prompt)
    fmt = response_format_document(prompt)
    if index is None:
        before: Sequence[Message] = prompt.messages
        last: Message | None = None
        after: Sequence[Message] = ()
    else:
        before = prompt.messages[:index]
        last = prompt.messages[index]
        after = prompt.messages[index + 1 :]
    context: dict[str, Any] = {}
    if before:
        context["before"] = [_message_document(m) for m in before]
    if last is not None and (
        last.images or sum(isinstance(p, str) for p in last.content) > 1
    ):
        context["last"] = _message_document(last)
    if after:
        context["after"] = [_message_document(m) for m in after]
    if prompt.reasoning_effort is not None:
        context["reasoning_effort"] = prompt.reasoning_effort.value
    digest = (
        hashlib.sha256(canonical_json(context).encode()).hexdigest() if context else ""
    )
    if prompt.has_images:
        reason = "images"
    elif after:
        reason = "tool_result"
    elif last is None or not last.text.strip():
        reason = "no_user_text"
    else:
        reason = ""
    return CacheContext(
        text=prompt.last_user_text,
        tools_json="" if tools is None else canonical_json(tools),
        response_format_json="" if fmt is None else canonical_json(fmt),
        context_digest=digest,
        multi_turn=bool(before),
        exact_only_reason=reason,
    )


# -- validation


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def _valid_image_url(url: str) -> bool:
    lowered = url[:16].lower()
    return lowered.startswith("https://") or lowered.startswith("data:image/")


def validate_prompt(
    prompt: Prompt, *, prefix: str = "", input_shorthand: bool = False
) -> list[FieldViolation]:
    """Every problem of ``prompt``, each with the exact path of its field.

    With ``input_shorthand``, the first message came from the request's ``input``
    field, and its problems are reported there.

    The shape rules: at most :data:`MAX_MESSAGES` messages; a tool message answers
    a call of an earlier assistant turn (and each call is answered at most once);
    tool calls only on assistant turns, images only on user turns; tool names
    unique and matching ``^[A-Za-z0-9_-]{1,64}$``; at most :data:`MAX_TOOLS` tools;
    schemas are JSON objects; image URLs are https or data URLs; a tool choice names
    a tool that exists; the whole prompt fits in :data:`MAX_PROMPT_BYTES`.
    """
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        if input_shorthand and path.startswith("messages[0].content"):
            path = "input"  # the one message the caller wrote as ``input``
        violations.append(FieldViolation(prefix + path, description))

    if not prompt.messages:
        bad("messages", "must hold at least one message")
    elif len(prompt.messages) > MAX_MESSAGES:
        bad("messages", f"must have at most {MAX_MESSAGES} messages")
    open_calls: set[str] = set()
    total_bytes = _utf8_len(prompt.instructions)
    for index, message in enumerate(prompt.messages[:MAX_MESSAGES]):
        path = f"messages[{index}]"
        for part_index, part in enumerate(message.content):
            part_path = f"{path}.content[{part_index}]"
            if isinstance(part, str):
                size = _utf8_len(part)
                total_bytes += size
                if size > MAX_TEXT_BYTES:
                    bad(f"{part_path}.text", f"must be at most {MAX_TEXT_BYTES} bytes")
                continue
            total_bytes += len(part.url)
            if message.role is not Role.USER:
                bad(f"{part_path}.image", "images are allowed on user messages only")
            if not _valid_image_url(part.url):
                bad(
                    f"{part_path}.image.url", "must be an https URL or a data:image URL"
                )
            elif len(part.url) > MAX_IMAGE_URL_BYTES:
                bad(
                    f"{part_path}.image.url",
                    f"must be at most {MAX_IMAGE_URL_BYTES} bytes",
                )
            if part.width < 0 or part.height < 0:
                bad(f"{part_path}.image", "width_px and height_px must not be negative")
        if message.tool_calls and message.role is not Role.ASSISTANT:
            bad(f"{path}.tool_calls", "only assistant messages carry tool calls")
        if len(message.tool_calls) > MAX_TOOL_CALLS_PER_MESSAGE:
            bad(f"{path}.tool_calls", f"must be at most {MAX_TOOL_CALLS_PER_MESSAGE}")
        for call_index, call in enumerate(message.tool_calls):
            call_path = f"{path}.tool_calls[{call_index}]"
            total_bytes += _utf8_len(call.arguments)
            if not call.id or len(call.id) > MAX_TOOL_CALL_ID_CHARS:
                bad(
                    f"{call_path}.id",
                    f"must be 1 to {MAX_TOOL_CALL_ID_CHARS} characters",
                )
            elif call.id in open_calls:
                bad(f"{call_path}.id", "repeats the id of an earlier unanswered call")
            else:
                open_calls.add(call.id)
            if not NAME_PATTERN.fullmatch(call.name):
                bad(f"{call_path}.name", "must match ^[A-Za-z0-9_-]{1,64}$")
        if message.role is Role.TOOL:
            if not message.tool_call_id:
                bad(
                    f"{path}.tool_call_id",
                    "a tool message must name the call it answers",
                )
            elif message.tool_call_id not in open_calls:
                bad(
                    f"{path}.tool_call_id",
                    f"answers no earlier tool call: {message.tool_call_id[:64]!r}",
                )
            else:
                open_calls.discard(message.tool_call_id)
        elif message.tool_call_id:
            bad(f"{path}.tool_call_id", "only tool messages answer a tool call")
        if message.role is Role.ASSISTANT:
            if not message.content and not message.tool_calls:
                bad(f"{path}.content", "must hold text or tool calls")
        elif not message.images and not message.text.strip():
            bad(f"{path}.content", "must not be empty")
    _validate_tools(prompt, bad)
    fmt = prompt.response_format
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        if not NAME_PATTERN.fullmatch(fmt.name):
            bad("response_format.json_schema.name", "must match ^[A-Za-z0-9_-]{1,64}$")
        schema_bytes = _schema_size(fmt.schema)
        if schema_bytes is None:
            bad("response_format.json_schema.schema", "must be a non-empty JSON object")
        elif schema_bytes > MAX_SCHEMA_BYTES:
            bad(
                "response_format.json_schema.schema",
                f"must be at most {MAX_SCHEMA_BYTES} bytes as JSON",
            )
    if total_bytes > MAX_PROMPT_BYTES:
        bad("messages", f"the whole request must be at most {MAX_PROMPT_BYTES} bytes")
    return violations


def _schema_size(schema: Mapping[str, Any] | None) -> int | None:
    if not isinstance(schema, Mapping) or not schema:
        return None
    try:
        return len(canonical_json(schema).encode())
    except ValueError:
        return None


def _validate_tools(prompt: Prompt, bad: Any) -> None:
    if len(prompt.tools) > MAX_TOOLS:
        bad("tools", f"must have at most {MAX_TOOLS} tools")
    names: set[str] = set()
    for index, tool in enumerate(prompt.tools[:MAX_TOOLS]):
        path = f"tools[{index}]"
        if not NAME_PATTERN.fullmatch(tool.name):
            bad(f"{path}.name", "must match ^[A-Za-z0-9_-]{1,64}$")
        elif tool.name in names:
            bad(f"{path}.name", f"repeats the tool name {tool.name!r}")
        names.add(tool.name)
        if _utf8_len(tool.description) > MAX_DESCRIPTION_BYTES:
            bad(f"{path}.description", f"must be at most {MAX_DESCRIPTION_BYTES} bytes")
        if tool.parameters is not None:
            schema_bytes = _schema_size(tool.parameters)
            if schema_bytes is None and tool.parameters:
                bad(f"{path}.parameters", "must be a JSON object")
            elif schema_bytes is not None and schema_bytes > MAX_SCHEMA_BYTES:
                bad(
                    f"{path}.parameters",
                    f"must be at most {MAX_SCHEMA_BYTES} bytes as JSON",
                )
    choice = prompt.tool_choice
    if choice is not None:
        if choice.function and choice.function not in names:
            bad(
                "tool_choice.function",
                f"names no tool of the request: {choice.function[:64]!r}",
            )
        if not prompt.tools and (
            choice.function or choice.mode is ToolChoiceMode.REQUIRED
        ):
            bad("tool_choice", "needs tools")
    if prompt.parallel_tool_calls is not None and not prompt.tools:
        bad("parallel_tool_calls", "needs tools")


# -- storage form


def prompt_bytes(prompt: Prompt) -> int:
    """The prompt's size: its texts, image URLs and tool-call arguments in UTF-8."""
    total = _utf8_len(prompt.instructions)
    for message in prompt.messages:
        for part in message.content:
            total += _utf8_len(part) if isinstance(part, str) else len(part.url)
        total += sum(_utf8_len(call.arguments) for call in message.tool_calls)
    return total


def prompt_to_json(prompt: Prompt) -> dict[str, Any]:
    """``prompt`` as plain JSON, for durable stores (batches, tickets)."""
    choice = prompt.tool_choice
    fmt = prompt.response_format
    return {
        "instructions": prompt.instructions,
        "messages": [
            {
                "role": message.role.value,
                "content": [
                    part
                    if isinstance(part, str)
                    else {
                        "image": part.url,
                        "detail": part.detail.value,
                        "width": part.width,
                        "height": part.height,
                    }
                    for part in message.content
                ],
                "tool_calls": [
                    [call.id, call.name, call.arguments] for call in message.tool_calls
                ],
                "tool_call_id": message.tool_call_id,
            }
            for message in prompt.messages
        ],
        "tools": [
            [tool.name, tool.description, tool.parameters, tool.strict]
            for tool in prompt.tools
        ],
        "tool_choice": None
        if choice is None
        else [choice.mode.value if choice.mode else None, choice.function],
        "parallel_tool_calls": prompt.parallel_tool_calls,
        "response_format": None
        if fmt is None
        else [fmt.kind.value, fmt.name, fmt.schema, fmt.strict, fmt.description],
        "reasoning_effort": None
        if prompt.reasoning_effort is None
        else prompt.reasoning_effort.value,
    }


def prompt_from_json(data: Mapping[str, Any]) -> Prompt:
    """The prompt :func:`prompt_to_json` wrote."""
    choice = data["tool_choice"]
    fmt = data["response_format"]
    effort = data["reasoning_effort"]
    return Prompt(
        instructions=data["instructions"],
        messages=tuple(
            Message(
                Role(message["role"]),
                tuple(
                    part
                    if isinstance(part, str)
                    else ImagePart(
                        part["image"],
                        ImageDetail(part["detail"]),
                        part["width"],
                        part["height"],
                    )
                    for part in message["content"]
                ),
                tuple(ToolCall(*call) for call in message["tool_calls"]),
                message["tool_call_id"],
            )
            for message in data["messages"]
        ),
        tools=tuple(Tool(*tool) for tool in data["tools"]),
        tool_choice=None
        if choice is None
        else ToolChoice(ToolChoiceMode(choice[0]) if choice[0] else None, choice[1]),
        parallel_tool_calls=data["parallel_tool_calls"],
        response_format=None
        if fmt is None
        else ResponseFormat(FormatKind(fmt[0]), fmt[1], fmt[2], fmt[3], fmt[4]),
        reasoning_effort=None if effort is None else ReasoningEffort(effort),
    )
