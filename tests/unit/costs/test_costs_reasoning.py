"""Reasoning tokens are output tokens, billed once; cached input at its own rate.

OpenAI's usage counts reasoning tokens inside ``output_tokens``
(``output_tokens_details.reasoning_tokens`` is a breakdown, not an addition). The
path is followed from OpenAI's response object to the booked cost: the gateway
reads the usage, sends it to the costs service, which prices it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from openai.types.responses import Response
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb

from services.core.clock import FakeClock
from services.core.pricing import TokenUsage, load_pricing
from services.costs.adapters.sqlite import MEMORY, open_sqlite_store
from services.costs.domain import CostLedger
from services.costs.servicer import CostsServicer
from services.gateway.clients import usage_proto
from services.gateway.responses_api import read_answer

PRICING = load_pricing()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# gpt-4.1, micro-dollars per 1M tokens.
INPUT, CACHED, OUTPUT = 2_000_000, 500_000, 8_000_000


def _openai_response(
    input_tokens: int, cached: int, output_tokens: int, reasoning: int
) -> Response:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1_767_225_600,
            "model": "gpt-4.1",
            "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": "Yes.", "annotations": []}
                    ],
                },
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {
                    "cached_tokens": cached,
                    "cache_write_tokens": 0,
                },
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": input_tokens + output_tokens,
            },
        }
    )


@pytest.fixture
async def servicer() -> AsyncIterator[CostsServicer]:
    store = await open_sqlite_store(MEMORY)
    ledger = CostLedger(store, PRICING, FakeClock(), ZoneInfo("UTC"))
    yield CostsServicer(ledger)
    await ledger.close()
    await store.close()


def test_the_price_of_output_does_not_depend_on_how_much_was_reasoning() -> None:
    usage = TokenUsage(input_tokens=0, cached_input_tokens=0, output_tokens=500)

    # 500 output tokens at 8.00 dollars per 1M: 4,000 micro-dollars, whether 0 or
    # 300 or all 500 of them were reasoning; nothing else is priced.
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=False) == 4000
    assert 500 * OUTPUT // 1_000_000 == 4000


def test_cached_input_is_priced_at_the_cached_rate() -> None:
    usage = TokenUsage(input_tokens=1000, cached_input_tokens=400, output_tokens=500)

    assert (
        PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=False)
        == (600 * INPUT + 400 * CACHED + 500 * OUTPUT) // 1_000_000
    )
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=True) == 2700


async def test_reasoning_is_booked_once_from_openais_usage_to_the_ledger(
    servicer: CostsServicer,
) -> None:
    answer = read_answer(_openai_response(1000, 400, 500, reasoning=300))
    assert answer.usage.output_tokens == 500  # reasoning is inside, not added
    request = costs_pb.RecordRequest(
        request_id="req-reasoning",
        caller=common_pb.Caller(tenant_id="acme", service="chat", user_id="u1"),
        model="gpt-4.1",
        deployment="blue",
        usage=usage_proto(answer.usage),
    )
    assert request.usage.reasoning_tokens == 300

    response = await servicer.Record(request, cast(Any, None))

    # 600 x 2.00 + 400 x 0.50 + 500 x 8.00 per 1M tokens: 1,200 + 200 + 4,000.
    assert response.cost_micros == 5400
    assert not response.duplicate


async def test_a_reasoning_only_answer_costs_its_output_tokens_once(
    servicer: CostsServicer,
) -> None:
    answer = read_answer(_openai_response(10, 0, 1000, reasoning=1000))
    request = costs_pb.RecordRequest(
        request_id="req-all-reasoning",
        caller=common_pb.Caller(tenant_id="acme", service="chat", user_id="u1"),
        model="gpt-4.1",
        deployment="blue",
        usage=usage_proto(answer.usage),
    )

    response = await servicer.Record(request, cast(Any, None))

    # 10 x 2.00 + 1,000 x 8.00 per 1M tokens: 20 + 8,000 micro-dollars, not the
    # 16,020 of reasoning counted beside the output.
    assert response.cost_micros == 8020
