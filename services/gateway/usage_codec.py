"""Protobuf to usage queries and back, so that GetUsage and GetUsageReport are short.

Only this module and the servicer touch their messages; the reader
(:mod:`services.gateway.usage`) knows nothing of protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core import prototime
from services.core.errors import FieldViolation, InvalidArgumentError
from services.gateway.usage import (
    BudgetScopeKind,
    KeyUsage,
    ReportGrouping,
    UsageLine,
    UsageReport,
)

MAX_MODEL_CHARS = 128

_SCOPES = {
    BudgetScopeKind.TENANT: gateway_pb.USAGE_BUDGET_SCOPE_TENANT,
    BudgetScopeKind.SERVICE: gateway_pb.USAGE_BUDGET_SCOPE_SERVICE,
    BudgetScopeKind.USER: gateway_pb.USAGE_BUDGET_SCOPE_USER,
    BudgetScopeKind.KEY: gateway_pb.USAGE_BUDGET_SCOPE_KEY,
}
_PERIODS = {
    "day": gateway_pb.USAGE_BUDGET_PERIOD_DAY,
    "month": gateway_pb.USAGE_BUDGET_PERIOD_MONTH,
}


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A decoded GetUsageRequest; times in seconds since the Unix epoch."""

    start: float | None
    end: float | None
    model: str


def decode_usage_request(request: gateway_pb.GetUsageRequest) -> UsageQuery:
    """The window and model a GetUsageRequest asks about.

    Raises:
        InvalidArgumentError: the model name is too long, or the window is empty.
    """
    violations = []
    if len(request.model) > MAX_MODEL_CHARS:
        violations.append(
            FieldViolation("model", f"must be at most {MAX_MODEL_CHARS} characters")
        )
    start, end = _window(request, violations)
    if violations:
        raise InvalidArgumentError(violations)
    return UsageQuery(start=start, end=end, model=request.model.strip())


def _window(
    request: gateway_pb.GetUsageRequest | gateway_pb.GetUsageReportRequest,
    violations: list[FieldViolation],
) -> tuple[float | None, float | None]:
    """A request's ``[start_time, end_time)`` in seconds; empty is a violation."""
    start = (
        request.start_time.ToNanoseconds() / 1e9
        if request.HasField("start_time")
        else None
    )
    end = (
        request.end_time.ToNanoseconds() / 1e9 if request.HasField("end_time") else None
    )
    if start is not None and end is not None and end <= start:
        violations.append(FieldViolation("end_time", "must be after start_time"))
    return start, end


def _line(line: UsageLine) -> gateway_pb.UsageLine:
    return gateway_pb.UsageLine(
        key=line.key,
        requests=line.requests,
        cost_micros=line.cost_micros,
        saved_micros=line.saved_micros,
        input_tokens=line.input_tokens,
        cached_input_tokens=line.cached_input_tokens,
        output_tokens=line.output_tokens,
    )


def encode_usage(usage: KeyUsage) -> gateway_pb.GetUsageResponse:
    """The GetUsageResponse for a key's usage."""
    totals = usage.totals
    response = gateway_pb.GetUsageResponse(
        api_key_id=usage.principal.key_id,
        tenant_id=usage.principal.tenant_id,
        end_time=prototime.timestamp(totals.end),
        requests=totals.requests,
        cost_micros=totals.cost_micros,
        saved_micros=totals.saved_micros,
        by_model=[_line(line) for line in totals.by_model],
        by_day=[_line(line) for line in totals.by_day],
        rate_headroom_unknown=usage.headroom is None,
        currency_code=totals.currency_code,
    )
    if totals.start is not None:
        response.start_time.CopyFrom(prototime.timestamp(totals.start))
    if usage.budget_remaining_micros is not None:
        response.budget_remaining_micros = usage.budget_remaining_micros
    for budget in usage.budgets:
        response.budgets.add(
            scope=_SCOPES[budget.scope],
            subject=budget.subject,
            period=_PERIODS.get(
                budget.period, gateway_pb.USAGE_BUDGET_PERIOD_UNSPECIFIED
            ),
            hard=budget.hard,
            limit_micros=budget.limit_micros,
            spent_micros=budget.spent_micros,
            reserved_micros=budget.reserved_micros,
            remaining_micros=budget.remaining_micros,
            resets_at=prototime.timestamp(budget.resets_at),
        )
    for headroom in usage.headroom or ():
        response.rate_headroom.add(
            metric=headroom.metric,
            limit_per_minute=headroom.limit_per_minute,
            remaining=headroom.remaining,
            reset=prototime.duration(headroom.reset_seconds),
        )
    return response


GROUPING_TO_PROTO = {
    ReportGrouping.TENANT: gateway_pb.USAGE_REPORT_GROUPING_TENANT,
    ReportGrouping.API_KEY: gateway_pb.USAGE_REPORT_GROUPING_API_KEY,
    ReportGrouping.USER: gateway_pb.USAGE_REPORT_GROUPING_USER,
    ReportGrouping.SERVICE: gateway_pb.USAGE_REPORT_GROUPING_SERVICE,
    ReportGrouping.MODEL: gateway_pb.USAGE_REPORT_GROUPING_MODEL,
    ReportGrouping.DAY: gateway_pb.USAGE_REPORT_GROUPING_DAY,
}
_GROUPING_FROM_PROTO = {
    gateway_pb.USAGE_REPORT_GROUPING_UNSPECIFIED: ReportGrouping.MODEL,
    **{value: grouping for grouping, value in GROUPING_TO_PROTO.items()},
}
MAX_TENANT_CHARS = 128


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A decoded GetUsageReportRequest; times in seconds since the Unix epoch."""

    tenant_id: str
    start: float | None
    end: float | None
    group_by: ReportGrouping


def decode_report_request(request: gateway_pb.GetUsageReportRequest) -> ReportQuery:
    """The window, tenant and grouping a GetUsageReportRequest asks for.

    Raises:
        InvalidArgumentError: an unknown grouping, a tenant id too long, or an
            empty window.
    """
    violations = []
    group_by = _GROUPING_FROM_PROTO.get(request.group_by)
    if group_by is None:
        violations.append(
            FieldViolation("group_by", f"unknown grouping value {request.group_by}")
        )
    if len(request.tenant_id) > MAX_TENANT_CHARS:
        violations.append(
            FieldViolation(
                "tenant_id", f"must be at most {MAX_TENANT_CHARS} characters"
            )
        )
    start, end = _window(request, violations)
    if violations or group_by is None:
        raise InvalidArgumentError(violations)
    return ReportQuery(request.tenant_id, start, end, group_by)


def encode_report(report: UsageReport) -> gateway_pb.GetUsageReportResponse:
    """The GetUsageReportResponse of an operator's report."""
    response = gateway_pb.GetUsageReportResponse(
        end_time=prototime.timestamp(report.end),
        group_by=GROUPING_TO_PROTO[report.group_by],
        lines=[_line(line) for line in report.lines],
        total=_line(report.total),
        cache_saved_micros=report.cache_saved_micros,
        routing_saved_micros=report.routing_saved_micros,
        batch_saved_micros=report.batch_saved_micros,
        currency_code=report.currency_code,
    )
    if report.start is not None:
        response.start_time.CopyFrom(prototime.timestamp(report.start))
    return response
