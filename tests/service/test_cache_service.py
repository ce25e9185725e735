from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb

from services.cache.app import build_app
from services.cache.config import CacheSettings
from services.core.clock import FakeClock
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

REQUEST = cache_pb.CacheableRequest(
    tenant_id="acme",
    model="gpt-4.1-mini",
    instructions="Answer with a number.",
    input="What is 2 + 2?",
    temperature=0.0,
    max_output_tokens=16,
)
ANSWER = cache_pb.CachedResponse(
    output_text="4",
    model="gpt-4.1-mini-2025-04-14",
    usage=common_pb.Usage(input_tokens=21, cached_input_tokens=8, output_tokens=1),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stub(
    serve_app: ServeApp, clock: FakeClock
) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    # The exact tier alone; the semantic tier has its own tests.
    settings = CacheSettings(
        port=0,
        exact_max_bytes=4096,
        default_ttl_seconds=600,
        semantic_backend="disabled",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    running = await serve_app(await build_app(settings, clock), settings)
    async with admin_channel(running.address) as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)


def _store_request(
    request: cache_pb.CacheableRequest = REQUEST,
    response: cache_pb.CachedResponse = ANSWER,
    *,
    complete: bool = True,
    has_tool_calls: bool = False,
    ttl: duration_pb2.Duration | None = None,
) -> cache_pb.StoreRequest:
    return cache_pb.StoreRequest(
        request_id="req_1",
        request=request,
        response=response,
        complete=complete,
        has_tool_calls=has_tool_calls,
        ttl=ttl,
    )


async def _invalid_argument_fields(call: object) -> list[str]:
    """The field paths of an INVALID_ARGUMENT error's BadRequest, in order."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Not tests.grpc_helpers.error_details: its trailers() reads ``item.key``, but
    # an aio error's trailing metadata is a Metadata mapping of (key, value) pairs,
    # which grpc-stubs does not describe; hence Any.
    metadata: Any = caught.value.trailing_metadata()
    raw = metadata["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    status = status_pb2.Status.FromString(raw)
    error_info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    assert [detail.TypeName() for detail in status.details] == [
        "google.rpc.ErrorInfo",
        "google.rpc.BadRequest",
    ]
    status.details[0].Unpack(error_info)
    status.details[1].Unpack(bad_request)
    assert (error_info.domain, error_info.reason) == (
        "cache.tollgate",
        "INVALID_ARGUMENT",
    )
    return [violation.field for violation in bad_request.field_violations]


async def test_store_then_lookup_hits_with_identical_usage(
    stub: cache_pb2_grpc.CacheServiceStub, clock: FakeClock
) -> None:
    stored = await stub.Store(_store_request())
    assert stored.stored
    assert stored.outcome == cache_pb.STORE_OUTCOME_STORED
    assert len(stored.key) == 64

    clock.advance(30)
    found = await stub.Lookup(
        cache_pb.LookupRequest(request_id="req_2", request=REQUEST)
    )
    assert found.hit
    assert found.status == common_pb.CACHE_STATUS_EXACT
    assert found.similarity == 1.0
    assert found.key == stored.key
    assert found.response.output_text == "4"
    assert found.response.model == ANSWER.model
    assert found.response.usage == ANSWER.usage
    created = found.response.created_at.ToSeconds()
    assert created == int(clock.now()) - 30
    assert found.response.expires_at.ToSeconds() == created + 600


async def test_semantic_lookups_of_an_identical_request_hit_the_exact_tier(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    await stub.Store(_store_request())
    found = await stub.Lookup(
        cache_pb.LookupRequest(request=REQUEST, allow_semantic=True)
    )
    assert (found.hit, found.status) == (True, common_pb.CACHE_STATUS_EXACT)


async def test_miss_carries_the_key(stub: cache_pb2_grpc.CacheServiceStub) -> None:
    stored = await stub.Store(_store_request())
    other = cache_pb.CacheableRequest()
    other.CopyFrom(REQUEST)
    other.tenant_id = "globex"
    missed = await stub.Lookup(cache_pb.LookupRequest(request=other))
    assert (missed.hit, missed.status) == (False, common_pb.CACHE_STATUS_MISS)
    assert len(missed.key) == 64
    assert missed.key != stored.key
    assert not missed.HasField("response")


async def test_unset_temperature_and_one_share_an_entry(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    unset = cache_pb.CacheableRequest(tenant_id="acme", model="m", input="hi")
    explicit = cache_pb.CacheableRequest(
        tenant_id="acme", model="m", input="hi", temperature=1.0, top_p=1.0
    )
    await stub.Store(_store_request(request=unset))
    assert (await stub.Lookup(cache_pb.LookupRequest(request=explicit))).hit


async def test_ttl_expiry_over_grpc(
    stub: cache_pb2_grpc.CacheServiceStub, clock: FakeClock
) -> None:
    await stub.Store(_store_request(ttl=duration_pb2.Duration(seconds=60)))
    clock.advance(59)
    assert (await stub.Lookup(cache_pb.LookupRequest(request=REQUEST))).hit
    clock.advance(1)
    assert not (await stub.Lookup(cache_pb.LookupRequest(request=REQUEST))).hit


@pytest.mark.parametrize(
    ("store", "outcome"),
    [
        (_store_request(complete=False), cache_pb.STORE_OUTCOME_REFUSED_INCOMPLETE),
        (
            _store_request(response=cache_pb.CachedResponse(model="m")),
            cache_pb.STORE_OUTCOME_REFUSED_INCOMPLETE,
        ),
        (
            _store_request(response=cache_pb.CachedResponse(output_text="x" * 5000)),
            cache_pb.STORE_OUTCOME_REFUSED_TOO_LARGE,
        ),
    ],
)
async def test_refusals_are_answers_not_errors(
    stub: cache_pb2_grpc.CacheServiceStub,
    store: cache_pb.StoreRequest,
    outcome: int,
) -> None:
    refused = await stub.Store(store)
    assert (refused.stored, refused.outcome) == (False, outcome)
    assert len(refused.key) == 64
    assert not (await stub.Lookup(cache_pb.LookupRequest(request=REQUEST))).hit


async def test_a_tool_call_answer_round_trips_through_the_exact_tier(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    call = common_pb.ToolCall(id="call_1", name="lookup", arguments='{"id":7}')
    stored = await stub.Store(
        _store_request(
            response=cache_pb.CachedResponse(
                model="gpt-4.1-mini",
                tool_calls=[call],
                finish_reason=common_pb.FINISH_REASON_TOOL_CALLS,
            ),
            has_tool_calls=True,
        )
    )
    assert (stored.stored, stored.semantic_indexed) == (True, False)
    hit = await stub.Lookup(cache_pb.LookupRequest(request=REQUEST))
    assert hit.status == common_pb.CACHE_STATUS_EXACT
    assert list(hit.response.tool_calls) == [call]
    assert hit.response.finish_reason == common_pb.FINISH_REASON_TOOL_CALLS


async def test_invalid_lookup_names_each_field(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    bad = cache_pb.CacheableRequest(temperature=2.5, top_p=-0.1, max_output_tokens=-1)
    fields = await _invalid_argument_fields(
        stub.Lookup(cache_pb.LookupRequest(request=bad))
    )
    assert fields == [
        "request.tenant_id",
        "request.model",
        "request.temperature",
        "request.top_p",
        "request.max_output_tokens",
    ]


async def test_invalid_store_names_response_and_ttl(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    request = cache_pb.StoreRequest(
        request=REQUEST, complete=True, ttl=duration_pb2.Duration(seconds=-5)
    )
    assert await _invalid_argument_fields(stub.Store(request)) == [
        "response",
        "ttl",
    ]


@pytest.mark.parametrize(
    ("invalidate", "field"),
    [
        (cache_pb.InvalidateRequest(), "target"),
        (cache_pb.InvalidateRequest(key=""), "key"),
        (cache_pb.InvalidateRequest(tenant_id=""), "tenant_id"),
        (cache_pb.InvalidateRequest(all=False), "all"),
    ],
)
async def test_invalid_invalidate(
    stub: cache_pb2_grpc.CacheServiceStub,
    invalidate: cache_pb.InvalidateRequest,
    field: str,
) -> None:
    assert await _invalid_argument_fields(stub.Invalidate(invalidate)) == [field]


async def test_invalidate_by_key_tenant_model_and_all(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    keys = []
    for tenant, model in (("acme", "a"), ("acme", "b"), ("globex", "b"), ("x", "c")):
        request = cache_pb.CacheableRequest(tenant_id=tenant, model=model, input="q")
        keys.append((await stub.Store(_store_request(request=request))).key)

    async def removed(request: cache_pb.InvalidateRequest) -> int:
        return int((await stub.Invalidate(request)).removed_entries)

    assert await removed(cache_pb.InvalidateRequest(key=keys[3])) == 1
    assert await removed(cache_pb.InvalidateRequest(tenant_id="acme")) == 2
    assert await removed(cache_pb.InvalidateRequest(model="b")) == 1
    assert await removed(cache_pb.InvalidateRequest(all=True)) == 0
    stats = await stub.GetStats(cache_pb.GetStatsRequest())
    assert (stats.exact_entries, stats.exact_bytes) == (0, 0)


async def test_stats_after_a_known_sequence(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    lookup = cache_pb.LookupRequest(request=REQUEST)
    await stub.Lookup(lookup)  # miss
    await stub.Store(_store_request())  # store
    await stub.Lookup(lookup)  # hit
    await stub.Lookup(lookup)  # hit
    await stub.Store(_store_request(complete=False))  # refused
    for n in range(3):  # three more stores into a 4 KiB bound: evictions
        request = cache_pb.CacheableRequest(tenant_id="acme", model="m", input=f"q{n}")
        response = cache_pb.CachedResponse(output_text="y" * 1500)
        await stub.Store(_store_request(request=request, response=response))

    stats = await stub.GetStats(cache_pb.GetStatsRequest())
    assert (stats.exact_hits, stats.misses, stats.stores) == (2, 1, 4)
    assert stats.evictions == 2
    assert stats.exact_entries == 2
    assert 0 < stats.exact_bytes <= stats.exact_capacity_bytes == 4096
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert (stats.semantic_hits, stats.verification_rejections) == (0, 0)
    assert (stats.semantic_entries, stats.semantic_backend) == (0, "disabled")
    assert stats.exact_backend == "memory"


async def test_health_reports_serving(serve_app: ServeApp, tmp_path: Path) -> None:
    running = await serve_app(
        await build_app(CacheSettings(port=0, state_dir=tmp_path))
    )
    assert running.health.components == {
        "exact_store": True,
        "vector_index": True,
        "embedder": True,
    }
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="tollgate.cache.v1.CacheService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
