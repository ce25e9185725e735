"""The gateway over gRPC, in front of the real downstream services and the simulator."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import grpc
import pytest
import structlog
import yaml
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.core.clock import Clock, FakeClock
from services.core.conversation import Prompt
from services.core.metrics import REGISTRY
from services.core.prompt_tokens import count_prompt
from services.core.server import RunningServer
from services.core.tokens import count_tokens, truncate_tokens
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key
from services.gateway.config import GatewaySettings
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import (
    ADMIN_KEY_SHA256S,
    admin_channel,
    error_details,
    trailers,
)

API_KEY = "tg-service-test-key"
TRIAL_KEY = "tg-service-test-trial-key"
QUESTION = "What does a gateway in front of an API do?"
UPSTREAM_MAX_RETRIES = 1
DOWNSTREAMS = ["ratelimit", "cache", "router", "costs"]
# A hard daily budget of the tenant: room for a few worst-case gpt-4.1-mini answers.
BUDGET_MICROS = 3_000


@dataclass(frozen=True)
class Downstreams:
    """Addresses of the four downstream services."""

    ratelimit: str
    cache: str
    router: str
    costs: str


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(port=0, latency_ms=0)
    async with await start_simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def downstreams(serve_app: ServeApp, tmp_path: Path) -> Downstreams:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        yaml.safe_dump(
            {"tiers": {"free": {"rpm": 20}, "paid": {"rpm": 100}, "trial": {"rpm": 1}}}
        ),
        encoding="utf-8",
    )
    ratelimit = await serve_app(
        await build_ratelimit(RateLimitSettings(port=0, limits_file=limits))
    )
    cache = await serve_app(await build_cache(CacheSettings(port=0)))
    router = await serve_app(await build_router(RouterSettings(port=0)))
    costs = await serve_app(
        await build_costs(
            CostsSettings(port=0, database_path=tmp_path / "costs.sqlite3")
        )
    )
    return Downstreams(ratelimit.address, cache.address, router.address, costs.address)


def _keys_file(path: Path) -> Path:
    keys = [
        {
            "sha256": hash_key(API_KEY),
            "tenant_id": "acme",
            "service": "chat",
            "user_id": "alice",
            "user_tier": "paid",
        },
        {"sha256": hash_key(TRIAL_KEY), "tenant_id": "acme", "user_tier": "trial"},
    ]
    path.write_text(yaml.safe_dump({"keys": keys}), encoding="utf-8")
    return path


async def _serve_gateway(
    serve_app: ServeApp,
    downstreams: Downstreams,
    sim: RunningSimulator,
    tmp_path: Path,
    clock: Clock | None = None,
    **overrides: Any,
) -> RunningServer:
    settings = GatewaySettings(
        http_port=None,  # the HTTP door has its own tests
        port=0,
        ratelimit_address=downstreams.ratelimit,
        cache_address=downstreams.cache,
        router_address=downstreams.router,
        costs_address=overrides.pop("costs_address", downstreams.costs),
        keys_file=_keys_file(tmp_path / "keys.yaml"),
        openai_base_url=sim.base_url,
        outbox_path=tmp_path / "gateway-outbox.sqlite3",
        upstream_max_retries=UPSTREAM_MAX_RETRIES,
        **overrides,
    )
    return await serve_app(await build_gateway(settings, clock))


@pytest.fixture
async def gateway(
    serve_app: ServeApp, downstreams: Downstreams, sim: RunningSimulator, tmp_path: Path
) -> RunningServer:
    return await _serve_gateway(serve_app, downstreams, sim, tmp_path)


@pytest.fixture
async def stub(
    gateway: RunningServer,
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


@pytest.fixture
async def admin(sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.root_url) as session:
        yield session


def _auth(key: str = API_KEY) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _request(**fields: Any) -> gateway_pb.CreateResponseRequest:
    return gateway_pb.CreateResponseRequest(**{"input": QUESTION, **fields})


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(error)
    info = details["google.rpc.ErrorInfo"]
    assert (info.domain, info.reason) == ("gateway.tollgate", "INVALID_ARGUMENT")
    return {
        v.field: v.description
        for v in details["google.rpc.BadRequest"].field_violations
    }


async def _sim_stats(admin: aiohttp.ClientSession) -> dict[str, Any]:
    async with admin.get("/_sim/stats") as response:
        stats: dict[str, Any] = await response.json()
    return stats


# -- answers


async def test_create_response_answers_through_every_service(
    stub: gateway_pb2_grpc.GatewayServiceStub, admin: aiohttp.ClientSession
) -> None:
    call = stub.CreateResponse(
        _request(instructions="Answer in one short paragraph."),
        metadata=(*_auth(), ("x-request-id", "req-gateway-service-1")),
    )

    response = await call

    assert dict(await call.trailing_metadata())["x-request-id"] == (
        "req-gateway-service-1"
    )
    assert response.request_id == "req-gateway-service-1"
    assert response.output_text.startswith("Simulated answer to")
    assert response.model == "gpt-4.1-mini"
    assert response.deployment == "stable"
    assert response.cache_status == common_pb.CACHE_STATUS_MISS
    assert response.degradation_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    stats = await _sim_stats(admin)
    assert response.usage.input_tokens == stats["input_tokens"] > 0
    assert response.usage.output_tokens == stats["output_tokens"] > 0
    assert response.cost_micros > 0
    assert response.currency_code == "USD"
    assert not response.input_truncated
    assert not response.output_truncated


async def test_a_request_id_is_made_when_none_is_sent(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    call = stub.CreateResponse(_request(), metadata=_auth())

    response = await call

    assert response.request_id
    assert dict(await call.trailing_metadata())["x-request-id"] == response.request_id


async def test_input_over_the_request_types_cap_is_truncated_by_tokens(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    text = " ".join(f"label{n}" for n in range(800))
    cap = 500  # the classify budget of the default routing table
    # The cap bounds the conversation, the message's own overhead included.
    overhead = count_prompt(Prompt.of_text("")).conversation
    kept = truncate_tokens(text, cap - overhead).text

    response = await stub.CreateResponse(
        _request(input=text, request_type=common_pb.REQUEST_TYPE_CLASSIFY),
        metadata=_auth(),
    )

    assert response.input_truncated
    assert response.input_tokens_dropped == count_tokens(text) - count_tokens(kept)


async def test_stream_response_streams_deltas_between_start_and_completion(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    events = [
        event
        async for event in stub.StreamResponse(
            gateway_pb.StreamResponseRequest(input=QUESTION), metadata=_auth()
        )
    ]

    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "started"
    assert kinds[-1] == "completed"
    assert set(kinds[1:-1]) == {"delta"}
    started, completed = events[0].started, events[-1].completed
    assert started.model == "gpt-4.1-mini"
    assert started.cache_status == common_pb.CACHE_STATUS_MISS
    text = "".join(event.delta.text for event in events[1:-1])
    assert text.startswith("Simulated answer to")
    assert completed.usage.output_tokens == count_tokens(text)
    assert completed.cost_micros > 0
    assert completed.currency_code == "USD"


async def test_a_broken_stream_ends_unavailable_after_its_deltas(
    stub: gateway_pb2_grpc.GatewayServiceStub, admin: aiohttp.ClientSession
) -> None:
    async with admin.post(
        "/_sim/faults", json={"kind": "broken_stream", "count": 1}
    ) as scheduled:
        assert scheduled.status == 200
    kinds: list[str | None] = []

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for event in stub.StreamResponse(
            gateway_pb.StreamResponseRequest(input=QUESTION), metadata=_auth()
        ):
            kinds.append(event.WhichOneof("event"))

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_details(raised.value)["google.rpc.ErrorInfo"]
    assert info.reason == "UPSTREAM_STREAM_BROKEN"
    assert info.metadata["partialOutput"] == "true"
    assert kinds[0] == "started"
    assert "delta" in kinds
    assert "completed" not in kinds


# -- validation


def _metadata_pairs(count: int) -> dict[str, str]:
    return {f"k{n}": "v" for n in range(count)}


NAN = math.nan
INVALID_REQUESTS: list[tuple[str, Callable[[], gateway_pb.CreateResponseRequest]]] = [
    ("input", lambda: _request(input="")),
    ("input", lambda: _request(input=" \n\t ")),
    ("input", lambda: _request(input="x" * (1024 * 1024 + 1))),
    ("instructions", lambda: _request(instructions="x" * (256 * 1024 + 1))),
    ("model", lambda: _request(model="m" * 129)),
    ("priority", lambda: _request(priority=cast(common_pb.Priority, 99))),
    ("request_type", lambda: _request(request_type=cast(common_pb.RequestType, 42))),
    ("temperature", lambda: _request(temperature=2.5)),
    ("temperature", lambda: _request(temperature=-0.1)),
    ("temperature", lambda: _request(temperature=NAN)),
    ("temperature", lambda: _request(temperature=math.inf)),
    ("max_output_tokens", lambda: _request(max_output_tokens=-1)),
    ("max_output_tokens", lambda: _request(max_output_tokens=128_001)),
    ("metadata", lambda: _request(metadata=_metadata_pairs(17))),
    ("metadata['" + "k" * 32 + "']", lambda: _request(metadata={"k" * 65: "v"})),
    ("metadata['']", lambda: _request(metadata={"": "v"})),
    ("metadata['team']", lambda: _request(metadata={"team": "v" * 513})),
    ("user_id", lambda: _request(user_id="u" * 129)),
    ("top_p", lambda: _request(top_p=1.5)),
    ("safety_identifier", lambda: _request(safety_identifier="s" * 65)),
    # The conversation: each problem is named by its exact path.
    ("input", lambda: _request(messages=[_user("hi")])),
    ("messages[1].role", lambda: _conversation(_user("a"), common_pb.Message())),
    (
        "messages[1].role",
        lambda: _conversation(
            _user("a"), common_pb.Message(role=cast(common_pb.Role, 9))
        ),
    ),
    (
        "messages[1].tool_call_id",
        lambda: _conversation(
            _user("a"),
            common_pb.Message(
                role=common_pb.ROLE_TOOL,
                tool_call_id="call_none",
                content=[common_pb.ContentPart(text="42")],
            ),
        ),
    ),
    (
        "messages[3].tool_call_id",
        lambda: _conversation(
            _user("a"),
            _assistant_calls("call_1"),
            _tool_result("call_1"),
            _tool_result("call_1"),
        ),
    ),
    (
        "messages[0].content[0]",
        lambda: _conversation(_user_parts(common_pb.ContentPart())),
    ),
    (
        "messages[0].content[1].image.url",
        lambda: _conversation(
            _user_parts(
                common_pb.ContentPart(text="what is this?"),
                common_pb.ContentPart(
                    image=common_pb.ImageInput(url="ftp://example.com/x.png")
                ),
            )
        ),
    ),
    ("tools[0].name", lambda: _request(tools=[common_pb.Tool(name="get weather")])),
    ("tools[0].name", lambda: _request(tools=[common_pb.Tool(name="x" * 65)])),
    (
        "tools",
        lambda: _request(tools=[common_pb.Tool(name=f"t{n}") for n in range(129)]),
    ),
    (
        "tool_choice.function",
        lambda: _request(
            tools=[common_pb.Tool(name="lookup")],
            tool_choice=common_pb.ToolChoice(function="other"),
        ),
    ),
    (
        "response_format.json_schema.schema",
        lambda: _request(
            response_format=common_pb.ResponseFormat(
                json_schema=common_pb.JsonSchemaFormat(name="answer")
            )
        ),
    ),
    (
        "messages[0].content[0].text",
        lambda: _conversation(_user("x" * (1024 * 1024 + 1))),
    ),
]


def _user(text: str) -> common_pb.Message:
    return _user_parts(common_pb.ContentPart(text=text))


def _user_parts(*parts: common_pb.ContentPart) -> common_pb.Message:
    return common_pb.Message(role=common_pb.ROLE_USER, content=parts)


def _assistant_calls(call_id: str) -> common_pb.Message:
    return common_pb.Message(
        role=common_pb.ROLE_ASSISTANT,
        tool_calls=[common_pb.ToolCall(id=call_id, name="lookup", arguments="{}")],
    )


def _tool_result(call_id: str) -> common_pb.Message:
    return common_pb.Message(
        role=common_pb.ROLE_TOOL,
        tool_call_id=call_id,
        content=[common_pb.ContentPart(text="42")],
    )


def _conversation(*messages: common_pb.Message) -> gateway_pb.CreateResponseRequest:
    return gateway_pb.CreateResponseRequest(messages=messages)


@pytest.mark.parametrize(
    ("field", "make"),
    INVALID_REQUESTS,
    ids=[f"{field}-{n}" for n, (field, _) in enumerate(INVALID_REQUESTS)],
)
async def test_invalid_requests_name_the_bad_field(
    stub: gateway_pb2_grpc.GatewayServiceStub,
    admin: aiohttp.ClientSession,
    field: str,
    make: Callable[[], gateway_pb.CreateResponseRequest],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateResponse(make(), metadata=_auth())

    assert list(_violations(raised.value)) == [field]
    assert (await _sim_stats(admin))["requests"] == 0


async def test_the_limits_themselves_are_valid(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    response = await stub.CreateResponse(
        _request(
            temperature=2.0,
            max_output_tokens=128_000,
            metadata={"k" * 64: "v" * 512, **_metadata_pairs(15)},
            user_id="u" * 128,
        ),
        metadata=_auth(),
    )

    assert response.output_text


async def test_every_invalid_field_is_reported_at_once(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateResponse(
            _request(
                input="", temperature=9.0, max_output_tokens=-5, user_id="u" * 200
            ),
            metadata=_auth(),
        )

    assert set(_violations(raised.value)) == {
        "input",
        "temperature",
        "max_output_tokens",
        "user_id",
    }


async def test_an_unknown_model_is_invalid_on_the_model_field(
    stub: gateway_pb2_grpc.GatewayServiceStub, admin: aiohttp.ClientSession
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateResponse(_request(model="gpt-99-ultra"), metadata=_auth())

    assert list(_violations(raised.value)) == ["model"]
    assert (await _sim_stats(admin))["requests"] == 0


# -- authentication


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "API_KEY_MISSING"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "API_KEY_MISSING"),
        (_auth("tg-wrong-key"), "API_KEY_INVALID"),
    ],
)
async def test_requests_without_a_valid_key_are_unauthenticated(
    stub: gateway_pb2_grpc.GatewayServiceStub,
    metadata: tuple[tuple[str, str], ...],
    reason: str,
) -> None:
    for rpc in (
        stub.CreateResponse(_request(), metadata=metadata),
        stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rpc

        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        info = error_details(raised.value)["google.rpc.ErrorInfo"]
        assert (info.domain, info.reason) == ("gateway.tollgate", reason)


# -- rate limiting


async def test_a_denied_request_is_resource_exhausted_with_retry_and_quota(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    await stub.CreateResponse(_request(), metadata=_auth(TRIAL_KEY))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateResponse(_request(), metadata=_auth(TRIAL_KEY))

    error = raised.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error_details(error)
    assert details["google.rpc.ErrorInfo"].reason == "RATE_LIMITED"
    assert details["google.rpc.RetryInfo"].retry_delay.ToTimedelta().total_seconds() > 0
    [violation] = details["google.rpc.QuotaFailure"].violations
    assert violation.subject.startswith("user:")
    assert int(trailers(error)["retry-after"]) >= 1


# -- status and failures


async def test_get_status_lists_the_breakers(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    before = await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth())

    assert [b.name for b in before.breakers] == DOWNSTREAMS
    assert {b.state for b in before.breakers} == {gateway_pb.BREAKER_STATE_CLOSED}
    assert before.outbox_depth == 0
    assert before.version

    await stub.CreateResponse(_request(), metadata=_auth())
    after = await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth())

    states = {b.name: b.state for b in after.breakers}
    assert list(states) == [*DOWNSTREAMS, "upstream:gpt-4.1-mini"]
    assert set(states.values()) == {gateway_pb.BREAKER_STATE_CLOSED}
    assert after.degradation_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    admitted = {q.priority: q.admitted for q in after.queues}
    assert admitted[common_pb.PRIORITY_STANDARD] == 1
    assert sum(admitted.values()) == 1
    assert after.in_flight == 0


async def test_a_failing_upstream_is_unavailable_with_retry_info(
    stub: gateway_pb2_grpc.GatewayServiceStub, admin: aiohttp.ClientSession
) -> None:
    # Every attempt on every model of the ladder (gpt-4.1-mini, then gpt-4.1-nano).
    attempts = 2 * (UPSTREAM_MAX_RETRIES + 1)
    body = {"kind": "unavailable", "count": attempts}
    async with admin.post("/_sim/faults", json=body) as scheduled:
        assert scheduled.status == 200

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateResponse(_request(), metadata=_auth())

    error = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error_details(error)
    assert details["google.rpc.ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"
    assert details["google.rpc.RetryInfo"].retry_delay.seconds >= 1
    assert trailers(error)["retry-after"] == "1"
    assert (await _sim_stats(admin))["requests"] == attempts
    status = await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth())
    failures = {b.name: b.failure_count for b in status.breakers}
    assert failures["upstream:gpt-4.1-mini"] == failures["upstream:gpt-4.1-nano"] == 1


async def test_a_failing_model_fails_over_to_the_next_within_the_deadline(
    stub: gateway_pb2_grpc.GatewayServiceStub, admin: aiohttp.ClientSession
) -> None:
    body = {
        "kind": "unavailable",
        "count": UPSTREAM_MAX_RETRIES + 1,
        "model": "gpt-4.1-mini",
    }
    async with admin.post("/_sim/faults", json=body) as scheduled:
        assert scheduled.status == 200

    reply = await stub.CreateResponse(_request(), metadata=_auth(), timeout=30)

    assert reply.model == "gpt-4.1-nano"
    assert reply.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert (await _sim_stats(admin))["requests"] == UPSTREAM_MAX_RETRIES + 2


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


async def test_an_unreachable_ledger_outboxes_the_usage_and_still_answers(
    serve_app: ServeApp, downstreams: Downstreams, sim: RunningSimulator, tmp_path: Path
) -> None:
    gateway = await _serve_gateway(
        serve_app, downstreams, sim, tmp_path, costs_address=_unused_address()
    )

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await stub.CreateResponse(_request(), metadata=_auth())
        status = await stub.GetStatus(gateway_pb.GetStatusRequest(), metadata=_auth())

    assert response.output_text
    # The local estimate, by the ledger's own prices and rule (gpt-4.1-mini).
    usage = response.usage
    numerator = usage.input_tokens * 400_000 + usage.output_tokens * 1_600_000
    assert response.cost_micros == -(-numerator // 1_000_000) > 0
    assert status.outbox_depth == 1


async def test_prompts_answers_and_keys_never_reach_the_logs(
    serve_app: ServeApp, downstreams: Downstreams, sim: RunningSimulator, tmp_path: Path
) -> None:
    secret_input = "my card number is 4111-1111-1111-1111 please help"
    secret_instructions = "internal instructions: codename BLUEBIRD"
    gateway = await _serve_gateway(serve_app, downstreams, sim, tmp_path)

    with structlog.testing.capture_logs() as logs:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            reply = await stub.CreateResponse(
                _request(input=secret_input, instructions=secret_instructions),
                metadata=_auth(),
            )
            stream = stub.StreamResponse(
                gateway_pb.StreamResponseRequest(input=secret_input),
                metadata=_auth(),
            )
            async for _ in stream:
                pass
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.CreateResponse(
                    _request(input=secret_input), metadata=_auth("tg-wrong-secret")
                )

    logged = repr(logs)
    assert logs, "the request was logged (events, ids, numbers)"
    for secret in (
        "4111-1111",
        "BLUEBIRD",
        reply.output_text[:40],
        API_KEY,
        "tg-wrong-secret",
    ):
        assert secret not in logged


def _budget_checks() -> float:
    """CheckBudget calls the costs servers of this process have answered."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "tollgate_rpc_requests"
        for sample in metric.samples
        if sample.name == "tollgate_rpc_requests_total"
        and sample.labels.get("method", "").endswith("/CheckBudget")
    )


async def test_a_tenant_without_budgets_is_not_checked_until_the_ledger_says_so_again(
    serve_app: ServeApp, downstreams: Downstreams, sim: RunningSimulator, tmp_path: Path
) -> None:
    refresh_seconds = 30
    settings = CostsSettings(
        port=0,
        database_path=tmp_path / "unbudgeted-costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        budget_refresh_seconds=refresh_seconds,
    )
    costs = await serve_app(await build_costs(settings), settings)
    clock = FakeClock()
    gateway = await _serve_gateway(
        serve_app, downstreams, sim, tmp_path, clock, costs_address=costs.address
    )
    async with admin_channel(costs.address) as channel:
        ledger = costs_pb2_grpc.CostsServiceStub(channel)
        probe = costs_pb.CheckBudgetRequest(
            request_id="probe",
            caller=common_pb.Caller(tenant_id="acme"),
            model="gpt-4.1-mini",
        )
        for _ in range(500):  # until the costs replica's first read of budgets
            if (await ledger.CheckBudget(probe)).HasField("tenant_unbudgeted_for"):
                break
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(gateway.address) as gateway_channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
            checks = [_budget_checks()]
            for n in range(3):
                await stub.CreateResponse(
                    _request(input=f"Unbudgeted {n}?"), metadata=_auth()
                )
                checks.append(_budget_checks())
            await ledger.SetBudget(
                costs_pb.SetBudgetRequest(
                    budget=costs_pb.Budget(
                        scope=costs_pb.BudgetScope(
                            kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
                        ),
                        period=costs_pb.BUDGET_PERIOD_DAY,
                        limit_micros=1,
                        hard=True,
                    )
                )
            )
            # Within the interval the ledger gave, the tenant is still unchecked.
            within = await stub.CreateResponse(
                _request(input="Set meanwhile?"), metadata=_auth()
            )
            clock.advance(refresh_seconds)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateResponse(_request(input="After?"), metadata=_auth())

    # Only the first request asked the ledger; the others were allowed on its word.
    assert [c - checks[0] for c in checks] == [0, 1, 1, 1]
    assert within.output_text
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(refused.value)["google.rpc.ErrorInfo"].reason == (
        "BUDGET_EXCEEDED"
    )


async def test_while_the_ledger_is_down_budgets_hold_by_the_local_estimate(
    serve_app: ServeApp, downstreams: Downstreams, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = CostsSettings(
        port=0,
        database_path=tmp_path / "budgeted-costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    costs = await serve_app(await build_costs(settings), settings)
    async with admin_channel(costs.address) as channel:
        await costs_pb2_grpc.CostsServiceStub(channel).SetBudget(
            costs_pb.SetBudgetRequest(
                budget=costs_pb.Budget(
                    scope=costs_pb.BudgetScope(
                        kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
                    ),
                    period=costs_pb.BUDGET_PERIOD_DAY,
                    limit_micros=BUDGET_MICROS,
                    hard=True,
                )
            )
        )
    gateway = await _serve_gateway(
        serve_app, downstreams, sim, tmp_path, costs_address=costs.address
    )
    outcomes: list[str] = []
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        # Answered by the ledger: the gateway learns what is left of the budget.
        await stub.CreateResponse(_request(input="Question 0?"), metadata=_auth())
        await costs.server.stop(0)  # unreachable from here on
        for n in range(1, 12):
            try:
                await stub.CreateResponse(
                    _request(input=f"Question {n}?"), metadata=_auth()
                )
                outcomes.append("answered")
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                reason = error_details(error)["google.rpc.ErrorInfo"].reason
                outcomes.append(reason)

    # Some still fit what the ledger said was left; then every one is refused.
    answered = outcomes.count("answered")
    assert 0 < answered < len(outcomes)
    assert outcomes == ["answered"] * answered + ["BUDGET_EXCEEDED"] * (
        len(outcomes) - answered
    )
