"""One request end to end through five separately running services and the simulator."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.core.conversation import Prompt
from services.core.prompt_tokens import count_prompt
from services.core.tokens import count_tokens
from services.devsuite import Suite
from tests.e2e.conftest import E2E_KEY, start_test_suite
from tests.grpc_helpers import error_details, trailers

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
# gpt-4.1-mini list prices in micro-dollars per 1M tokens (input, output).
MINI_PRICES = (400_000, 1_600_000)


def simulator_requests(suite: Suite) -> int:
    url = f"http://127.0.0.1:{suite.ports['simulator']}/_sim/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(json.load(response)["requests"])


@pytest.fixture
async def gateway(suite: Suite) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


async def test_answer_with_usage_and_cost_then_exact_hit_without_upstream_call(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    request = gateway_pb.CreateResponseRequest(input="How do token buckets refill?")
    before = simulator_requests(suite)

    first = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    assert simulator_requests(suite) == before + 1
    assert first.output_text.startswith('Simulated answer to "How do token buckets')
    assert first.model == "gpt-4.1-mini"
    assert first.cache_status == common_pb.CACHE_STATUS_MISS
    # The simulator bills what the gateway counted: o200k plus OpenAI's overheads.
    assert first.usage.input_tokens == count_prompt(Prompt.of_text(request.input)).total
    assert first.usage.output_tokens == count_tokens(first.output_text)
    numerator = (
        first.usage.input_tokens * MINI_PRICES[0]
        + first.usage.output_tokens * MINI_PRICES[1]
    )
    assert first.cost_micros == -(-numerator // 1_000_000)
    assert first.currency_code == "USD"
    assert first.request_id.startswith("req_")

    second = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    assert simulator_requests(suite) == before + 1, "a cache hit must not go upstream"
    assert second.cache_status == common_pb.CACHE_STATUS_EXACT
    assert second.similarity == 1.0
    assert second.output_text == first.output_text
    assert second.usage == first.usage
    assert second.cost_micros == 0
    assert second.request_id != first.request_id
    assert not first.HasField("cache_age")
    assert 0 <= second.cache_age.ToTimedelta().total_seconds() < 30


async def test_a_stable_long_prefix_hits_the_upstream_prompt_cache_at_the_cached_rate(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    instructions = "You answer questions about our billing policy. " * 150
    replies = [
        await gateway.CreateResponse(
            gateway_pb.CreateResponseRequest(
                input=f"question number {n}",
                instructions=instructions,
                request_type=common_pb.REQUEST_TYPE_SUMMARIZE,  # a large input cap
            ),
            metadata=AUTH,
            timeout=30,
        )
        for n in range(2)
    ]
    assert replies[0].usage.cached_input_tokens == 0
    usage = replies[1].usage
    assert usage.cached_input_tokens >= 1024
    # gpt-4.1-mini: input 0.40, cached input 0.10, output 1.60 $ per 1M tokens.
    numerator = (
        (usage.input_tokens - usage.cached_input_tokens) * 400_000
        + usage.cached_input_tokens * 100_000
        + usage.output_tokens * 1_600_000
    )
    assert replies[1].cost_micros == -(-numerator // 1_000_000)


async def test_request_id_from_metadata_is_used(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    reply = await gateway.CreateResponse(
        gateway_pb.CreateResponseRequest(input="Which id is mine?"),
        metadata=(*AUTH, ("x-request-id", "req_client_chosen_1")),
        timeout=30,
    )
    assert reply.request_id == "req_client_chosen_1"


async def test_bad_input_gets_invalid_argument_with_field_violations(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.CreateResponseRequest(input="", max_output_tokens=-1)
    request.temperature = 3.5
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.CreateResponse(request, metadata=AUTH, timeout=30)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(raised.value)
    fields = {v.field for v in details["google.rpc.BadRequest"].field_violations}
    assert fields == {"input", "max_output_tokens", "temperature"}
    assert details["google.rpc.ErrorInfo"].domain == "gateway.tollgate"


async def test_missing_or_unknown_key_is_unauthenticated(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.CreateResponseRequest(input="hello")
    for metadata in ((), (("authorization", "Bearer not-a-key"),)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gateway.CreateResponse(request, metadata=metadata, timeout=30)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_denied_request_carries_retry_info_quota_failure_and_retry_after(
    tmp_path: Path,
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        "default_tier: paid\ntiers:\n  paid:\n    rpm: 2\n", encoding="utf-8"
    )
    suite = start_test_suite(
        tmp_path / "state", {"TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits)}
    )
    try:
        async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            request = gateway_pb.CreateResponseRequest(input="one more, please")
            for _ in range(2):
                await gateway.CreateResponse(request, metadata=AUTH, timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await gateway.CreateResponse(request, metadata=AUTH, timeout=30)
    finally:
        suite.stop()
    error = raised.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error_details(error)
    delay = details["google.rpc.RetryInfo"].retry_delay.ToTimedelta().total_seconds()
    assert 0 < delay <= 30  # 2 per minute: one request refills in 30 s
    violation = details["google.rpc.QuotaFailure"].violations[0]
    assert violation.subject.startswith("user:")
    assert details["google.rpc.ErrorInfo"].reason == "RATE_LIMITED"
    retry_after = trailers(error)["retry-after"]
    assert isinstance(retry_after, str) and 1 <= int(retry_after) <= 30


async def test_gateway_keeps_answering_without_the_cache_and_opens_its_breaker(
    tmp_path: Path,
) -> None:
    suite = start_test_suite(
        tmp_path / "state",
        {"TOLLGATE_GATEWAY_DOWNSTREAM_BREAKER__FAILURE_THRESHOLD": "2"},
    )
    try:
        suite.stop_service("cache", signal.SIGKILL)
        async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            replies = [
                await gateway.CreateResponse(
                    gateway_pb.CreateResponseRequest(input=f"question {n}"),
                    metadata=AUTH,
                    timeout=30,
                )
                for n in range(3)
            ]
            status = await gateway.GetStatus(
                gateway_pb.GetStatusRequest(), metadata=AUTH, timeout=30
            )
    finally:
        suite.stop()
    assert all(r.output_text.startswith("Simulated answer") for r in replies)
    assert {r.cache_status for r in replies} == {common_pb.CACHE_STATUS_SKIPPED}
    breakers = {b.name: b.state for b in status.breakers}
    assert breakers["cache"] == gateway_pb.BREAKER_STATE_OPEN
    assert breakers["ratelimit"] == gateway_pb.BREAKER_STATE_CLOSED
