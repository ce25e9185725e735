"""Admin RPCs need an admin key; other RPCs of the same service do not."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc

from services.core.server import ServiceApp, start_server
from services.core.settings import ServerSettings
from tests.grpc_helpers import error_details

CACHE_SERVICE = cache_pb.DESCRIPTOR.services_by_name["CacheService"].full_name
INVALIDATE = f"/{CACHE_SERVICE}/Invalidate"
ADMIN_KEY = "tg_admin_test_key"


class _ToyCache(cache_pb2_grpc.CacheServiceServicer):
    async def Invalidate(  # noqa: N802 (gRPC method names are PascalCase)
        self,
        request: cache_pb.InvalidateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cache_pb.InvalidateResponse:
        return cache_pb.InvalidateResponse(removed_entries=7)

    async def GetStats(  # noqa: N802
        self,
        request: cache_pb.GetStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cache_pb.GetStatsResponse:
        return cache_pb.GetStatsResponse(exact_entries=1)


@pytest.fixture
async def stub() -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    app = ServiceApp(
        name="cache",
        service_names=[CACHE_SERVICE],
        register=lambda server: cache_pb2_grpc.add_CacheServiceServicer_to_server(
            _ToyCache(), server
        ),
        admin_methods=frozenset({INVALIDATE}),
    )
    settings = ServerSettings(
        port=0, admin_key_sha256s=[hashlib.sha256(ADMIN_KEY.encode()).hexdigest()]
    )
    running = await start_server(app, settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)
    await running.stop()


async def test_admin_rpc_with_the_admin_key_is_served(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    response = await stub.Invalidate(
        cache_pb.InvalidateRequest(all=True),
        metadata=(("authorization", f"Bearer {ADMIN_KEY}"),),
    )
    assert response.removed_entries == 7


@pytest.mark.parametrize(
    ("metadata", "code", "reason"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, "ADMIN_KEY_MISSING"),
        (
            (("authorization", "Bearer not-the-admin-key"),),
            grpc.StatusCode.PERMISSION_DENIED,
            "ADMIN_KEY_INVALID",
        ),
    ],
)
async def test_admin_rpc_without_the_admin_key_is_refused(
    stub: cache_pb2_grpc.CacheServiceStub,
    metadata: tuple[tuple[str, str], ...],
    code: grpc.StatusCode,
    reason: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Invalidate(cache_pb.InvalidateRequest(all=True), metadata=metadata)
    assert raised.value.code() is code
    assert error_details(raised.value)["google.rpc.ErrorInfo"].reason == reason


async def test_other_rpcs_need_no_admin_key(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    assert (await stub.GetStats(cache_pb.GetStatsRequest())).exact_entries == 1
