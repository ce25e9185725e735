"""Envoy's ShouldRateLimit, through the generated Envoy stub, on the same port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import (
    ratelimit_pb2 as envoy_descriptor_pb,
)
from envoy.service.ratelimit.v3 import (
    rls_pb2 as rls_pb,
)
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from google.protobuf import duration_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.ratelimit.v1 import ratelimit_pb2 as ratelimit_pb
from tollgate.ratelimit.v1 import ratelimit_pb2_grpc

from services.core.clock import FakeClock
from services.ratelimit.app import ENVOY_SERVICE_NAME, build_app
from services.ratelimit.config import RateLimitSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import error_details

MODEL = "gpt-4.1"
LIMITS = f"""
tiers: {{free: {{rpm: 3}}}}
services: {{chat: 0.5}}
models: {{{MODEL}: {{rpm: 100, tpm: 10000}}}}
envoy:
  domains: [tollgate]
  entries: {{tenant: tenant, user_id: user, service: service, model: model,
            unit: metric}}
"""
OK = rls_pb.RateLimitResponse.OK
OVER = rls_pb.RateLimitResponse.OVER_LIMIT


@pytest.fixture
async def channel(
    serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[grpc.aio.Channel]:
    limits = tmp_path / "limits.yaml"
    limits.write_text(LIMITS)
    server = await serve_app(
        await build_app(
            RateLimitSettings(port=0, limits_file=limits), clock=FakeClock()
        )
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield channel


def _descriptor(*entries: tuple[str, str], hits: int | None = None) -> Any:
    descriptor = envoy_descriptor_pb.RateLimitDescriptor(
        entries=[
            envoy_descriptor_pb.RateLimitDescriptor.Entry(key=k, value=v)
            for k, v in entries
        ]
    )
    if hits is not None:
        descriptor.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
    return descriptor


async def _ask(channel: grpc.aio.Channel, *descriptors: Any, hits: int = 0) -> Any:
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    return await stub.ShouldRateLimit(
        rls_pb.RateLimitRequest(
            domain="tollgate", descriptors=descriptors, hits_addend=hits
        )
    )


async def test_descriptors_map_onto_layers_until_over_limit(
    channel: grpc.aio.Channel,
) -> None:
    user = _descriptor(("tenant", "t1"), ("user_id", "u1"))
    model = _descriptor(("service", "chat"), ("model", MODEL))

    admitted = [await _ask(channel, user, model) for _ in range(3)]
    denied = await _ask(channel, user, model)

    assert [r.overall_code for r in admitted] == [OK] * 3
    first_user, first_model = admitted[0].statuses
    assert first_user.current_limit == rls_pb.RateLimitResponse.RateLimit(
        name="user:t1:u1:requests",
        requests_per_unit=3,
        unit=rls_pb.RateLimitResponse.RateLimit.MINUTE,
    )
    assert first_user.limit_remaining == 2
    # Back to full (3 per minute) in 20 s.
    assert first_user.duration_until_reset == duration_pb2.Duration(seconds=20)
    assert first_model.current_limit.name == f"service:chat:{MODEL}:requests"
    assert first_model.limit_remaining == 49
    assert denied.overall_code == OVER
    assert [s.code for s in denied.statuses] == [OVER, OK]
    assert denied.statuses[0].limit_remaining == 0
    assert denied.statuses[0].duration_until_reset == duration_pb2.Duration(seconds=20)


async def test_hits_addend_counts_and_a_descriptor_can_override_it(
    channel: grpc.aio.Channel,
) -> None:
    tokens = _descriptor(("model", MODEL), ("unit", "tokens"), hits=2_500)
    requests = _descriptor(("model", MODEL))

    response = await _ask(channel, tokens, requests, hits=7)
    status = await ratelimit_pb2_grpc.RateLimitServiceStub(channel).GetStatus(
        ratelimit_pb.GetStatusRequest(model=MODEL)
    )

    assert response.overall_code == OK
    assert [s.limit_remaining for s in response.statuses] == [7_500, 93]
    assert [b.remaining for b in status.buckets] == [93, 7_500]


async def test_unconfigured_domains_and_entries_are_not_limited(
    channel: grpc.aio.Channel,
) -> None:
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)

    other = await stub.ShouldRateLimit(
        rls_pb.RateLimitRequest(
            domain="other", descriptors=[_descriptor(("model", MODEL), hits=10**6)]
        )
    )
    unknown = await _ask(channel, _descriptor(("path", "/v1/chat")))

    assert other.overall_code == OK
    assert unknown.overall_code == OK
    assert not unknown.statuses[0].HasField("current_limit")


async def test_invalid_requests_name_every_field(channel: grpc.aio.Channel) -> None:
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.ShouldRateLimit(rls_pb.RateLimitRequest())
    with pytest.raises(grpc.aio.AioRpcError) as bad_entries:
        await _ask(
            channel,
            envoy_descriptor_pb.RateLimitDescriptor(),
            _descriptor(("unit", "bytes")),
        )
    with pytest.raises(grpc.aio.AioRpcError) as bad_metric:
        await _ask(
            channel, _descriptor(("model", MODEL)), _descriptor(("unit", "bytes"))
        )

    def fields(error: grpc.aio.AioRpcError) -> list[str]:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = error_details(error)
        assert details["google.rpc.ErrorInfo"].domain == "ratelimit.tollgate"
        return [v.field for v in details["google.rpc.BadRequest"].field_violations]

    assert fields(empty.value) == ["domain", "descriptors"]
    assert fields(bad_entries.value) == ["descriptors[0].entries"]
    assert fields(bad_metric.value) == ["descriptors[1].entries"]


async def test_envoy_service_is_in_health_and_reflection(
    channel: grpc.aio.Channel,
) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    status = await health.Check(
        health_pb2.HealthCheckRequest(service=ENVOY_SERVICE_NAME)
    )

    assert ENVOY_SERVICE_NAME == "envoy.service.ratelimit.v3.RateLimitService"
    assert status.status == health_pb2.HealthCheckResponse.SERVING
