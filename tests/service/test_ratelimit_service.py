from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core.clock import FakeClock
from services.core.server import RunningServer, ServiceApp
from services.ratelimit.app import SERVICE_NAME, build_app
from services.ratelimit.config import RateLimitSettings

ServeApp = Callable[[ServiceApp], Awaitable[RunningServer]]

_DETAIL_TYPES: dict[str, type[Any]] = {
    "google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
    "google.rpc.BadRequest": error_details_pb2.BadRequest,
}

MODEL = "gpt-4.1"
CALLER = common_pb.Caller(
    tenant_id="t1", service="chat", user_id="u1", user_tier="free"
)


@dataclass
class Client:
    stub: ratelimit_pb2_grpc.RateLimitServiceStub
    channel: grpc.aio.Channel
    clock: FakeClock


Start = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start(serve_app: ServeApp) -> AsyncIterator[Start]:
    channels: list[grpc.aio.Channel] = []

    async def start(settings: RateLimitSettings | None = None) -> Client:
        clock = FakeClock()
        server = await serve_app(
            await build_app(settings or RateLimitSettings(port=0), clock=clock)
        )
        channel = grpc.aio.insecure_channel(server.address)
        channels.append(channel)
        return Client(ratelimit_pb2_grpc.RateLimitServiceStub(channel), channel, clock)

    yield start
    for channel in channels:
        await channel.close()


async def _acquire(
    client: Client, estimated_tokens: int = 0
) -> ratelimit_pb.AcquireResponse:
    response: ratelimit_pb.AcquireResponse = await client.stub.Acquire(
        ratelimit_pb.AcquireRequest(
            request_id="req_1",
            caller=CALLER,
            model=MODEL,
            estimated_tokens=estimated_tokens,
        )
    )
    return response


def _invalid_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of an INVALID_ARGUMENT error's BadRequest, in order.

    Not tests.grpc_helpers.error_details: its trailers() reads ``item.key``, but
    grpc.aio.Metadata yields (key, value) tuples.
    """
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    status = status_pb2.Status.FromString(raw)
    details: dict[str, Any] = {}
    for packed in status.details:
        assert isinstance(packed, any_pb2.Any)
        message = _DETAIL_TYPES[packed.TypeName()]()
        packed.Unpack(message)
        details[packed.TypeName()] = message
    error_info = details["google.rpc.ErrorInfo"]
    assert (error_info.reason, error_info.domain) == (
        "INVALID_ARGUMENT",
        "ratelimit.tollgate",
    )
    return [v.field for v in details["google.rpc.BadRequest"].field_violations]


async def test_allows_twenty_then_denies_with_user_requests_bucket(
    start: Start,
) -> None:
    client = await start()

    admitted = [await _acquire(client, 100) for _ in range(20)]
    denied = await _acquire(client, 100)

    assert {r.decision for r in admitted} == {ratelimit_pb.DECISION_ALLOW}
    assert all(r.reservation_id.startswith("rsv_") for r in admitted)
    assert len({r.reservation_id for r in admitted}) == 20
    assert admitted[0].reservation_expires_at.ToSeconds() == int(
        client.clock.now() + 300
    )
    assert not admitted[0].HasField("retry_after")
    assert denied.decision == ratelimit_pb.DECISION_DENY
    assert denied.reservation_id == ""
    assert not denied.HasField("reservation_expires_at")
    assert denied.retry_after == duration_pb2.Duration(seconds=3)
    assert denied.denied_by == ratelimit_pb.BucketStatus(
        layer=ratelimit_pb.LIMIT_LAYER_USER,
        key="t1:u1",
        metric=ratelimit_pb.LIMIT_METRIC_REQUESTS,
        limit_per_minute=20,
        effective_limit_per_minute=20,
        capacity=20,
        remaining=0,
    )
    assert list(denied.buckets) == [denied.denied_by]
    assert not denied.degraded


async def test_invalid_acquire_lists_every_field_violation(
    start: Start,
) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.Acquire(
            ratelimit_pb.AcquireRequest(
                caller=common_pb.Caller(user_id="u1"), estimated_tokens=-1
            )
        )

    assert _invalid_fields(caught.value) == [
        "caller.tenant_id",
        "model",
        "estimated_tokens",
    ]


async def test_estimate_above_a_tokens_capacity_is_invalid(
    start: Start, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(f"models:\n  {MODEL}: {{tpm: 1000}}\n")
    client = await start(RateLimitSettings(port=0, limits_file=limits))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _acquire(client, 1_001)

    assert _invalid_fields(caught.value) == ["estimated_tokens"]


async def test_reconcile_refunds_on_the_model_tokens_bucket(
    start: Start, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(f"models:\n  {MODEL}: {{rpm: 500, tpm: 30000}}\n")
    client = await start(RateLimitSettings(port=0, limits_file=limits))
    acquired = await _acquire(client, 5_000)

    settled = await client.stub.Reconcile(
        ratelimit_pb.ReconcileRequest(
            reservation_id=acquired.reservation_id, actual_tokens=1_200
        )
    )
    status = await client.stub.GetStatus(ratelimit_pb.GetStatusRequest(model=MODEL))

    assert settled.outcome == ratelimit_pb.RECONCILE_OUTCOME_SETTLED
    assert settled.refunded_tokens == 3_800
    assert [(b.metric, b.remaining) for b in status.buckets] == [
        (ratelimit_pb.LIMIT_METRIC_REQUESTS, 499),
        (ratelimit_pb.LIMIT_METRIC_TOKENS, 28_800),
    ]


async def test_reconcile_unknown_reservation_is_an_outcome(
    start: Start,
) -> None:
    client = await start()

    response = await client.stub.Reconcile(
        ratelimit_pb.ReconcileRequest(reservation_id="rsv_unknown", actual_tokens=10)
    )

    assert response.outcome == ratelimit_pb.RECONCILE_OUTCOME_UNKNOWN_RESERVATION
    assert response.refunded_tokens == 0


async def test_reconcile_validates_its_fields(
    start: Start,
) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.Reconcile(ratelimit_pb.ReconcileRequest(actual_tokens=-5))

    assert _invalid_fields(caught.value) == ["reservation_id", "actual_tokens"]


async def test_throttle_reports_show_in_status(
    start: Start,
) -> None:
    client = await start()
    await _acquire(client)

    throttled = await client.stub.ReportUpstreamThrottle(
        ratelimit_pb.ReportUpstreamThrottleRequest(
            model=MODEL,
            outcome=ratelimit_pb.UPSTREAM_OUTCOME_THROTTLED,
            retry_after=duration_pb2.Duration(seconds=20),
        )
    )
    paused = await _acquire(client)
    status = await client.stub.GetStatus(
        ratelimit_pb.GetStatusRequest(caller=CALLER, model=MODEL)
    )

    assert throttled.backoff_factor == 2.0
    assert throttled.paused_until.ToSeconds() == int(client.clock.now() + 20)
    assert paused.decision == ratelimit_pb.DECISION_DENY
    assert paused.retry_after == duration_pb2.Duration(seconds=20)
    assert paused.denied_by.layer == ratelimit_pb.LIMIT_LAYER_GLOBAL
    assert paused.denied_by.key == MODEL
    assert status.backend == "memory"
    assert not status.degraded
    assert [(b.key, b.remaining) for b in status.buckets] == [("t1:u1", 19)]
    assert [(b.model, b.backoff_factor) for b in status.backoffs] == [(MODEL, 2.0)]
    assert status.backoffs[0].paused_until == throttled.paused_until


async def test_throttle_report_validates_its_fields(
    start: Start,
) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.ReportUpstreamThrottle(
            ratelimit_pb.ReportUpstreamThrottleRequest(
                retry_after=duration_pb2.Duration(seconds=-1)
            )
        )

    assert _invalid_fields(caught.value) == ["model", "outcome", "retry_after"]


async def test_status_requires_a_tenant_when_a_caller_is_given(
    start: Start,
) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.GetStatus(
            ratelimit_pb.GetStatusRequest(caller=common_pb.Caller(user_id="u1"))
        )
    empty = await client.stub.GetStatus(ratelimit_pb.GetStatusRequest())

    assert _invalid_fields(caught.value) == ["caller.tenant_id"]
    assert list(empty.buckets) == []
    assert empty.backend == "memory"


async def test_health_reports_serving(
    start: Start,
) -> None:
    client = await start()
    health = health_pb2_grpc.HealthStub(client.channel)

    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    service = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert service.status == health_pb2.HealthCheckResponse.SERVING


async def test_limits_file_changes_apply_without_restart(
    start: Start, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text("tiers: {free: {rpm: 20}}\n")
    client = await start(
        RateLimitSettings(
            port=0, limits_file=limits, limits_reload_interval_seconds=0.02
        )
    )
    assert (await _acquire(client)).buckets[0].limit_per_minute == 20

    limits.write_text("tiers: {free: {rpm: 7, tpm: 700}}\n")
    # The watcher polls every 20 ms; give it up to 5 s on a loaded machine.
    for _ in range(250):
        status = await client.stub.GetStatus(
            ratelimit_pb.GetStatusRequest(caller=CALLER)
        )
        if status.buckets[0].limit_per_minute == 7:
            break
        await asyncio.sleep(0.02)

    assert [(b.metric, b.limit_per_minute) for b in status.buckets] == [
        (ratelimit_pb.LIMIT_METRIC_REQUESTS, 7),
        (ratelimit_pb.LIMIT_METRIC_TOKENS, 700),
    ]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_reconcile_batch_settles_each_item_as_reconcile_would(
    start: Start, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(f"models:\n  {MODEL}: {{rpm: 500, tpm: 30000}}\n")
    settings = RateLimitSettings(port=0, limits_file=limits)
    if backend == "redis":
        redis = request.getfixturevalue("redis_server")
        db = 11  # this test's own database, flushed first
        settings = settings.model_copy(update={"redis_url": f"{redis.url}/{db}"})
        flusher = aioredis.from_url(f"{redis.url}/{db}")
        await flusher.flushdb()
        await flusher.aclose()
    # Two replicas: on Redis the second settles what the first reserved.
    first, second = await start(settings), await start(settings)
    began = time.monotonic()
    one = await _acquire(first, 5_000)
    two = await _acquire(first, 3_000)
    settling = second if backend == "redis" else first

    settled = await settling.stub.ReconcileBatch(
        ratelimit_pb.ReconcileBatchRequest(
            items=[
                ratelimit_pb.ReconcileRequest(
                    reservation_id=one.reservation_id, actual_tokens=1_200
                ),
                ratelimit_pb.ReconcileRequest(
                    reservation_id="rsv_unknown", actual_tokens=10
                ),
                ratelimit_pb.ReconcileRequest(
                    reservation_id=two.reservation_id, actual_tokens=3_500
                ),
            ]
        )
    )
    status = await first.stub.GetStatus(ratelimit_pb.GetStatusRequest(model=MODEL))
    # Redis refills by its own TIME (30,000 a minute: 500 a second) meanwhile.
    refill = 0 if backend == "memory" else (time.monotonic() - began) * 500 + 1

    assert [(r.outcome, r.refunded_tokens) for r in settled.results] == [
        (ratelimit_pb.RECONCILE_OUTCOME_SETTLED, 3_800),
        (ratelimit_pb.RECONCILE_OUTCOME_UNKNOWN_RESERVATION, 0),
        (ratelimit_pb.RECONCILE_OUTCOME_SETTLED, -500),
    ]
    requests, tokens = status.buckets
    assert requests.metric == ratelimit_pb.LIMIT_METRIC_REQUESTS
    assert 498 <= requests.remaining <= 498 + refill / 60
    assert tokens.metric == ratelimit_pb.LIMIT_METRIC_TOKENS
    assert 30_000 - 1_200 - 3_500 <= tokens.remaining <= 30_000 - 4_700 + refill


async def test_reconcile_batch_names_the_invalid_item(start: Start) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.ReconcileBatch(
            ratelimit_pb.ReconcileBatchRequest(
                items=[
                    ratelimit_pb.ReconcileRequest(reservation_id="r", actual_tokens=1),
                    ratelimit_pb.ReconcileRequest(reservation_id="r", actual_tokens=-1),
                ]
            )
        )
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await client.stub.ReconcileBatch(ratelimit_pb.ReconcileBatchRequest())

    assert _invalid_fields(caught.value) == ["items[1].actual_tokens"]
    assert _invalid_fields(empty.value) == ["items"]


async def test_acquire_batch_decides_each_item_in_order_and_refuses_the_invalid(
    start: Start, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(f"models:\n  {MODEL}: {{rpm: 500, tpm: 10000}}\n")
    client = await start(RateLimitSettings(port=0, limits_file=limits))

    def item(tokens: int, **changes: Any) -> ratelimit_pb.AcquireRequest:
        fields: dict[str, Any] = {
            "request_id": f"req_{tokens}",
            "caller": CALLER,
            "model": MODEL,
            "estimated_tokens": tokens,
        }
        fields.update(changes)
        return ratelimit_pb.AcquireRequest(**fields)

    batch = await client.stub.AcquireBatch(
        ratelimit_pb.AcquireBatchRequest(
            items=[
                item(6_000),
                item(1, model="", caller=common_pb.Caller()),
                item(5_000),  # 4,000 left after the first: denied
                item(4_000),  # decided after the one denied, and fits
                item(20_000),  # above the bucket's capacity: never admissible
            ]
        )
    )

    first, invalid, over, last, never = batch.results
    assert first.decided.decision == ratelimit_pb.DECISION_ALLOW
    assert first.decided.reservation_id
    assert {v.field for v in invalid.rejected.field_violations} == {
        "caller.tenant_id",
        "model",
    }
    assert over.decided.decision == ratelimit_pb.DECISION_DENY
    assert over.decided.retry_after.ToNanoseconds() > 0
    assert last.decided.decision == ratelimit_pb.DECISION_ALLOW
    assert [v.field for v in never.rejected.field_violations] == ["estimated_tokens"]
    status = await client.stub.GetStatus(ratelimit_pb.GetStatusRequest(model=MODEL))
    requests, tokens = status.buckets
    assert (requests.remaining, tokens.remaining) == (498, 0)


async def test_an_empty_acquire_batch_is_invalid(start: Start) -> None:
    client = await start()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.AcquireBatch(ratelimit_pb.AcquireBatchRequest())

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _invalid_fields(caught.value) == ["items"]
