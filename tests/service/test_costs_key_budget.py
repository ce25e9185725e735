"""Budgets of one API key: the costs service's KEY scope, on SQLite and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import FakeClock
from services.costs.app import build_app
from services.costs.config import CostsSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
KEY_A = common_pb.Caller(tenant_id="acme", service="chat", api_key_id="tk_aaaa")
KEY_B = common_pb.Caller(tenant_id="acme", service="chat", api_key_id="tk_bbbb")


@pytest.fixture(params=["sqlite", "postgres"])
async def stub(
    request: pytest.FixtureRequest, serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[costs_pb2_grpc.CostsServiceStub]:
    schema = ""
    if request.param == "sqlite":
        settings = CostsSettings(
            database_path=tmp_path / "costs.sqlite3",
            admin_key_sha256s=ADMIN_KEY_SHA256S,
        )
    else:
        import psycopg

        base_dsn: str = request.getfixturevalue("postgres_dsn")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        settings = CostsSettings(
            postgres_dsn=f"{base_dsn} options='-csearch_path={schema}'",
            admin_key_sha256s=ADMIN_KEY_SHA256S,
        )
    server = await serve_app(await build_app(settings, FakeClock()), settings)
    async with admin_channel(server.address) as channel:
        yield costs_pb2_grpc.CostsServiceStub(channel)
    if schema:  # idle autocommit connections hold no locks: the drop goes through
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _spend(request_id: str, caller: common_pb.Caller) -> costs_pb.RecordRequest:
    # gpt-4.1: 1,000 input tokens at $2/M and 500 output at $8/M: 6,000 micros.
    return costs_pb.RecordRequest(
        request_id=request_id,
        caller=caller,
        model="gpt-4.1",
        deployment="blue",
        usage=common_pb.Usage(input_tokens=1000, output_tokens=500),
        occurred_at=START,
    )


def _key_budget(api_key_id: str, limit_micros: int) -> costs_pb.SetBudgetRequest:
    return costs_pb.SetBudgetRequest(
        budget=costs_pb.Budget(
            scope=costs_pb.BudgetScope(
                kind=costs_pb.SCOPE_KIND_KEY,
                tenant_id="acme",
                api_key_id=api_key_id,
                user_id="ignored",
            ),
            period=costs_pb.BUDGET_PERIOD_MONTH,
            limit_micros=limit_micros,
            hard=True,
        )
    )


def _check(request_id: str, caller: common_pb.Caller) -> costs_pb.CheckBudgetRequest:
    # A worst case of 375 output tokens at $8/M: 3,000 micros.
    return costs_pb.CheckBudgetRequest(
        request_id=request_id, caller=caller, model="gpt-4.1", max_output_tokens=375
    )


async def test_a_key_budget_counts_only_that_keys_spend_and_reservations(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    await stub.Record(_spend("a-1", KEY_A))
    await stub.Record(_spend("b-1", KEY_B))
    await stub.Record(_spend("b-2", KEY_B))

    set_response = await stub.SetBudget(_key_budget("tk_aaaa", 12_000))
    first = await stub.CheckBudget(_check("a-2", KEY_A))  # 6,000 + 3,000
    second = await stub.CheckBudget(_check("a-3", KEY_A))  # + 3,000 reserved
    third = await stub.CheckBudget(_check("a-4", KEY_A))  # would pass 12,000
    other_key = await stub.CheckBudget(_check("b-3", KEY_B))

    assert set_response.spent_micros == 6000  # key B's 12,000 do not count
    scope = set_response.budget.scope
    assert (scope.kind, scope.tenant_id, scope.api_key_id, scope.user_id) == (
        costs_pb.SCOPE_KIND_KEY,
        "acme",
        "tk_aaaa",
        "",  # not part of a key scope
    )
    assert first.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert second.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert third.decision == costs_pb.BUDGET_DECISION_DENY
    assert other_key.decision == costs_pb.BUDGET_DECISION_ALLOW

    status = await stub.GetBudgetStatus(costs_pb.GetBudgetStatusRequest(caller=KEY_A))
    (budget,) = status.budgets
    assert budget.budget.scope.api_key_id == "tk_aaaa"
    assert (budget.spent_micros, budget.reserved_micros) == (6000, 6000)
    none_for_b = await stub.GetBudgetStatus(
        costs_pb.GetBudgetStatusRequest(caller=KEY_B)
    )
    assert list(none_for_b.budgets) == []


async def test_budgets_of_two_keys_of_one_tenant_are_kept_apart(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    await stub.SetBudget(_key_budget("tk_aaaa", 1_000))
    await stub.SetBudget(_key_budget("tk_bbbb", 100_000))

    denied = await stub.CheckBudget(_check("a-1", KEY_A))
    allowed = await stub.CheckBudget(_check("b-1", KEY_B))

    assert denied.decision == costs_pb.BUDGET_DECISION_DENY
    assert allowed.decision == costs_pb.BUDGET_DECISION_ALLOW


async def test_a_key_scope_needs_its_key_id(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetBudget(_key_budget("", 1_000))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(raised.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("budget.scope.api_key_id", "is required for a key scope")
    ]
