"""Input tokens of a whole prompt as OpenAI bills them, and trimming to a budget.

The count is exact o200k_base for every text, plus OpenAI's fixed overheads. The
overheads are the published chat-format ones (OpenAI's cookbook, "How to count
tokens"), which the upstream's usage reports confirm; the simulator implements
the same rule independently and the tests hold the two together:

| what | tokens |
|---|---|
| every request (the reply's priming) | 3 |
| each message (instructions count as a system message) | 3 + role + texts + images |
| each tool call on an assistant turn | 3 + name + arguments |
| an assistant turn with text and tool calls | 3 + role more (the calls' own turn) |
| tools, when any are given | 12, then per tool 7 + name + description + parameters |
| a json_schema response format | 8 + name + schema |
| a json_object response format | 3 |

Texts are counted as the Responses API body carries them
(:mod:`services.gateway.responses_api`): an assistant turn's text and a tool result
as one string, their parts joined by newlines; an assistant turn with both text and
tool calls as a message item followed by ``function_call`` items, which the
upstream reads as a second assistant turn. JSON (parameters, schemas) is counted in
canonical form. Images count by OpenAI's tile formula (:mod:`services.core.images`);
an https image whose size the caller did not give is an estimate, reconciled later
from the upstream's usage like every reservation.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.conversation import (
    FormatKind,
    ImagePart,
    Message,
    Prompt,
    Role,
    canonical_json,
    with_messages,
)
from services.core.images import image_dimensions, image_tokens
from services.core.tokens import count_tokens_batch, truncate_tokens

PRIMING_TOKENS = 3
MESSAGE_TOKENS = 3
TOOL_CALL_TOKENS = 3
TOOLS_TOKENS = 12
TOOL_TOKENS = 7
JSON_SCHEMA_TOKENS = 8
JSON_OBJECT_TOKENS = 3


@dataclass(frozen=True, slots=True)
class PromptTokens:
    """A prompt's input tokens.

    Attributes:
        fixed: tokens that do not depend on the conversation: the priming, the
            instructions, the tools and the response format.
        messages: each message's tokens, in order.
        estimated_images: images whose size was unknown, counted by estimate.
    """

    fixed: int
    messages: tuple[int, ...]
    estimated_images: int = 0

    @property
    def conversation(self) -> int:
        """Tokens of the messages alone."""
        return sum(self.messages)

    @property
    def total(self) -> int:
        """Every input token of the request."""
        return self.fixed + self.conversation


def image_part_tokens(part: ImagePart) -> tuple[int, bool]:
    """An image's input tokens, and whether they are exact (its size was known)."""
    size = (part.width, part.height) if part.width and part.height else None
    if size is None and part.url[:5].lower() == "data:":
        size = image_dimensions(part.url)
    if size is None:
        return image_tokens(None, None, part.detail.value), False
    return image_tokens(size[0], size[1], part.detail.value), True


def _sent_texts(message: Message) -> list[str]:
    """``message``'s texts as the request body carries them (see the module doc)."""
    if message.role in (Role.ASSISTANT, Role.TOOL):
        return [message.text]
    return [part for part in message.content if isinstance(part, str)]


def _calls_apart(message: Message) -> bool:
    """Whether ``message``'s tool calls travel as a turn of their own."""
    return message.role is Role.ASSISTANT and bool(message.text and message.tool_calls)


def count_prompt(prompt: Prompt) -> PromptTokens:
    """Count ``prompt``'s input tokens, every text in one batch."""
    texts: list[str] = []
    if prompt.instructions:
        texts += [Role.SYSTEM.value, prompt.instructions]
    for message in prompt.messages:
        texts.append(message.role.value)
        texts += _sent_texts(message)
        if _calls_apart(message):
            texts.append(message.role.value)
        for call in message.tool_calls:
            texts += [call.name, call.arguments]
    for tool in prompt.tools:
        texts += [tool.name, tool.description, canonical_json(tool.parameters or {})]
    fmt = prompt.response_format
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        texts += [fmt.name, canonical_json(fmt.schema or {})]
    counts = iter(count_tokens_batch(texts))

    fixed = PRIMING_TOKENS
    if prompt.instructions:
        fixed += MESSAGE_TOKENS + next(counts) + next(counts)
    per_message: list[int] = []
    estimated = 0
    for message in prompt.messages:
        tokens = MESSAGE_TOKENS + next(counts)
        tokens += sum(next(counts) for _ in _sent_texts(message))
        for part in message.images:
            image, exact = image_part_tokens(part)
            tokens += image
            estimated += not exact
        if _calls_apart(message):
            tokens += MESSAGE_TOKENS + next(counts)
        for _ in message.tool_calls:
            tokens += TOOL_CALL_TOKENS + next(counts) + next(counts)
        per_message.append(tokens)
    if prompt.tools:
        fixed += TOOLS_TOKENS
        for _ in prompt.tools:
            fixed += TOOL_TOKENS + next(counts) + next(counts) + next(counts)
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        fixed += JSON_SCHEMA_TOKENS + next(counts) + next(counts)
    elif fmt is not None and fmt.kind is FormatKind.JSON_OBJECT:
        fixed += JSON_OBJECT_TOKENS
    return PromptTokens(fixed, tuple(per_message), estimated)


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    """A prompt cut to its conversation budget."""

    prompt: Prompt
    tokens: PromptTokens
    dropped_tokens: int
    dropped_messages: int


def _drop_units(messages: tuple[Message, ...], pinned_from: int) -> list[list[int]]:
    """Messages before ``pinned_from`` that may go, grouped so none goes alone.

    System and developer messages stay. An assistant turn with tool calls and the
    tool messages answering it form one group: a tool call never loses its result,
    and a result never loses its call. The results need not follow the call at
    once (a user turn may come between them, as validation allows).
    """
    groups: list[list[int]] = []
    grouped: set[int] = set()
    for index in range(pinned_from):
        message = messages[index]
        if index in grouped or message.role in (Role.SYSTEM, Role.DEVELOPER):
            continue
        group = [index]
        if message.tool_calls:
            calls = {call.id for call in message.tool_calls}
            for later in range(index + 1, len(messages)):
                answered = messages[later].tool_call_id
                if messages[later].role is Role.TOOL and answered in calls:
                    calls.discard(answered)  # an id may be reused once answered
                    group.append(later)
            if group[-1] >= pinned_from:
                break  # the group reaches into what must stay
        grouped.update(group)
        groups.append(group)
    return groups


def fit_conversation(prompt: Prompt, tokens: PromptTokens, cap: int) -> FittedPrompt:
    """Cut the conversation to at most ``cap`` tokens (0: no cap).

    The oldest turns go first, whole, never a system or developer message and never
    the last user message or what follows it. When that is not enough, the last user
    message's text is cut by tokens, keeping its beginning.
    """
    if cap <= 0 or tokens.conversation <= cap:
        return FittedPrompt(prompt, tokens, 0, 0)
    messages = prompt.messages
    last_user = prompt.last_user_index
    pinned_from = len(messages) if last_user is None else last_user
    total = tokens.conversation
    dropped: set[int] = set()
    for group in _drop_units(messages, pinned_from):
        if total <= cap:
            break
        dropped.update(group)
        total -= sum(tokens.messages[i] for i in group)
    kept = tuple(m for i, m in enumerate(messages) if i not in dropped)
    fitted = with_messages(prompt, kept)
    if total > cap and last_user is not None:
        text = messages[last_user].text
        text_tokens = count_tokens_batch([text])[0]
        keep = max(0, text_tokens - (total - cap))
        fitted = fitted.replace_last_user_text(truncate_tokens(text, keep).text)
    fitted_tokens = count_prompt(fitted) if fitted is not prompt else tokens
    return FittedPrompt(
        fitted,
        fitted_tokens,
        tokens.total - fitted_tokens.total,
        len(dropped),
    )
