"""Routing ``auto`` requests by their conversation: what the gateway reports of a
prompt's shape keeps tools, schemas, images and tool results off the economy tier."""

from __future__ import annotations

import dataclasses

import pytest

from services.core.clock import FakeClock
from services.core.conversation import (
    FormatKind,
    ImagePart,
    Message,
    Prompt,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
)
from services.core.tokens import count_tokens
from services.gateway.clients import conversation_shape
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import (
    ConversationShape,
    Router,
    RouteRequest,
)
from services.router.enums import Complexity, Priority, RequestType
from services.router.table import load_routing_table
from tests.unit.router.encoder_router import router_with_shipped_encoder

TRIVIAL = "thanks, that fixed it"
HARD = (
    "Analyze the trade-offs of event sourcing versus CRUD for a payments ledger "
    "with strict auditability, design the migration, and prove that no "
    "transaction is lost or applied twice during the cut-over."
)
CALL = ToolCall("call_1", "lookup_order", '{"id": 42}')
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
PNG = "data:image/png;base64,iVBORw0KGgo="


def _router() -> Router:
    return Router(
        load_routing_table(None),
        InMemoryControlStore(),
        InMemoryMetricsStore(),
        load_complexity_model(),
        FakeClock(),
    )


def _shape(prompt: Prompt) -> ConversationShape:
    """The shape as the gateway sends it and the router's servicer reads it."""
    sent = conversation_shape(prompt)
    if sent is None:
        return ConversationShape()
    return ConversationShape(
        **{
            field.name: getattr(sent, field.name)
            for field in dataclasses.fields(ConversationShape)
        }
    )


async def _route(prompt: Prompt) -> tuple[str, Complexity]:
    text = prompt.last_user_text
    decision = await _router().route(
        RouteRequest(
            tenant_id="acme",
            user_id="user_0001",
            priority=Priority.STANDARD,
            request_type=RequestType.CHAT,
            requested_model="auto",
            input=text,
            input_tokens=count_tokens(text),
            max_output_tokens=0,
            conversation=_shape(prompt),
        )
    )
    return decision.tier, decision.complexity


def _earlier_turns(count: int) -> tuple[Message, ...]:
    turns: list[Message] = []
    for index in range(count):
        turns.append(Message(Role.USER, (f"Step {index}: it still fails.",)))
        turns.append(Message(Role.ASSISTANT, (f"Try fix number {index}.",)))
    return tuple(turns)


async def test_a_trivial_lone_message_goes_to_the_economy_tier() -> None:
    assert await _route(Prompt.of_text(TRIVIAL)) == ("economy", Complexity.TRIVIAL)


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param(
            Prompt(messages=(Message(Role.USER, (TRIVIAL,)),), tools=(Tool("lookup"),)),
            id="tools offered",
        ),
        pytest.param(
            Prompt(
                messages=(Message(Role.USER, (TRIVIAL,)),),
                response_format=ResponseFormat(FormatKind.JSON_SCHEMA, "ok", SCHEMA),
            ),
            id="a json schema",
        ),
        pytest.param(
            Prompt(messages=(Message(Role.USER, (TRIVIAL, ImagePart(PNG))),)),
            id="an image",
        ),
        pytest.param(
            Prompt(
                messages=(
                    Message(Role.USER, ("Where is order 42?",)),
                    Message(Role.ASSISTANT, tool_calls=(CALL,)),
                    Message(
                        Role.TOOL, ('{"status": "shipped"}',), tool_call_id="call_1"
                    ),
                    Message(Role.USER, (TRIVIAL,)),
                ),
            ),
            id="tool results to use",
        ),
    ],
)
async def test_the_shape_lifts_a_trivial_text_to_at_least_the_standard_tier(
    prompt: Prompt,
) -> None:
    assert await _route(prompt) == ("standard", Complexity.SIMPLE)


async def test_the_shape_never_lowers_a_hard_request() -> None:
    prompt = Prompt(messages=(Message(Role.USER, (HARD,)),), tools=(Tool("lookup"),))

    assert await _route(prompt) == ("premium", Complexity.COMPLEX)


@pytest.mark.parametrize("earlier", [4, 10])
async def test_a_long_text_conversation_alone_is_no_floor(earlier: int) -> None:
    # Deliberate (services/router/complexity.py, conversation_floor): the learned
    # model weighs the earlier turns itself, and a trivial last turn after many
    # text turns stays on the economy tier.
    prompt = Prompt(messages=(*_earlier_turns(earlier), Message(Role.USER, (TRIVIAL,))))
    assert _shape(prompt).earlier_user_turns == earlier

    assert await _route(prompt) == ("economy", Complexity.TRIVIAL)


MULTI_STEP = (
    "Using the tools, pull the last 90 days of orders for every EU customer, "
    "reconcile them against the payment provider's settlements, work out which "
    "discrepancies come from currency rounding and which from refunds issued "
    "twice, then draft a remediation plan that keeps us compliant with PSD2."
)


async def test_a_multi_step_request_with_tools_gets_premium_via_the_encoder() -> None:
    prompt = Prompt(
        messages=(Message(Role.USER, (MULTI_STEP,)),),
        tools=(Tool("query_orders"), Tool("query_settlements")),
    )
    async with router_with_shipped_encoder() as router:
        decision = await router.route(
            RouteRequest(
                tenant_id="acme",
                user_id="user_0001",
                priority=Priority.STANDARD,
                request_type=RequestType.CHAT,
                requested_model="auto",
                input=MULTI_STEP,
                input_tokens=count_tokens(MULTI_STEP),
                max_output_tokens=0,
                conversation=_shape(prompt),
            )
        )

    assert (decision.tier, decision.complexity) == ("premium", Complexity.COMPLEX)
