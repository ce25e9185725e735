"""What the gateway tells the router about a conversation's shape."""

from __future__ import annotations

from tollgate.router.v1 import router_pb2 as router_pb

from services.core.conversation import (
    FormatKind,
    ImagePart,
    Message,
    Prompt,
    ReasoningEffort,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
)
from services.gateway.clients import conversation_shape

CALL = ToolCall("call_1", "lookup", "{}")


def test_a_single_plain_message_sends_no_shape() -> None:
    assert conversation_shape(Prompt.of_text("hi", "Be brief.")) is None


def test_an_agent_conversation_is_described_without_its_text() -> None:
    prompt = Prompt(
        messages=(
            Message(Role.USER, ("Find order 42.", ImagePart("https://x.test/a.png"))),
            Message(Role.ASSISTANT, tool_calls=(CALL,)),
            Message(Role.TOOL, ("shipped",), tool_call_id="call_1"),
            Message(Role.USER, ("When does it arrive?",)),
        ),
        tools=(Tool("lookup"), Tool("cancel")),
        response_format=ResponseFormat(FormatKind.JSON_SCHEMA, "eta", {"type": "x"}),
        reasoning_effort=ReasoningEffort.HIGH,
    )

    assert conversation_shape(prompt) == router_pb.ConversationShape(
        messages=4,
        earlier_user_turns=1,
        tools=2,
        json_schema=True,
        images=1,
        tool_exchanges=2,
        reasoning=True,
    )
