"""The ledger by API key, the current period, and budget status (for GetUsage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import FakeClock
from services.costs.app import build_app
from services.costs.config import CostsSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel, error_details

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
KEY_A = common_pb.Caller(
    tenant_id="acme", service="chat", user_id="u1", api_key_id="key_a"
)
KEY_B = common_pb.Caller(
    tenant_id="acme", service="batch", user_id="u2", api_key_id="key_b"
)
Stub = costs_pb2_grpc.CostsServiceStub


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stub(
    serve_app: ServeApp, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Stub]:
    settings = CostsSettings(
        database_path=tmp_path / "costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        timezone="America/New_York",
    )
    server = await serve_app(await build_app(settings, clock), settings)
    async with admin_channel(server.address) as channel:
        yield Stub(channel)


def _record(
    request_id: str, caller: common_pb.Caller, at: datetime, output_tokens: int = 500
) -> costs_pb.RecordRequest:
    return costs_pb.RecordRequest(
        request_id=request_id,
        caller=caller,
        model="gpt-4.1",
        deployment="blue",
        usage=common_pb.Usage(input_tokens=1000, output_tokens=output_tokens),
        occurred_at=at,
    )


async def test_entries_are_booked_and_reported_by_api_key(stub: Stub) -> None:
    await stub.Record(_record("r1", KEY_A, START))
    await stub.Record(_record("r2", KEY_A, START + timedelta(hours=1)))
    await stub.Record(_record("r3", KEY_B, START, output_tokens=1000))
    await stub.Record(
        _record("r4", common_pb.Caller(tenant_id="acme"), START)  # no key id
    )
    end = START + timedelta(days=1)

    everyone = await stub.GetReport(costs_pb.GetReportRequest(end_time=end))
    only_a = await stub.GetReport(
        costs_pb.GetReportRequest(api_key_id="key_a", end_time=end)
    )

    assert [
        (line.key, line.requests, line.cost_micros) for line in everyone.by_api_key
    ] == [
        ("", 1, 6000),
        ("key_a", 2, 12000),
        ("key_b", 1, 10000),
    ]
    assert (only_a.total_requests, only_a.total_cost_micros) == (2, 12000)
    assert [line.key for line in only_a.by_user] == ["u1"]
    assert [line.key for line in only_a.by_api_key] == ["key_a"]


async def test_the_current_month_is_the_ledgers_calendar_month(
    stub: Stub, clock: FakeClock
) -> None:
    # The ledger's zone is New York: 2026-01-01T00:00Z is still December 31st there.
    await stub.Record(_record("december", KEY_A, START))
    await stub.Record(_record("january", KEY_A, START + timedelta(hours=6)))
    clock.advance(86400)

    month = await stub.GetReport(
        costs_pb.GetReportRequest(
            api_key_id="key_a", current_period=costs_pb.BUDGET_PERIOD_MONTH
        )
    )

    assert month.total_requests == 1
    assert [line.key for line in month.by_day] == ["2026-01-01"]
    assert month.start_time.ToDatetime(tzinfo=UTC) == datetime(
        2026, 1, 1, 5, tzinfo=UTC
    )
    assert month.end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 1, 5, tzinfo=UTC)


async def test_a_report_echoes_its_range(stub: Stub, clock: FakeClock) -> None:
    report = await stub.GetReport(
        costs_pb.GetReportRequest(start_time=START - timedelta(days=2))
    )

    assert report.start_time.ToDatetime(tzinfo=UTC) == START - timedelta(days=2)
    assert report.end_time.ToDatetime(tzinfo=UTC) == START


async def test_current_period_with_times_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetReport(
            costs_pb.GetReportRequest(
                current_period=costs_pb.BUDGET_PERIOD_DAY, start_time=START
            )
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(error.value)["google.rpc.BadRequest"].field_violations
    assert [v.field for v in violations] == ["current_period"]


async def test_budget_status_lists_the_callers_chain_with_what_is_left(
    stub: Stub,
) -> None:
    budgets = [
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_USER, tenant_id="acme", user_id="u1"
            ),
            period=costs_pb.BUDGET_PERIOD_DAY,
            limit_micros=50_000,
            hard=True,
        ),
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme"
            ),
            period=costs_pb.BUDGET_PERIOD_MONTH,
            limit_micros=1_000_000,
        ),
        costs_pb.Budget(
            scope=costs_pb.BudgetScope(kind=costs_pb.SCOPE_KIND_GLOBAL),
            period=costs_pb.BUDGET_PERIOD_DAY,
            limit_micros=10_000_000,
            hard=True,
        ),
        costs_pb.Budget(  # another user's: not in u1's chain
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_USER, tenant_id="acme", user_id="u2"
            ),
            period=costs_pb.BUDGET_PERIOD_DAY,
            limit_micros=7,
            hard=True,
        ),
    ]
    for budget in budgets:
        await stub.SetBudget(costs_pb.SetBudgetRequest(budget=budget))
    # "now" is 2025-12-31T19:00 in New York: book within the user's current day.
    await stub.Record(_record("r1", KEY_A, START - timedelta(minutes=1)))
    check = await stub.CheckBudget(
        costs_pb.CheckBudgetRequest(
            request_id="r2",
            caller=KEY_A,
            model="gpt-4.1",
            input_tokens=1000,
            max_output_tokens=1000,
        )
    )

    status = await stub.GetBudgetStatus(costs_pb.GetBudgetStatusRequest(caller=KEY_A))

    assert check.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert [
        (
            costs_pb.ScopeKind.Name(s.budget.scope.kind),
            costs_pb.BudgetPeriod.Name(s.budget.period),
            s.spent_micros,
            s.reserved_micros,
            s.remaining_micros,
        )
        for s in status.budgets
    ] == [
        ("SCOPE_KIND_GLOBAL", "BUDGET_PERIOD_DAY", 6000, 10000, 10_000_000 - 16000),
        ("SCOPE_KIND_TENANT", "BUDGET_PERIOD_MONTH", 6000, 10000, 1_000_000 - 16000),
        ("SCOPE_KIND_USER", "BUDGET_PERIOD_DAY", 6000, 10000, 50_000 - 16000),
    ]
    user_day = status.budgets[2]
    assert user_day.period_start.ToDatetime(tzinfo=UTC) == datetime(
        2025, 12, 31, 5, tzinfo=UTC
    )
    assert user_day.period_end.ToDatetime(tzinfo=UTC) == START + timedelta(hours=5)
    assert status.currency_code == "USD"


async def test_budget_status_needs_a_tenant(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetBudgetStatus(costs_pb.GetBudgetStatusRequest())

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = error_details(error.value)["google.rpc.BadRequest"].field_violations
    assert [v.field for v in violations] == ["caller.tenant_id"]
