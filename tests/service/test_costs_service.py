from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc

from services.core.clock import FakeClock
from services.costs.app import SERVICE_NAME, build_app
from services.costs.config import CostsSettings
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
ACME = common_pb.Caller(tenant_id="acme", service="chat", user_id="u1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def channel(
    serve_app: ServeApp, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[grpc.aio.Channel]:
    settings = CostsSettings(
        database_path=tmp_path / "ledger" / "costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    server = await serve_app(await build_app(settings, clock), settings)
    async with admin_channel(server.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> costs_pb2_grpc.CostsServiceStub:
    return costs_pb2_grpc.CostsServiceStub(channel)


def _record(
    request_id: str,
    *,
    model: str = "gpt-4.1",
    input_tokens: int = 1000,
    cached_input_tokens: int = 0,
    output_tokens: int = 500,
    caller: common_pb.Caller = ACME,
    occurred_at: datetime = START,
    **fields: object,
) -> costs_pb.RecordRequest:
    return costs_pb.RecordRequest(
        request_id=request_id,
        caller=caller,
        model=model,
        deployment="blue",
        usage=common_pb.Usage(
            input_tokens=input_tokens,
            cached_input_tokens=cached_input_tokens,
            output_tokens=output_tokens,
        ),
        occurred_at=occurred_at,
        **fields,  # type: ignore[arg-type]
    )


def _bad_request(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of an INVALID_ARGUMENT error from this service.

    Not tests.grpc_helpers.error_details, whose trailers() reads ``item.key``: an aio
    error's trailing metadata iterates as (key, value) pairs.
    """
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    error_info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(error_info)
    assert status.details[1].Unpack(bad_request)
    assert (error_info.domain, error_info.reason) == (
        "costs.tollgate",
        "INVALID_ARGUMENT",
    )
    return [(v.field, v.description) for v in bad_request.field_violations]


def _whole_ledger() -> costs_pb.GetReportRequest:
    return costs_pb.GetReportRequest(end_time=START + timedelta(days=30))


async def test_record_books_the_cost(stub: costs_pb2_grpc.CostsServiceStub) -> None:
    response = await stub.Record(_record("req-1"))

    assert response.cost_micros == 6000
    assert response.saved_micros == 0
    assert response.currency_code == "USD"
    assert not response.duplicate


async def test_cached_input_and_reasoning_tokens_are_priced_once_at_their_rates(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    # gpt-4.1: input 2.00, cached input 0.50, output 8.00 dollars per 1M tokens.
    # 400 of the 1,000 input tokens came from the prompt cache; 300 of the 500
    # output tokens were reasoning, which OpenAI counts inside the output tokens.
    request = _record("req-reasoning", cached_input_tokens=400)
    request.usage.reasoning_tokens = 300

    response = await stub.Record(request)

    # 600 x 2.00 + 400 x 0.50 + 500 x 8.00 per 1M tokens, in micro-dollars: the
    # reasoning tokens are billed as output, once.
    assert response.cost_micros == 1200 + 200 + 4000


async def test_replay_returns_the_same_booking_marked_duplicate(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    first = await stub.Record(
        _record("req-1", cache_status=common_pb.CACHE_STATUS_EXACT)
    )
    replay = await stub.Record(_record("req-1", output_tokens=10_000))

    assert (first.cost_micros, first.saved_micros, first.duplicate) == (0, 6000, False)
    assert (replay.cost_micros, replay.saved_micros, replay.duplicate) == (
        0,
        6000,
        True,
    )
    report = await stub.GetReport(_whole_ledger())
    assert (report.total_requests, report.cache_saved_micros) == (1, 6000)


async def test_concurrent_records_with_duplicates_book_each_request_once(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    unique = [
        _record(
            f"req-{i}",
            model="gpt-4.1-mini",
            input_tokens=100 + i,
            cached_input_tokens=i % 7,
            output_tokens=3 * i + 1,
            batch=i % 5 == 0,
        )
        for i in range(160)
    ]
    requests = unique + unique[::4]  # 200 calls, 20% of them replays

    responses = await asyncio.gather(*(stub.Record(r) for r in requests))
    report = await stub.GetReport(_whole_ledger())

    def expected_cost(request: costs_pb.RecordRequest) -> int:
        usage = request.usage
        micro_dollars = (
            (usage.input_tokens - usage.cached_input_tokens) * Fraction(4, 10)
            + usage.cached_input_tokens * Fraction(1, 10)
            + usage.output_tokens * Fraction(16, 10)
        )
        return math.ceil(micro_dollars / 2 if request.batch else micro_dollars)

    assert sum(response.duplicate for response in responses) == 40
    assert [r.cost_micros for r in responses] == [expected_cost(r) for r in requests]
    assert report.total_requests == 160
    assert report.total_cost_micros == sum(expected_cost(r) for r in unique)


async def test_records_arriving_under_load_wait_to_share_one_commit(
    serve_app: ServeApp, tmp_path: Path, clock: FakeClock
) -> None:
    settings = CostsSettings(
        database_path=tmp_path / "costs.sqlite3",
        max_batch_size=3,
        batch_linger_ms=1000,
    )
    server = await serve_app(await build_app(settings, clock), settings)
    loop = asyncio.get_running_loop()
    answered: dict[str, float] = {}

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = costs_pb2_grpc.CostsServiceStub(channel)

        async def record(request_id: str) -> costs_pb.RecordResponse:
            response: costs_pb.RecordResponse = await stub.Record(_record(request_id))
            answered[request_id] = loop.time()
            return response

        await record("first")  # a commit just ended: the ledger is under load
        calls = []
        for request_id in ("b", "c", "d"):
            calls.append(asyncio.create_task(record(request_id)))
            last_sent = loop.time()
            await asyncio.sleep(0.05)  # arrivals spread out, as requests are
        responses = await asyncio.gather(*calls)
        report = await stub.GetReport(_whole_ledger())

    # Without the wait, "b" would be committed and answered alone, long before
    # "d" was sent; with it the three share the commit that "d" fills.
    assert answered["b"] >= last_sent
    assert [r.cost_micros for r in responses] == [6000, 6000, 6000]
    assert report.total_requests == 4


async def test_report_totals_and_lines(stub: costs_pb2_grpc.CostsServiceStub) -> None:
    globex = common_pb.Caller(tenant_id="globex", service="batch", user_id="u9")
    await stub.Record(_record("a"))  # 6000
    await stub.Record(_record("b", batch=True, occurred_at=START + timedelta(days=1)))
    await stub.Record(
        _record("c", model="gpt-4.1-mini", requested_model="gpt-4.1", caller=globex)
    )  # 1200, saves 4800

    everyone = await stub.GetReport(_whole_ledger())
    acme_first_day = await stub.GetReport(
        costs_pb.GetReportRequest(
            tenant_id="acme", start_time=START, end_time=START + timedelta(days=1)
        )
    )

    assert everyone.total_requests == 3
    assert everyone.total_cost_micros == 10_200
    assert everyone.average_cost_micros == 3400
    assert (everyone.batch_saved_micros, everyone.routing_saved_micros) == (3000, 4800)
    assert everyone.currency_code == "USD"
    assert [(line.key, line.cost_micros) for line in everyone.by_model] == [
        ("gpt-4.1", 9000),
        ("gpt-4.1-mini", 1200),
    ]
    assert [(line.key, line.saved_micros) for line in everyone.by_tenant] == [
        ("acme", 3000),
        ("globex", 4800),
    ]
    assert [line.key for line in everyone.by_service] == ["batch", "chat"]
    assert [line.key for line in everyone.by_user] == ["u1", "u9"]
    assert [(line.key, line.requests) for line in everyone.by_day] == [
        ("2026-01-01", 2),
        ("2026-01-02", 1),
    ]
    day_line = acme_first_day.by_day[0]
    assert (acme_first_day.total_requests, day_line.input_tokens) == (1, 1000)
    assert (day_line.output_tokens, day_line.cached_input_tokens) == (500, 0)


async def test_record_without_time_is_booked_now(
    stub: costs_pb2_grpc.CostsServiceStub, clock: FakeClock
) -> None:
    request = _record("req-1")
    request.ClearField("occurred_at")
    clock.advance(7200)
    await stub.Record(request)

    report = await stub.GetReport(
        costs_pb.GetReportRequest(
            start_time=START + timedelta(hours=2),
            end_time=START + timedelta(hours=2, microseconds=1),
        )
    )

    assert report.total_requests == 1


async def test_invalid_record_names_every_bad_field(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    request = _record("", input_tokens=5, cached_input_tokens=6, output_tokens=-1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Record(request)

    assert set(_bad_request(raised.value)) == {
        ("request_id", "is required"),
        ("usage.output_tokens", "must be >= 0"),
        ("usage.cached_input_tokens", "must not exceed usage.input_tokens"),
    }


async def test_unknown_model_is_invalid_and_books_nothing(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Record(_record("req-1", model="gpt-9"))

    [(field, description)] = _bad_request(raised.value)
    assert field == "model"
    assert description == "no price is in force for this model"
    assert (await stub.GetReport(_whole_ledger())).total_requests == 0


async def test_record_batch_books_each_item_as_record_would(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    response = await stub.RecordBatch(
        costs_pb.RecordBatchRequest(
            items=[
                _record("batch-1"),
                _record("batch-2", model="gpt-9"),
                _record("batch-1", output_tokens=10_000),  # a replay in the batch
                _record("", output_tokens=-1),
                _record("batch-3", model="gpt-4.1-mini"),
            ]
        )
    )

    kinds = [result.WhichOneof("result") for result in response.results]
    assert kinds == ["recorded", "rejected", "recorded", "rejected", "recorded"]
    first, _, replay, _, third = response.results
    assert (first.recorded.cost_micros, first.recorded.duplicate) == (6000, False)
    assert (replay.recorded.cost_micros, replay.recorded.duplicate) == (6000, True)
    assert third.recorded.cost_micros == 1200
    assert [
        (v.field, v.description) for v in response.results[1].rejected.field_violations
    ] == [("model", "no price is in force for this model")]
    assert {
        (v.field, v.description) for v in response.results[3].rejected.field_violations
    } == {("request_id", "is required"), ("usage.output_tokens", "must be >= 0")}
    report = await stub.GetReport(_whole_ledger())
    assert (report.total_requests, report.total_cost_micros) == (2, 7200)


async def test_record_batch_takes_one_to_a_thousand_items(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    too_many = costs_pb.RecordBatchRequest(
        items=[_record(f"r-{i}") for i in range(1001)]
    )
    for request in (costs_pb.RecordBatchRequest(), too_many):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RecordBatch(request)
        assert _bad_request(raised.value) == [("items", "must hold 1 to 1000 items")]
    assert (await stub.GetReport(_whole_ledger())).total_requests == 0


async def test_report_range_must_not_be_empty(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetReport(
            costs_pb.GetReportRequest(start_time=START, end_time=START)
        )

    assert _bad_request(raised.value) == [("end_time", "must be after start_time")]


def _tenant_budget(limit_micros: int) -> costs_pb.Budget:
    return costs_pb.Budget(
        scope=costs_pb.BudgetScope(
            kind=costs_pb.SCOPE_KIND_TENANT, tenant_id="acme", service="ignored"
        ),
        period=costs_pb.BUDGET_PERIOD_DAY,
        limit_micros=limit_micros,
        hard=True,
    )


async def test_hard_budget_denies_a_request_that_would_exceed_it(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    await stub.Record(_record("spent"))  # 6000 today
    set_response = await stub.SetBudget(
        costs_pb.SetBudgetRequest(budget=_tenant_budget(10_000))
    )
    check = costs_pb.CheckBudgetRequest(
        request_id="req-2", caller=ACME, model="gpt-4.1", max_output_tokens=501
    )

    denied = await stub.CheckBudget(check)
    check.max_output_tokens = 250
    allowed = await stub.CheckBudget(check)

    assert set_response.spent_micros == 6000
    assert set_response.budget.scope.service == ""  # not part of a tenant scope
    assert list(set_response.budget.alert_thresholds_percent) == [50, 75, 90, 100]
    assert denied.decision == costs_pb.BUDGET_DECISION_DENY
    assert denied.worst_case_cost_micros == 4008  # 6000 + 4008 > 10 000
    assert denied.exceeded_budget == set_response.budget
    assert denied.resets_at.ToDatetime(tzinfo=UTC) == START + timedelta(days=1)
    assert allowed.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert allowed.remaining_micros == 2000


async def test_check_budget_validates_its_input(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CheckBudget(
            costs_pb.CheckBudgetRequest(request_id="r", caller=ACME, input_tokens=-1)
        )

    assert {field for field, _ in _bad_request(raised.value)} == {
        "model",
        "input_tokens",
    }


async def test_invalid_budget_names_every_bad_field(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    budget = costs_pb.Budget(
        scope=costs_pb.BudgetScope(kind=costs_pb.SCOPE_KIND_SERVICE),
        limit_micros=0,
        alert_thresholds_percent=[0],
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetBudget(costs_pb.SetBudgetRequest(budget=budget))

    assert {field for field, _ in _bad_request(raised.value)} == {
        "budget.scope.tenant_id",
        "budget.scope.service",
        "budget.period",
        "budget.limit_micros",
        "budget.alert_thresholds_percent",
    }


async def test_unknown_downgrade_model_is_invalid(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    budget = _tenant_budget(1)
    budget.downgrade_model = "gpt-9"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetBudget(costs_pb.SetBudgetRequest(budget=budget))

    [(field, _)] = _bad_request(raised.value)
    assert field == "budget.downgrade_model"


async def test_check_reserves_and_record_settles_over_grpc(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    await stub.SetBudget(costs_pb.SetBudgetRequest(budget=_tenant_budget(10_000)))
    check = costs_pb.CheckBudgetRequest(
        request_id="req-1",
        caller=ACME,
        model="gpt-4.1",
        input_tokens=1000,
        max_output_tokens=500,
    )

    reserved = await stub.CheckBudget(check)
    check.request_id = "req-2"
    denied = await stub.CheckBudget(check)  # 6000 held + 6000 > 10 000
    record = _record("req-1", budget_reservation_id=reserved.reservation_id)
    record.usage.output_tokens = 100
    settled = await stub.Record(record)  # 2800
    allowed = await stub.CheckBudget(check)

    assert reserved.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert reserved.reservation_id
    assert reserved.reservation_expires_at.ToDatetime(tzinfo=UTC) == START + (
        timedelta(minutes=15)
    )
    assert denied.decision == costs_pb.BUDGET_DECISION_DENY
    assert (settled.cost_micros, settled.reservation_settled) == (2800, True)
    assert allowed.decision == costs_pb.BUDGET_DECISION_ALLOW
    assert allowed.remaining_micros == 1200


async def test_over_budget_downgrades_over_grpc(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    budget = _tenant_budget(2000)  # gpt-4.1 at the batch price: 3000
    budget.downgrade_model = "gpt-4.1-nano"
    await stub.SetBudget(costs_pb.SetBudgetRequest(budget=budget))

    verdict = await stub.CheckBudget(
        costs_pb.CheckBudgetRequest(
            request_id="req-1",
            caller=ACME,
            model="gpt-4.1",
            input_tokens=1000,
            max_output_tokens=500,
            batch=True,
        )
    )

    assert verdict.decision == costs_pb.BUDGET_DECISION_DOWNGRADE
    assert verdict.downgrade_model == "gpt-4.1-nano"
    assert verdict.worst_case_cost_micros == 150  # (100 + 200) at the batch price
    assert verdict.reservation_id
    assert verdict.exceeded_budget.limit_micros == 2000


async def test_alerts_are_listed_and_streamed_to_every_watcher(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    budget = _tenant_budget(10_000)
    budget.hard = False
    await stub.SetBudget(costs_pb.SetBudgetRequest(budget=budget))
    await stub.Record(_record("r1"))  # 6000: 50%
    watches = [
        stub.WatchAlerts(costs_pb.WatchAlertsRequest(tenant_id="acme", since=START))
        for _ in range(3)
    ]
    # The replayed 50% alert proves each watch is subscribed before what follows.
    replayed = [(await watch.read()).alert for watch in watches]

    await stub.Record(_record("r2", output_tokens=100))  # 8800: 75%
    live = [(await watch.read()).alert for watch in watches]
    for watch in watches:
        watch.cancel()
    listed = await stub.ListAlerts(costs_pb.ListAlertsRequest(tenant_id="acme"))
    others = await stub.ListAlerts(costs_pb.ListAlertsRequest(tenant_id="globex"))

    assert list(listed.alerts) == [replayed[0], live[0]]
    assert replayed == [replayed[0]] * 3
    assert live == [live[0]] * 3
    assert (replayed[0].threshold_percent, replayed[0].spent_micros) == (50, 6000)
    assert (live[0].threshold_percent, live[0].spent_micros) == (75, 8800)
    assert replayed[0].budget.limit_micros == 10_000
    assert replayed[0].period_start.ToDatetime(tzinfo=UTC) == START
    assert list(others.alerts) == []


async def test_a_watcher_of_one_replica_gets_the_alerts_another_replica_fires(
    serve_app: ServeApp, tmp_path: Path, clock: FakeClock
) -> None:
    settings = CostsSettings(
        database_path=tmp_path / "shared" / "costs.sqlite3",
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        alert_poll_interval_seconds=0.05,
    )
    booking = await serve_app(await build_app(settings, clock), settings)
    watching = await serve_app(await build_app(settings, clock), settings)
    async with (
        admin_channel(booking.address) as to_booking,
        admin_channel(watching.address) as to_watching,
    ):
        booker = costs_pb2_grpc.CostsServiceStub(to_booking)
        watcher = costs_pb2_grpc.CostsServiceStub(to_watching)
        budget = _tenant_budget(10_000)
        budget.hard = False
        await booker.SetBudget(costs_pb.SetBudgetRequest(budget=budget))
        watch = watcher.WatchAlerts(costs_pb.WatchAlertsRequest(tenant_id="acme"))
        # 50% fired by the watching replica itself: proves the watch is subscribed.
        await watcher.Record(_record("r1"))  # 6000
        own = (await asyncio.wait_for(watch.read(), timeout=5)).alert

        await booker.Record(_record("r2", output_tokens=100))  # 8800: 75%
        other = (await asyncio.wait_for(watch.read(), timeout=5)).alert
        watch.cancel()

    assert (own.threshold_percent, own.spent_micros) == (50, 6000)
    assert (other.threshold_percent, other.spent_micros) == (75, 8800)


async def test_a_watch_without_alerts_stays_open(
    stub: costs_pb2_grpc.CostsServiceStub,
) -> None:
    watch = stub.WatchAlerts(costs_pb.WatchAlertsRequest(), timeout=0.2)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await watch.read()

    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_health_tracks_the_ledger(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))

    assert response.status == health_pb2.HealthCheckResponse.SERVING
