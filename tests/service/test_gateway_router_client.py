"""What the gateway's router client puts on the wire.

A real ``grpc.aio`` server on a loopback port stands in for the router and keeps
each RouteRequest it is sent, so the test reads exactly what the router would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.core.breaker import BreakerConfig, CircuitBreaker
from services.core.clock import FakeClock
from services.core.conversation import Message, Prompt, Role
from services.core.tokens import count_tokens
from services.gateway.clients import (
    PREVIOUS_INPUT_CHARS,
    DownstreamClient,
    RouterClient,
)
from services.gateway.domain import (
    Principal,
)
from tests.chat_requests import chat_request

PRINCIPAL = Principal(tenant_id="acme", service="chat", user_id="u1", user_tier="paid")
TEXT = "Prove that there are infinitely many primes, then analyse the proof."
REQUEST = chat_request(TEXT, "Be brief.", model="auto")


class _KeepingRouter(router_pb2_grpc.RouterServiceServicer):
    def __init__(self) -> None:
        self.requests: list[router_pb.RouteRequest] = []

    async def Route(  # noqa: N802 (the RPC's name)
        self,
        request: router_pb.RouteRequest,
        context: grpc.aio.ServicerContext[
            router_pb.RouteRequest, router_pb.RouteResponse
        ],
    ) -> router_pb.RouteResponse:
        self.requests.append(request)
        return router_pb.RouteResponse(
            model="gpt-4.1-mini", deployment="stable", lane=router_pb.LANE_SYNC
        )


@pytest.fixture
async def router() -> AsyncIterator[tuple[_KeepingRouter, RouterClient]]:
    servicer = _KeepingRouter()
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        breaker = CircuitBreaker("router", BreakerConfig(), FakeClock())
        client = RouterClient(
            DownstreamClient("router", "", breaker, 5.0, channel=channel)
        )
        yield servicer, client
    await server.stop(None)


async def test_auto_sends_the_exact_tokens_of_the_last_user_text(
    router: tuple[_KeepingRouter, RouterClient],
) -> None:
    servicer, client = router

    await client.route("req-1", PRINCIPAL, REQUEST, input_tokens=40)

    (sent,) = servicer.requests
    assert sent.input == TEXT
    assert sent.HasField("input_text_tokens")
    assert sent.input_text_tokens == count_tokens(TEXT)
    assert sent.input_tokens == 40


@pytest.mark.parametrize("model", ["", "gpt-4.1-mini"])
async def test_a_request_the_router_does_not_classify_carries_no_count(
    router: tuple[_KeepingRouter, RouterClient], model: str
) -> None:
    servicer, client = router

    await client.route(
        "req-1", PRINCIPAL, dataclasses.replace(REQUEST, model=model), input_tokens=40
    )

    (sent,) = servicer.requests
    assert not sent.HasField("input_text_tokens")
    assert sent.previous_input == ""


async def test_auto_sends_the_start_of_the_user_message_before_the_last(
    router: tuple[_KeepingRouter, RouterClient],
) -> None:
    servicer, client = router
    code = "def push(item):\n    stack.append(item)\n" * 200  # 8,000 characters
    conversation = Prompt(
        messages=(
            Message(Role.USER, (code,)),
            Message(Role.ASSISTANT, ("Looks fine.",)),
            Message(Role.USER, ("now make it thread-safe",)),
        )
    )

    await client.route(
        "req-1",
        PRINCIPAL,
        dataclasses.replace(REQUEST, prompt=conversation),
        input_tokens=40,
    )
    await client.route("req-2", PRINCIPAL, REQUEST, input_tokens=40)

    first, lone = servicer.requests
    assert first.input == "now make it thread-safe"
    # The classifier reads only the start of the context; the rest stays here.
    assert first.previous_input == code[:PREVIOUS_INPUT_CHARS]
    assert lone.previous_input == ""
