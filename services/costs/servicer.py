"""gRPC surface of the costs service: validate, decode, call the ledger, encode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC
from typing import Any, TypeAlias

import grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb

from services.core.errors import FieldViolation, InvalidArgumentError
from services.costs.domain import BudgetDecision, Caller, CostLedger, UsageRecord
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    ReportLine,
    ScopeKind,
)
from services.costs.pricing import TokenUsage, UnknownModelError

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_MAX_REQUEST_ID_LENGTH = 128

_CACHE_STATUSES = {
    common_pb.CACHE_STATUS_UNSPECIFIED: CacheStatus.UNSPECIFIED,
    common_pb.CACHE_STATUS_MISS: CacheStatus.MISS,
    common_pb.CACHE_STATUS_EXACT: CacheStatus.EXACT,
    common_pb.CACHE_STATUS_SEMANTIC: CacheStatus.SEMANTIC,
    common_pb.CACHE_STATUS_SKIPPED: CacheStatus.SKIPPED,
}
_SCOPE_KINDS = {
    costs_pb.SCOPE_KIND_GLOBAL: ScopeKind.GLOBAL,
    costs_pb.SCOPE_KIND_TENANT: ScopeKind.TENANT,
    costs_pb.SCOPE_KIND_SERVICE: ScopeKind.SERVICE,
    costs_pb.SCOPE_KIND_USER: ScopeKind.USER,
}
_PERIODS = {
    costs_pb.BUDGET_PERIOD_DAY: BudgetPeriod.DAY,
    costs_pb.BUDGET_PERIOD_MONTH: BudgetPeriod.MONTH,
}
_SCOPE_KIND_VALUES = {kind: value for value, kind in _SCOPE_KINDS.items()}
_PERIOD_VALUES = {period: value for value, period in _PERIODS.items()}
_DECISIONS = {
    BudgetDecision.ALLOW: costs_pb.BUDGET_DECISION_ALLOW,
    BudgetDecision.DENY: costs_pb.BUDGET_DECISION_DENY,
}


class CostsServicer:
    """Implements ``tollgate.costs.v1.CostsService`` over a :class:`CostLedger`."""

    def __init__(self, ledger: CostLedger) -> None:
        self._ledger = ledger

    async def Record(
        self, request: costs_pb.RecordRequest, context: Context
    ) -> costs_pb.RecordResponse:
        """Book one request's usage; a replayed request id books nothing."""
        violations = [
            *_request_id_violations(request.request_id),
            *_required("model", request.model),
            *_usage_violations(request.usage),
        ]
        if request.cache_status not in _CACHE_STATUSES:
            violations.append(FieldViolation("cache_status", "unknown value"))
        if violations:
            raise InvalidArgumentError(violations)
        record = UsageRecord(
            request_id=request.request_id,
            caller=_decode_caller(request.caller),
            model=request.model,
            requested_model=request.requested_model,
            deployment=request.deployment,
            usage=TokenUsage(
                input_tokens=request.usage.input_tokens,
                cached_input_tokens=request.usage.cached_input_tokens,
                output_tokens=request.usage.output_tokens,
            ),
            batch=request.batch,
            cache_status=_CACHE_STATUSES[request.cache_status],
            occurred_at=(
                request.occurred_at.ToDatetime(tzinfo=UTC)
                if request.HasField("occurred_at")
                else None
            ),
        )
        with _unknown_model_is_invalid("model"):
            result = await self._ledger.record(record)
        return costs_pb.RecordResponse(
            cost_micros=result.cost_micros,
            saved_micros=result.saved_micros,
            currency_code=result.currency_code,
            duplicate=result.duplicate,
        )

    async def CheckBudget(
        self, request: costs_pb.CheckBudgetRequest, context: Context
    ) -> costs_pb.CheckBudgetResponse:
        """Check the worst-case cost against hard budgets; no reservation yet."""
        violations = [
            *_request_id_violations(request.request_id),
            *_required("model", request.model),
        ]
        if request.input_tokens < 0:
            violations.append(FieldViolation("input_tokens", "must be >= 0"))
        if request.max_output_tokens < 0:
            violations.append(FieldViolation("max_output_tokens", "must be >= 0"))
        if violations:
            raise InvalidArgumentError(violations)
        with _unknown_model_is_invalid("model"):
            verdict = await self._ledger.check_budget(
                _decode_caller(request.caller),
                request.model,
                request.input_tokens,
                request.max_output_tokens,
            )
        response = costs_pb.CheckBudgetResponse(
            decision=_DECISIONS[verdict.decision],
            worst_case_cost_micros=verdict.worst_case_cost_micros,
            remaining_micros=verdict.remaining_micros,
        )
        if verdict.exceeded_budget is not None:
            response.exceeded_budget.CopyFrom(_encode_budget(verdict.exceeded_budget))
        if verdict.resets_at is not None:
            response.resets_at.FromDatetime(verdict.resets_at)
        return response

    async def SetBudget(
        self, request: costs_pb.SetBudgetRequest, context: Context
    ) -> costs_pb.SetBudgetResponse:
        """Create or replace the budget of one scope and period."""
        if not request.HasField("budget"):
            raise InvalidArgumentError([FieldViolation("budget", "is required")])
        violations = _budget_violations(request.budget)
        if violations:
            raise InvalidArgumentError(violations)
        with _unknown_model_is_invalid("budget.downgrade_model"):
            status = await self._ledger.set_budget(_decode_budget(request.budget))
        return costs_pb.SetBudgetResponse(
            budget=_encode_budget(status.budget), spent_micros=status.spent_micros
        )

    async def GetReport(
        self, request: costs_pb.GetReportRequest, context: Context
    ) -> costs_pb.GetReportResponse:
        """Total spend and savings over ``[start_time, end_time)``."""
        start = (
            request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time")
            else None
        )
        end = (
            request.end_time.ToDatetime(tzinfo=UTC)
            if request.HasField("end_time")
            else None
        )
        if start is not None and end is not None and end <= start:
            raise InvalidArgumentError(
                [FieldViolation("end_time", "must be after start_time")]
            )
        report = await self._ledger.report(request.tenant_id, start, end)
        summary = report.summary
        return costs_pb.GetReportResponse(
            total_requests=summary.requests,
            total_cost_micros=summary.cost_micros,
            average_cost_micros=report.average_cost_micros,
            cache_saved_micros=summary.cache_saved_micros,
            routing_saved_micros=summary.routing_saved_micros,
            batch_saved_micros=summary.batch_saved_micros,
            by_model=_encode_lines(summary.by_model),
            by_service=_encode_lines(summary.by_service),
            by_user=_encode_lines(summary.by_user),
            by_tenant=_encode_lines(summary.by_tenant),
            by_day=_encode_lines(summary.by_day),
            currency_code=report.currency_code,
        )

    async def ListAlerts(
        self, request: costs_pb.ListAlertsRequest, context: Context
    ) -> costs_pb.ListAlertsResponse:
        """List fired alerts: none yet, budget thresholds do not fire alerts."""
        return costs_pb.ListAlertsResponse()

    async def WatchAlerts(
        self, request: costs_pb.WatchAlertsRequest, context: Context
    ) -> AsyncIterator[costs_pb.WatchAlertsResponse]:
        """Stream alerts as they fire.

        No alert fires yet, so the stream stays open and empty until the client
        cancels it or the server stops.
        """
        await asyncio.Event().wait()
        return
        yield  # makes this an async generator, the form streaming handlers take


@contextlib.contextmanager
def _unknown_model_is_invalid(field: str) -> Iterator[None]:
    try:
        yield
    except UnknownModelError as error:
        raise InvalidArgumentError([FieldViolation(field, str(error))]) from error


def _request_id_violations(request_id: str) -> list[FieldViolation]:
    if not request_id:
        return [FieldViolation("request_id", "is required")]
    if len(request_id) > _MAX_REQUEST_ID_LENGTH:
        return [
            FieldViolation(
                "request_id", f"must be at most {_MAX_REQUEST_ID_LENGTH} characters"
            )
        ]
    return []


def _required(field: str, value: str) -> list[FieldViolation]:
    return [] if value else [FieldViolation(field, "is required")]


def _usage_violations(usage: common_pb.Usage) -> list[FieldViolation]:
    violations = [
        FieldViolation(f"usage.{name}", "must be >= 0")
        for name, value in (
            ("input_tokens", usage.input_tokens),
            ("cached_input_tokens", usage.cached_input_tokens),
            ("output_tokens", usage.output_tokens),
        )
        if value < 0
    ]
    if usage.cached_input_tokens > usage.input_tokens:
        violations.append(
            FieldViolation(
                "usage.cached_input_tokens", "must not exceed usage.input_tokens"
            )
        )
    return violations


def _budget_violations(budget: costs_pb.Budget) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    kind = _SCOPE_KINDS.get(budget.scope.kind)
    if kind is None:
        violations.append(
            FieldViolation(
                "budget.scope.kind", "must be GLOBAL, TENANT, SERVICE or USER"
            )
        )
    elif kind is not ScopeKind.GLOBAL and not budget.scope.tenant_id:
        violations.append(
            FieldViolation(
                "budget.scope.tenant_id", f"is required for a {kind.value} scope"
            )
        )
    if kind is ScopeKind.SERVICE and not budget.scope.service:
        violations.append(
            FieldViolation("budget.scope.service", "is required for a service scope")
        )
    if kind is ScopeKind.USER and not budget.scope.user_id:
        violations.append(
            FieldViolation("budget.scope.user_id", "is required for a user scope")
        )
    if budget.period not in _PERIODS:
        violations.append(FieldViolation("budget.period", "must be DAY or MONTH"))
    if budget.limit_micros <= 0:
        violations.append(FieldViolation("budget.limit_micros", "must be > 0"))
    if 0 in budget.alert_thresholds_percent:
        violations.append(
            FieldViolation("budget.alert_thresholds_percent", "must all be > 0")
        )
    return violations


def _decode_caller(caller: common_pb.Caller) -> Caller:
    return Caller(
        tenant_id=caller.tenant_id, service=caller.service, user_id=caller.user_id
    )


def _decode_budget(budget: costs_pb.Budget) -> Budget:
    kind = _SCOPE_KINDS[budget.scope.kind]
    # Fields that do not apply to the scope's kind are dropped, not stored.
    scope = BudgetScope(
        kind=kind,
        tenant_id="" if kind is ScopeKind.GLOBAL else budget.scope.tenant_id,
        service=budget.scope.service if kind is ScopeKind.SERVICE else "",
        user_id=budget.scope.user_id if kind is ScopeKind.USER else "",
    )
    return Budget(
        scope=scope,
        period=_PERIODS[budget.period],
        limit_micros=budget.limit_micros,
        hard=budget.hard,
        alert_thresholds_percent=tuple(budget.alert_thresholds_percent),
        downgrade_model=budget.downgrade_model,
    )


def _encode_budget(budget: Budget) -> costs_pb.Budget:
    return costs_pb.Budget(
        scope=costs_pb.BudgetScope(
            kind=_SCOPE_KIND_VALUES[budget.scope.kind],
            tenant_id=budget.scope.tenant_id,
            service=budget.scope.service,
            user_id=budget.scope.user_id,
        ),
        period=_PERIOD_VALUES[budget.period],
        limit_micros=budget.limit_micros,
        hard=budget.hard,
        alert_thresholds_percent=budget.alert_thresholds_percent,
        downgrade_model=budget.downgrade_model,
    )


def _encode_lines(lines: Sequence[ReportLine]) -> list[costs_pb.ReportLine]:
    return [
        costs_pb.ReportLine(
            key=line.key,
            requests=line.requests,
            cost_micros=line.cost_micros,
            saved_micros=line.saved_micros,
            input_tokens=line.input_tokens,
            cached_input_tokens=line.cached_input_tokens,
            output_tokens=line.output_tokens,
        )
        for line in lines
    ]
