"""gRPC surface of the costs service: validate, decode, call the ledger, encode."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.costs.v1 import costs_pb2 as costs_pb

from services.core import metrics
from services.core.errors import FieldViolation, InvalidArgumentError
from services.core.pricing import TokenUsage, UnknownModelError
from services.costs.domain import (
    BudgetDecision,
    BudgetRequest,
    Caller,
    CostLedger,
    UsageRecord,
    remaining_micros,
)
from services.costs.ports import (
    Alert,
    AlertDelivery,
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    DeliveryQuery,
    DeliveryState,
    ReportLine,
    ScopeKind,
)
from services.costs.webhooks import WebhookDispatcher, idempotency_key

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_MAX_REQUEST_ID_LENGTH = 128
MAX_RECORD_BATCH_ITEMS = 1000
"""The most records one RecordBatch carries."""

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
    costs_pb.SCOPE_KIND_KEY: ScopeKind.KEY,
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
    BudgetDecision.DOWNGRADE: costs_pb.BUDGET_DECISION_DOWNGRADE,
}


class CostsServicer:
    """Implements ``tollgate.costs.v1.CostsService`` over a :class:`CostLedger`."""

    def __init__(
        self, ledger: CostLedger, webhooks: WebhookDispatcher | None = None
    ) -> None:
        self._ledger = ledger
        self._webhooks = webhooks

    async def Record(
        self, request: costs_pb.RecordRequest, context: Context
    ) -> costs_pb.RecordResponse:
        """Book one request's usage; a replayed request id books nothing."""
        return await self._record(request)

    async def RecordBatch(
        self, request: costs_pb.RecordBatchRequest, context: Context
    ) -> costs_pb.RecordBatchResponse:
        """Book each item as Record would, concurrently, so they share commits.

        An item Record would refuse with INVALID_ARGUMENT is refused in its result;
        any other failure (the ledger's store) fails the call.
        """
        if not 1 <= len(request.items) <= MAX_RECORD_BATCH_ITEMS:
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        "items", f"must hold 1 to {MAX_RECORD_BATCH_ITEMS} items"
                    )
                ]
            )
        outcomes = await asyncio.gather(
            *(self._record(item) for item in request.items), return_exceptions=True
        )
        results = []
        for outcome in outcomes:
            if isinstance(outcome, InvalidArgumentError):
                results.append(
                    costs_pb.RecordBatchResult(
                        rejected=costs_pb.RecordRejection(
                            field_violations=[
                                costs_pb.FieldViolation(
                                    field=v.field, description=v.description
                                )
                                for v in outcome.violations
                            ]
                        )
                    )
                )
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(costs_pb.RecordBatchResult(recorded=outcome))
        return costs_pb.RecordBatchResponse(results=results)

    async def _record(self, request: costs_pb.RecordRequest) -> costs_pb.RecordResponse:
        if request.release_only:
            return await self._release(request)
        violations = [
            *_request_id_violations(request.request_id),
            *_required("model", request.model),
            *_length_violations("model", request.model),
            *_usage_violations(request.usage),
            *_length_violations("budget_reservation_id", request.budget_reservation_id),
            *_length_violations("caller.api_key_id", request.caller.api_key_id),
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
            occurred_at=_optional_time(request, "occurred_at"),
            reservation_id=request.budget_reservation_id,
        )
        with _unknown_model_is_invalid("model"):
            result = await self._ledger.record(record)
        if not result.duplicate:
            metrics.COSTS_SPEND.labels(record.model).inc(result.cost_micros)
            metrics.COSTS_SAVED.labels(record.model).inc(result.saved_micros)
        return costs_pb.RecordResponse(
            cost_micros=result.cost_micros,
            saved_micros=result.saved_micros,
            currency_code=result.currency_code,
            duplicate=result.duplicate,
            reservation_settled=result.reservation_settled,
        )

    async def _release(
        self, request: costs_pb.RecordRequest
    ) -> costs_pb.RecordResponse:
        """Release a reservation whose request booked nothing (``release_only``)."""
        violations = [
            *_request_id_violations(request.request_id),
            *_required("budget_reservation_id", request.budget_reservation_id),
            *_length_violations("budget_reservation_id", request.budget_reservation_id),
        ]
        if violations:
            raise InvalidArgumentError(violations)
        released = await self._ledger.release(request.budget_reservation_id)
        return costs_pb.RecordResponse(
            currency_code=self._ledger.currency_code, reservation_settled=released
        )

    async def CheckBudget(
        self, request: costs_pb.CheckBudgetRequest, context: Context
    ) -> costs_pb.CheckBudgetResponse:
        """Reserve the worst-case cost against the caller's budgets, or refuse."""
        violations = [
            *_request_id_violations(request.request_id),
            *_required("model", request.model),
            *_length_violations("model", request.model),
        ]
        if request.input_tokens < 0:
            violations.append(FieldViolation("input_tokens", "must be >= 0"))
        if request.max_output_tokens < 0:
            violations.append(FieldViolation("max_output_tokens", "must be >= 0"))
        if violations:
            raise InvalidArgumentError(violations)
        with _unknown_model_is_invalid("model"):
            verdict = await self._ledger.check_budget(
                BudgetRequest(
                    request_id=request.request_id,
                    caller=_decode_caller(request.caller),
                    model=request.model,
                    input_tokens=request.input_tokens,
                    max_output_tokens=request.max_output_tokens,
                    batch=request.batch,
                )
            )
        metrics.COSTS_BUDGET_CHECKS.labels(
            "store" if verdict.store_checked else "no_budget"
        ).inc()
        response = costs_pb.CheckBudgetResponse(
            decision=_DECISIONS[verdict.decision],
            reservation_id=verdict.reservation_id,
            worst_case_cost_micros=verdict.worst_case_cost_micros,
            remaining_micros=verdict.remaining_micros,
        )
        if verdict.decision is BudgetDecision.DOWNGRADE:
            response.downgrade_model = verdict.model
        if verdict.reservation_expires_at is not None:
            response.reservation_expires_at.FromDatetime(verdict.reservation_expires_at)
        if verdict.exceeded_budget is not None:
            response.exceeded_budget.CopyFrom(_encode_budget(verdict.exceeded_budget))
        if verdict.resets_at is not None:
            response.resets_at.FromDatetime(verdict.resets_at)
        if verdict.tenant_unbudgeted_for is not None:
            response.tenant_unbudgeted_for.FromTimedelta(verdict.tenant_unbudgeted_for)
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
        start = _optional_time(request, "start_time")
        end = _optional_time(request, "end_time")
        if start is not None and end is not None and end <= start:
            raise InvalidArgumentError(
                [FieldViolation("end_time", "must be after start_time")]
            )
        current_period: BudgetPeriod | None = None
        if request.current_period != costs_pb.BUDGET_PERIOD_UNSPECIFIED:
            current_period = _PERIODS.get(request.current_period)
            if current_period is None:
                raise InvalidArgumentError(
                    [FieldViolation("current_period", "must be DAY or MONTH")]
                )
            if start is not None or end is not None:
                raise InvalidArgumentError(
                    [
                        FieldViolation(
                            "current_period",
                            "must not be set with start_time or end_time",
                        )
                    ]
                )
        report = await self._ledger.report(
            request.tenant_id,
            start,
            end,
            api_key_id=request.api_key_id,
            current_period=current_period,
        )
        summary = report.summary
        response = costs_pb.GetReportResponse(
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
            by_api_key=_encode_lines(summary.by_api_key),
            currency_code=report.currency_code,
        )
        if report.start is not None:
            response.start_time.FromDatetime(report.start)
        if report.end is not None:
            response.end_time.FromDatetime(report.end)
        return response

    async def GetBudgetStatus(
        self, request: costs_pb.GetBudgetStatusRequest, context: Context
    ) -> costs_pb.GetBudgetStatusResponse:
        """Every budget of the caller's scopes with what is left; reserves nothing."""
        violations = [
            *_required("caller.tenant_id", request.caller.tenant_id),
            *_length_violations("caller.tenant_id", request.caller.tenant_id),
            *_length_violations("caller.service", request.caller.service),
            *_length_violations("caller.user_id", request.caller.user_id),
        ]
        if violations:
            raise InvalidArgumentError(violations)
        usages = await self._ledger.budget_status(_decode_caller(request.caller))
        response = costs_pb.GetBudgetStatusResponse(
            currency_code=self._ledger.currency_code
        )
        for usage in usages:
            status = response.budgets.add(
                budget=_encode_budget(usage.budget),
                spent_micros=usage.spent_micros,
                reserved_micros=usage.reserved_micros,
                remaining_micros=remaining_micros(usage),
            )
            status.period_start.FromDatetime(usage.period[0])
            status.period_end.FromDatetime(usage.period[1])
        return response

    async def ListAlerts(
        self, request: costs_pb.ListAlertsRequest, context: Context
    ) -> costs_pb.ListAlertsResponse:
        """List fired alerts, oldest first, optionally of one tenant and since."""
        alerts = await self._ledger.list_alerts(
            request.tenant_id, _optional_time(request, "since")
        )
        return costs_pb.ListAlertsResponse(alerts=[_encode_alert(a) for a in alerts])

    async def WatchAlerts(
        self, request: costs_pb.WatchAlertsRequest, context: Context
    ) -> AsyncIterator[costs_pb.WatchAlertsResponse]:
        """Stream alerts as they fire, after those fired since ``since`` if set.

        The watch is subscribed before the stored alerts are read, so no alert
        falls between the two; one present in both is sent once. The stream ends
        when the client cancels it or the server stops.
        """
        with self._ledger.watch_alerts(request.tenant_id) as watch:
            replayed: set[str] = set()
            since = _optional_time(request, "since")
            if since is not None:
                for alert in await self._ledger.list_alerts(request.tenant_id, since):
                    replayed.add(alert.alert_id)
                    yield costs_pb.WatchAlertsResponse(alert=_encode_alert(alert))
            while True:
                alert = await watch.next()
                if alert.alert_id in replayed:
                    continue
                yield costs_pb.WatchAlertsResponse(alert=_encode_alert(alert))

    async def ListAlertDeliveries(
        self, request: costs_pb.ListAlertDeliveriesRequest, context: Context
    ) -> costs_pb.ListAlertDeliveriesResponse:
        """List alert deliveries to webhook endpoints, with every attempt made."""
        violations = [
            *_length_violations("alert_id", request.alert_id),
            *_length_violations("tenant_id", request.tenant_id),
            *_length_violations("endpoint", request.endpoint),
        ]
        if violations:
            raise InvalidArgumentError(violations)
        query = DeliveryQuery(
            alert_id=request.alert_id,
            tenant_id=request.tenant_id,
            endpoint=request.endpoint,
            since=_optional_time(request, "since"),
        )
        # Without a dispatcher no webhook is wired, so nothing was ever queued.
        deliveries = (
            await self._webhooks.list_deliveries(query) if self._webhooks else []
        )
        return costs_pb.ListAlertDeliveriesResponse(
            deliveries=[_encode_delivery(delivery) for delivery in deliveries]
        )


@contextlib.contextmanager
def _unknown_model_is_invalid(field: str) -> Iterator[None]:
    try:
        yield
    except UnknownModelError as error:
        # Never echo the caller's text back: a model name can be megabytes long.
        raise InvalidArgumentError(
            [FieldViolation(field, "no price is in force for this model")]
        ) from error


def _request_id_violations(request_id: str) -> list[FieldViolation]:
    if not request_id:
        return [FieldViolation("request_id", "is required")]
    return _length_violations("request_id", request_id)


def _length_violations(field: str, value: str) -> list[FieldViolation]:
    if len(value) > _MAX_REQUEST_ID_LENGTH:
        return [
            FieldViolation(
                field, f"must be at most {_MAX_REQUEST_ID_LENGTH} characters"
            )
        ]
    return []


# Times the ledger accepts: far enough either side of now for any real request, and
# far from the edges of datetime, where calendar periods would overflow.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _optional_time(message: Any, field: str) -> datetime | None:
    # Any: every request message with an optional Timestamp field.
    if not message.HasField(field):
        return None
    try:
        stamp: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise InvalidArgumentError(
            [FieldViolation(field, "is not a valid timestamp")]
        ) from error
    if not _EARLIEST <= stamp < _LATEST:
        raise InvalidArgumentError(
            [FieldViolation(field, "must be between 1970 and 9000")]
        )
    return stamp


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
                "budget.scope.kind", "must be GLOBAL, TENANT, SERVICE, USER or KEY"
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
    if kind is ScopeKind.KEY and not budget.scope.api_key_id:
        violations.append(
            FieldViolation("budget.scope.api_key_id", "is required for a key scope")
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
        tenant_id=caller.tenant_id,
        service=caller.service,
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
    )


def _decode_budget(budget: costs_pb.Budget) -> Budget:
    kind = _SCOPE_KINDS[budget.scope.kind]
    # Fields that do not apply to the scope's kind are dropped, not stored.
    scope = BudgetScope(
        kind=kind,
        tenant_id="" if kind is ScopeKind.GLOBAL else budget.scope.tenant_id,
        service=budget.scope.service if kind is ScopeKind.SERVICE else "",
        user_id=budget.scope.user_id if kind is ScopeKind.USER else "",
        api_key_id=budget.scope.api_key_id if kind is ScopeKind.KEY else "",
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
            api_key_id=budget.scope.api_key_id,
        ),
        period=_PERIOD_VALUES[budget.period],
        limit_micros=budget.limit_micros,
        hard=budget.hard,
        alert_thresholds_percent=budget.alert_thresholds_percent,
        downgrade_model=budget.downgrade_model,
    )


def _encode_alert(alert: Alert) -> costs_pb.Alert:
    encoded = costs_pb.Alert(
        alert_id=alert.alert_id,
        budget=_encode_budget(alert.budget),
        threshold_percent=alert.threshold_percent,
        spent_micros=alert.spent_micros,
    )
    encoded.period_start.FromDatetime(alert.period_start)
    encoded.fired_at.FromDatetime(alert.fired_at)
    return encoded


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


_DELIVERY_STATES = {
    DeliveryState.PENDING: costs_pb.ALERT_DELIVERY_STATE_PENDING,
    DeliveryState.DELIVERED: costs_pb.ALERT_DELIVERY_STATE_DELIVERED,
    DeliveryState.FAILED: costs_pb.ALERT_DELIVERY_STATE_FAILED,
}


def _encode_delivery(delivery: AlertDelivery) -> costs_pb.AlertDelivery:
    encoded = costs_pb.AlertDelivery(
        alert=_encode_alert(delivery.alert),
        endpoint=delivery.endpoint,
        idempotency_key=idempotency_key(delivery.alert.alert_id, delivery.endpoint),
        state=_DELIVERY_STATES[delivery.state],
    )
    encoded.created_at.FromDatetime(delivery.created_at)
    if delivery.next_attempt_at is not None:
        encoded.next_attempt_at.FromDatetime(delivery.next_attempt_at)
    if delivery.finished_at is not None:
        encoded.finished_at.FromDatetime(delivery.finished_at)
    for attempt in delivery.attempts:
        logged = encoded.attempts.add(
            attempt=attempt.attempt,
            http_status=attempt.http_status,
            error=attempt.error,
        )
        logged.attempted_at.FromDatetime(attempt.attempted_at)
        logged.latency.FromTimedelta(attempt.latency)
    return encoded
