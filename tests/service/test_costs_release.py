"""Record with ``release_only``: a reservation released over gRPC, nothing booked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.breaker import BreakerConfig, CircuitBreaker
from services.core.clock import FakeClock
from services.costs.app import build_app
from services.costs.config import CostsSettings
from services.gateway.clients import CostsClient, DownstreamClient
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
ACME = common_pb.Caller(tenant_id="acme", service="chat", user_id="u1")
# gpt-4.1 at 1000 input and 500 output tokens, worst case: 6000 micro-dollars.
CHECK = costs_pb.CheckBudgetRequest(
    request_id="req-1",
    caller=ACME,
    model="gpt-4.1",
    input_tokens=1000,
    max_output_tokens=500,
)


@pytest.fixture
async def channel(
    serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[grpc.aio.Channel]:
    settings = CostsSettings(
        database_path=tmp_path / "ledger" / "costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    server = await serve_app(await build_app(settings, FakeClock()), settings)
    async with admin_channel(server.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> costs_pb2_grpc.CostsServiceStub:
    return costs_pb2_grpc.CostsServiceStub(channel)


async def _set_budget(stub: costs_pb2_grpc.CostsServiceStub) -> None:
    await stub.SetBudget(
        costs_pb.SetBudgetRequest(
            budget=costs_pb.Budget(
                scope=costs_pb.BudgetScope(
                    kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
                ),
                period=costs_pb.BUDGET_PERIOD_DAY,
                limit_micros=10_000,
                hard=True,
            )
        )
    )


async def _reserve(
    stub: costs_pb2_grpc.CostsServiceStub, request_id: str
) -> costs_pb.CheckBudgetResponse:
    check = costs_pb.CheckBudgetRequest()
    check.CopyFrom(CHECK)
    check.request_id = request_id
    response: costs_pb.CheckBudgetResponse = await stub.CheckBudget(check)
    return response


async def test_a_released_reservation_stops_counting_and_books_nothing(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    await _set_budget(stub)
    held = await _reserve(stub, "req-1")
    assert held.decision == costs_pb.BUDGET_DECISION_ALLOW
    # 6000 held: a second worst case of 6000 does not fit in 10 000.
    assert (await _reserve(stub, "req-2")).decision == costs_pb.BUDGET_DECISION_DENY

    released = await stub.Record(
        costs_pb.RecordRequest(
            request_id="req-1",
            budget_reservation_id=held.reservation_id,
            release_only=True,
        )
    )
    again = await stub.Record(
        costs_pb.RecordRequest(
            request_id="req-1",
            budget_reservation_id=held.reservation_id,
            release_only=True,
        )
    )
    after = await _reserve(stub, "req-3")
    report = await stub.GetReport(
        costs_pb.GetReportRequest(end_time=START + timedelta(days=1))
    )

    assert released.reservation_settled
    assert (released.cost_micros, released.duplicate) == (0, False)
    assert released.currency_code == "USD"
    assert not again.reservation_settled  # already released
    assert after.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert after.remaining_micros == 4000
    assert report.total_requests == 0  # nothing booked under req-1


async def test_a_release_needs_the_reservation_id(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Record(costs_pb.RecordRequest(request_id="r", release_only=True))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "budget_reservation_id" in (raised.value.details() or "")


async def test_the_gateways_client_releases_over_grpc(
    channel: grpc.aio.Channel, stub: costs_pb2_grpc.CostsServiceStub
) -> None:
    await _set_budget(stub)
    held = await _reserve(stub, "req-1")
    client = CostsClient(
        DownstreamClient(
            "costs",
            "",
            CircuitBreaker("costs", BreakerConfig(), FakeClock()),
            5.0,
            channel=channel,
        )
    )

    await client.release_budget("req-1", held.reservation_id)

    assert (await _reserve(stub, "req-2")).decision == costs_pb.BUDGET_DECISION_ALLOW
