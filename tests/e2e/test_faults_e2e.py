"""The suite against the simulator's faults: each failure follows DESIGN.md's policy.

One suite runs with upstream retries off, a breaker that opens after two failures and
recovers after one second, and quick batches, so that each scenario is short.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.devsuite import Suite
from tests.e2e.conftest import E2E_KEY, start_test_suite
from tests.grpc_helpers import error_details

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
FAULT_ENV = {
    "TOLLGATE_GATEWAY_UPSTREAM_MAX_RETRIES": "0",
    "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__FAILURE_THRESHOLD": "2",
    "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__RECOVERY_TIMEOUT_SECONDS": "1",
    "TOLLGATE_GATEWAY_UPSTREAM_BREAKER__SUCCESS_THRESHOLD": "1",
    "TOLLGATE_GATEWAY_AUTO_DEGRADATION_HOLD_SECONDS": "2",
    "TOLLGATE_GATEWAY_BATCH_POLL_INITIAL_SECONDS": "0.2",
    "TOLLGATE_GATEWAY_BATCH_POLL_MAX_SECONDS": "0.5",
    "TOLLGATE_GATEWAY_BATCH_TICK_SECONDS": "0.1",
    "TOLLGATE_SIMULATOR_BATCH_COMPLETION_SECONDS": "1",
    "TOLLGATE_SIMULATOR_HANG_SECONDS": "20",
}


def _sim(
    suite: Suite,
    path: str,
    body: dict[str, object] | None = None,
    *,
    method: str = "",
) -> object:
    url = f"http://127.0.0.1:{suite.ports['simulator']}{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method or ("GET" if body is None else "POST")
    )
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.fixture(autouse=True)
def no_fault_outlives_its_test(suite: Suite) -> Iterator[None]:
    """The tests share one suite: a fault a test scheduled but its requests did not
    use (a deadline cut the ladder short) must not fail the next test's calls."""
    yield
    clear_faults(suite)


def clear_faults(suite: Suite) -> None:
    """Drop every fault scheduled and not yet used."""
    _sim(suite, "/_sim/faults", method="DELETE")


def schedule_faults(
    suite: Suite, kind: str, count: int, retry_after: int = 1, model: str = ""
) -> None:
    """Fail the next ``count`` upstream calls (only those for ``model``, if given)."""
    body: dict[str, object] = {
        "kind": kind,
        "count": count,
        "retry_after_seconds": retry_after,
    }
    if model:
        body["model"] = model
    _sim(suite, "/_sim/faults", body)


def upstream_requests(suite: Suite) -> int:
    stats = _sim(suite, "/_sim/stats")
    assert isinstance(stats, dict)
    return int(stats["requests"])


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = start_test_suite(tmp_path_factory.mktemp("faults"), FAULT_ENV)
    yield running
    running.stop()


@pytest.fixture
async def gateway(suite: Suite) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def ask(text: str) -> gateway_pb.CreateResponseRequest:
    return gateway_pb.CreateResponseRequest(input=text, cache_bypass=True)


async def breaker_states(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> dict[str, int]:
    status = await gateway.GetStatus(gateway_pb.GetStatusRequest(), metadata=AUTH)
    return {b.name: b.state for b in status.breakers}


async def test_a_429_storm_is_refused_with_retry_after_and_reported_to_ratelimit(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    # Every model of the ladder (gpt-4.1-mini, then gpt-4.1-nano) is throttled.
    schedule_faults(suite, "rate_limit", 2, retry_after=3)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.CreateResponse(ask("storm 1"), metadata=AUTH, timeout=30)
    error = raised.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error_details(error)
    assert details["google.rpc.ErrorInfo"].reason == "UPSTREAM_RATE_LIMITED"
    retry = details["google.rpc.RetryInfo"].retry_delay.ToTimedelta().total_seconds()
    assert retry == 3.0  # the upstream's Retry-After, passed on

    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{suite.ports['ratelimit']}"
    ) as channel:
        limiter = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        for _ in range(50):  # the report is sent off the response path
            status = await limiter.GetStatus(
                ratelimit_pb.GetStatusRequest(model="gpt-4.1-mini")
            )
            backoffs = {b.model: b.backoff_factor for b in status.backoffs}
            if backoffs.get("gpt-4.1-mini", 1.0) > 1.0:
                break
            await asyncio.sleep(0.05)
    assert backoffs["gpt-4.1-mini"] == 2.0
    assert status.backoffs[0].HasField("paused_until")


async def test_a_429_on_one_model_is_answered_by_the_next_cheaper_one(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    await asyncio.sleep(3.1)  # let the previous test's Retry-After pause pass
    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_FULL_SERVICE)
    schedule_faults(suite, "rate_limit", 1, retry_after=1, model="gpt-4.1-mini")

    reply = await gateway.CreateResponse(ask("throttled once"), metadata=AUTH)

    assert reply.model == "gpt-4.1-nano"
    assert reply.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    assert reply.output_text.startswith("Simulated answer")
    await asyncio.sleep(1.1)  # the Retry-After pause of gpt-4.1-mini


async def test_500s_open_the_breaker_fallbacks_answer_and_probing_closes_it(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    schedule_faults(suite, "server_error", 2, model="gpt-4.1-mini")
    for n in range(2):
        # Each failure of gpt-4.1-mini fails over, within the deadline, to nano.
        failed_over = await gateway.CreateResponse(
            ask(f"five hundred {n}"), metadata=AUTH
        )
        assert failed_over.model == "gpt-4.1-nano"
    assert (await breaker_states(gateway))["upstream:gpt-4.1-mini"] == (
        gateway_pb.BREAKER_STATE_OPEN
    )

    fallback = await gateway.CreateResponse(ask("served anyway"), metadata=AUTH)
    assert fallback.model == "gpt-4.1-nano"
    assert fallback.degradation_level == common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
    # The gateway holds REDUCED_QUALITY on the router for everybody, for 2 s.
    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY)

    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_FULL_SERVICE)
    await asyncio.sleep(1.1)  # the breaker's recovery timeout: the next call probes
    probe = await gateway.CreateResponse(ask("probe"), metadata=AUTH)
    assert probe.model == "gpt-4.1-mini"
    assert probe.degradation_level == common_pb.DEGRADATION_LEVEL_FULL_SERVICE
    assert (await breaker_states(gateway))["upstream:gpt-4.1-mini"] == (
        gateway_pb.BREAKER_STATE_CLOSED
    )


async def _wait_for_level(suite: Suite, level: int) -> None:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{suite.ports['router']}"
    ) as channel:
        router = router_pb2_grpc.RouterServiceStub(channel)
        for _ in range(200):
            stats = await router.GetRoutingStats(router_pb.GetRoutingStatsRequest())
            if stats.degradation_level == level:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the router's level never became {level}")


async def test_with_every_circuit_open_the_static_answer_is_served_at_once(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    # Each request fails on both models of the ladder: two requests open both breakers.
    schedule_faults(suite, "server_error", 4)
    for n in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gateway.CreateResponse(ask(f"failing {n}"), metadata=AUTH)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_details(raised.value)["google.rpc.ErrorInfo"].reason == (
            "UPSTREAM_UNAVAILABLE"
        )
    states = await breaker_states(gateway)
    assert states["upstream:gpt-4.1-mini"] == gateway_pb.BREAKER_STATE_OPEN
    assert states["upstream:gpt-4.1-nano"] == gateway_pb.BREAKER_STATE_OPEN

    before = upstream_requests(suite)
    replies = [
        await gateway.CreateResponse(ask(f"while down {n}"), metadata=AUTH)
        for n in range(5)
    ]

    assert upstream_requests(suite) == before, "fallbacks never wait on the upstream"
    for reply in replies:
        assert reply.degradation_level == common_pb.DEGRADATION_LEVEL_STATIC_FALLBACK
        assert reply.output_text  # the static answer of the request type
        assert not reply.output_text.startswith("Simulated answer")
    # The gateway's own measure of each reply (its `latency` field), not a client
    # clock: the static answer is served in well under 50 ms.
    latencies = sorted(r.latency.ToTimedelta().total_seconds() for r in replies)
    assert latencies[len(latencies) // 2] < 0.050
    # The holds lapse by themselves once nobody renews them; then the next call probes.
    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_FULL_SERVICE)
    await asyncio.sleep(1.1)  # the breakers' recovery timeout


async def test_a_slow_upstream_does_not_outlive_the_callers_deadline(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    schedule_faults(suite, "hang", 2)  # the fallback model hangs too
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.CreateResponse(ask("slow"), metadata=AUTH, timeout=1.5)
    elapsed = time.monotonic() - started
    assert raised.value.code() in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
    )
    assert elapsed < 5, "the hang lasts 20 s: the deadline must cut it"
    # The deadline may cut the ladder before the fallback model is tried: its hang,
    # left scheduled, would hold the next call for 20 s and leave a breaker open
    # and a degradation level held into the tests after this one.
    clear_faults(suite)
    # The gateway is still answering.
    reply = await gateway.CreateResponse(ask("after the hang"), metadata=AUTH)
    assert reply.output_text
    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_FULL_SERVICE)
    await asyncio.sleep(1.1)  # the breakers' recovery timeout


async def test_a_broken_stream_ends_with_an_error_and_a_partial_marker(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    schedule_faults(suite, "broken_stream", 1)
    request = gateway_pb.StreamResponseRequest(
        input="tell me a long story", cache_bypass=True
    )
    events: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for event in gateway.StreamResponse(request, metadata=AUTH):
            events.append(event.WhichOneof("event") or "")
    error = raised.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    info = error_details(error)["google.rpc.ErrorInfo"]
    assert info.reason == "UPSTREAM_STREAM_BROKEN"
    assert info.metadata["partialOutput"] == "true"
    assert events[0] == "started"
    assert "delta" in events
    assert "completed" not in events, "a broken answer never ends cleanly"


async def test_a_complete_stream_ends_with_usage_and_cost(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.StreamResponseRequest(input="stream this", cache_bypass=True)
    text, completed = [], None
    async for event in gateway.StreamResponse(request, metadata=AUTH):
        if event.HasField("delta"):
            text.append(event.delta.text)
        if event.HasField("completed"):
            completed = event.completed
    assert completed is not None
    assert "".join(text).startswith("Simulated answer")
    assert completed.usage.output_tokens > 0
    assert completed.cost_micros > 0


async def _wait_for_batch(
    gateway: gateway_pb2_grpc.GatewayServiceStub, batch_id: str
) -> gateway_pb.Batch:
    for _ in range(200):
        response: gateway_pb.GetBatchResponse = await gateway.GetBatch(
            gateway_pb.GetBatchRequest(batch_id=batch_id), metadata=AUTH
        )
        batch = response.batch
        if batch.status in (
            gateway_pb.BATCH_STATUS_COMPLETED,
            gateway_pb.BATCH_STATUS_FAILED,
        ):
            return batch
        await asyncio.sleep(0.1)
    raise AssertionError("the batch did not finish")


# Price per 1M input and output tokens, micro-dollars (the default pricing table).
PRICES = {"gpt-4.1-mini": (400_000, 1_600_000), "gpt-4.1-nano": (100_000, 400_000)}


async def test_a_batch_completes_with_results_at_the_batch_price(
    suite: Suite, gateway: gateway_pb2_grpc.GatewayServiceStub
) -> None:
    # Earlier faults leave short degradation holds that route to a cheaper model;
    # start from full service so the batch is priced on the standard model.
    await _wait_for_level(suite, common_pb.DEGRADATION_LEVEL_FULL_SERVICE)
    submitted = await gateway.SubmitBatch(
        gateway_pb.SubmitBatchRequest(
            items=[
                gateway_pb.BatchItem(custom_id=f"item-{n}", input=f"question {n}")
                for n in range(3)
            ]
        ),
        metadata=AUTH,
    )
    batch = await _wait_for_batch(gateway, submitted.batch.batch_id)
    assert batch.status == gateway_pb.BATCH_STATUS_COMPLETED
    assert (batch.total_items, batch.completed_items) == (3, 3)
    results = [
        r
        async for r in gateway.ListBatchResults(
            gateway_pb.ListBatchResultsRequest(batch_id=batch.batch_id), metadata=AUTH
        )
    ]
    assert [r.custom_id for r in results] == ["item-0", "item-1", "item-2"]
    for result in results:
        assert result.output_text.startswith("Simulated answer")
        input_price, output_price = PRICES[result.model]
        tokens_cost = (
            result.usage.input_tokens * input_price
            + result.usage.output_tokens * output_price
        )
        full = -(-tokens_cost // 1_000_000)
        half = -(-tokens_cost // 2_000_000)
        assert result.cost_micros == half < full


async def test_a_failing_batch_is_reported_failed(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    submitted = await gateway.SubmitBatch(
        gateway_pb.SubmitBatchRequest(
            items=[gateway_pb.BatchItem(custom_id="only", input="doomed")],
            metadata={"sim_fault": "batch_failed"},
        ),
        metadata=AUTH,
    )
    batch = await _wait_for_batch(gateway, submitted.batch.batch_id)
    assert batch.status == gateway_pb.BATCH_STATUS_FAILED
    assert batch.failed_items == 1


async def test_queue_overflow_is_refused_at_once_with_an_estimated_wait(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    suite = start_test_suite(
        tmp_path_factory.mktemp("queue"),
        {
            "TOLLGATE_GATEWAY_UPSTREAM_MAX_CONCURRENCY": "1",
            "TOLLGATE_GATEWAY_QUEUE_MAX_DEPTH": "1",
            "TOLLGATE_SIMULATOR_LATENCY_MS": "400",
        },
    )
    try:
        async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            outcomes = await asyncio.gather(
                *(
                    gateway.CreateResponse(ask(f"crowd {n}"), metadata=AUTH, timeout=30)
                    for n in range(5)
                ),
                return_exceptions=True,
            )
            status = await gateway.GetStatus(
                gateway_pb.GetStatusRequest(), metadata=AUTH
            )
    finally:
        suite.stop()
    answered = [o for o in outcomes if isinstance(o, gateway_pb.CreateResponseResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(answered) == 2, "one in flight and one queued are served"
    assert len(refused) == 3
    for error in refused:
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = error_details(error)
        assert details["google.rpc.ErrorInfo"].reason == "QUEUE_FULL"
        assert (
            details["google.rpc.RetryInfo"].retry_delay.ToTimedelta().total_seconds()
            > 0
        )
    standard = {q.priority: q for q in status.queues}[common_pb.PRIORITY_STANDARD]
    assert standard.rejected == 3
    assert standard.admitted == 2
