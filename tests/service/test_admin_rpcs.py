"""Every service's configuration-changing RPCs need the admin key."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc

from services.cache.app import build_app as build_cache
from services.cache.config import CacheSettings
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.router.app import build_app as build_router
from services.router.config import RouterSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details


async def _refused_then_served(
    address: str, call: str, stub_type: type, request: object
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub_type(channel), call)(request)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_details(raised.value)["google.rpc.ErrorInfo"]
    assert info.reason == "ADMIN_KEY_MISSING"
    async with admin_channel(address) as channel:
        await getattr(stub_type(channel), call)(request)


async def test_router_traffic_and_level_changes_need_the_admin_key(
    serve_app: ServeApp,
) -> None:
    settings = RouterSettings(admin_key_sha256s=ADMIN_KEY_SHA256S)
    server = await serve_app(await build_router(settings), settings)
    await _refused_then_served(
        server.address,
        "SetDegradationLevel",
        router_pb2_grpc.RouterServiceStub,
        router_pb.SetDegradationLevelRequest(
            level=common_pb.DEGRADATION_LEVEL_REDUCED_QUALITY
        ),
    )
    await _refused_then_served(
        server.address,
        "SetTrafficSplit",
        router_pb2_grpc.RouterServiceStub,
        router_pb.SetTrafficSplitRequest(
            allocations=[router_pb.TrafficAllocation(deployment="stable", percent=100)]
        ),
    )


async def test_cache_invalidation_needs_the_admin_key(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    settings = CacheSettings(
        state_dir=tmp_path,
        semantic_backend="disabled",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    server = await serve_app(await build_cache(settings), settings)
    await _refused_then_served(
        server.address,
        "Invalidate",
        cache_pb2_grpc.CacheServiceStub,
        cache_pb.InvalidateRequest(all=True),
    )


async def test_setting_a_budget_needs_the_admin_key(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    settings = CostsSettings(
        database_path=tmp_path / "costs.sqlite3", admin_key_sha256s=ADMIN_KEY_SHA256S
    )
    server = await serve_app(await build_costs(settings), settings)
    await _refused_then_served(
        server.address,
        "SetBudget",
        costs_pb2_grpc.CostsServiceStub,
        costs_pb.SetBudgetRequest(
            budget=costs_pb.Budget(
                scope=costs_pb.BudgetScope(kind=costs_pb.SCOPE_KIND_GLOBAL),
                period=costs_pb.BUDGET_PERIOD_DAY,
                limit_micros=1_000_000,
                hard=True,
            )
        ),
    )
