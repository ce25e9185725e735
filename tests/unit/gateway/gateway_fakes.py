"""In-memory fakes of the gateway's ports, recording what the orchestrator asks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.breaker import BreakerConfig
from services.core.clock import FakeClock
from services.core.conversation import FinishReason, Prompt, ToolCall
from services.core.pricing import load_pricing
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.batches import BatchItemRequest
from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    RateDecision,
    RecordResult,
    ResponseRequest,
    Route,
    ToolCallDelta,
    UpstreamAnswer,
    UpstreamCall,
    Usage,
    UsageRecord,
)
from services.gateway.fallbacks import LocalLimiter
from services.gateway.orchestrator import FlowConfig, Orchestrator
from services.gateway.ports import (
    DependencyUnavailableError,
    OutcomeReport,
    ReconcileItem,
    ReusedRoutes,
    UpstreamStreamBrokenError,
)
from services.gateway.queue import AdmissionQueue

UPSTREAM_USAGE = Usage(input_tokens=12, cached_input_tokens=0, output_tokens=30)


SYNC_ROUTE = Route(
    model="gpt-4.1-mini",
    deployment="stable",
    lane=Lane.SYNC,
    max_output_tokens=500,
    input_token_cap=2000,
    degradation_level=DegradationLevel.FULL_SERVICE,
    fallback_models=("gpt-4.1-nano",),
)


def sync_route(**overrides: Any) -> Route:
    """A router answer for gpt-4.1-mini with gpt-4.1-nano as its fallback."""
    return dataclasses.replace(SYNC_ROUTE, **overrides)


@dataclass(frozen=True)
class Acquired:
    """One acquire call."""

    request_id: str
    principal: Principal
    model: str
    tokens: int


class FakeRateLimiter:
    """Admits (with a fresh reservation id) or answers ``decision``; can be down."""

    def __init__(self) -> None:
        self.decision: RateDecision | None = None
        self.unavailable = False
        self.acquired: list[Acquired] = []
        self.reconciled: list[tuple[str, int]] = []
        self.reports: list[tuple[str, bool, float]] = []

    async def acquire(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        if self.unavailable:
            raise DependencyUnavailableError("ratelimit", "ratelimit down", 2.0)
        self.acquired.append(Acquired(request_id, principal, model, tokens))
        if self.decision is not None:
            return self.decision
        return RateDecision(allowed=True, reservation_id=f"res-{request_id}")

    async def reconcile(self, reservation_id: str, actual_tokens: int) -> None:
        self.reconciled.append((reservation_id, actual_tokens))

    async def reconcile_batch(self, items: Sequence[ReconcileItem]) -> None:
        self.reconciled.extend((i.reservation_id, i.actual_tokens) for i in items)

    async def report_upstream(
        self, model: str, throttled: bool, retry_after: float
    ) -> None:
        self.reports.append((model, throttled, retry_after))


class FakeCache:
    """A dict of answers; a store makes the next identical lookup an exact hit."""

    def __init__(self) -> None:
        self.entries: dict[CacheKeyParts, CachedAnswer] = {}
        self.stored: list[tuple[CacheKeyParts, UpstreamAnswer]] = []
        self.lookups: list[CacheKeyParts] = []
        self.unavailable = False

    async def lookup(self, request_id: str, key: CacheKeyParts) -> CachedAnswer | None:
        if self.unavailable:
            raise DependencyUnavailableError("cache", "cache down")
        self.lookups.append(key)
        return self.entries.get(key)

    async def store(
        self, request_id: str, key: CacheKeyParts, answer: UpstreamAnswer
    ) -> None:
        if self.unavailable:
            raise DependencyUnavailableError("cache", "cache down")
        self.stored.append((key, answer))
        self.entries[key] = CachedAnswer(
            output_text=answer.output_text,
            model=answer.model,
            usage=answer.usage,
            status=CacheStatus.EXACT,
            similarity=1.0,
        )


class FakeRouter:
    """Answers ``answer``: a route, or an error to raise."""

    def __init__(self) -> None:
        self.answer: Route | Exception = sync_route()
        self.calls: list[tuple[Principal, ResponseRequest, int]] = []
        self.outcomes: list[tuple[str, str, bool]] = []
        self.reused: list[ReusedRoutes] = []
        self.holds: list[tuple[DegradationLevel, float]] = []

    async def route(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        input_tokens: int,
    ) -> Route:
        self.calls.append((principal, request, input_tokens))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeReport], reused: Sequence[ReusedRoutes] = ()
    ) -> None:
        self.outcomes.extend((o.deployment, o.model, o.error) for o in outcomes)
        self.reused.extend(reused)

    async def hold_degradation(
        self, level: DegradationLevel, hold_seconds: float, reason: str
    ) -> None:
        self.holds.append((level, hold_seconds))


class FakeLedger:
    """Books each request id once (idempotent like the costs service); can be down."""

    def __init__(self, cost_micros: int = 1234) -> None:
        self.cost_micros = cost_micros
        self.unavailable = False
        self.error: Exception | None = None
        # None: allow, reserving "budget-<request id>".
        self.verdict: BudgetVerdict | None = None
        self.budget_checks: list[tuple[str, int, int]] = []
        self.booked: dict[str, UsageRecord] = {}
        self.calls: list[str] = []
        # Budget reservations released without a booking, in order.
        self.released: list[str] = []

    async def record(self, record: UsageRecord) -> RecordResult:
        if self.unavailable:
            raise DependencyUnavailableError("costs", "costs down")
        if self.error is not None:
            raise self.error
        self.calls.append(record.request_id)
        duplicate = record.request_id in self.booked
        self.booked.setdefault(record.request_id, record)
        return RecordResult(
            cost_micros=0 if duplicate else self.cost_micros, duplicate=duplicate
        )

    async def check_budget(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
    ) -> BudgetVerdict:
        if self.unavailable:
            raise DependencyUnavailableError("costs", "costs down")
        self.budget_checks.append((model, input_tokens, max_output_tokens))
        if self.verdict is None:
            return BudgetVerdict(allowed=True, reservation_id=f"budget-{request_id}")
        return self.verdict

    async def release_budget(self, request_id: str, reservation_id: str) -> None:
        if self.unavailable:
            raise DependencyUnavailableError("costs", "costs down")
        self.released.append(reservation_id)


@dataclass(frozen=True)
class SentCall:
    """One call to the upstream, with the time it was given."""

    call: UpstreamCall
    timeout_seconds: float

    @property
    def model(self) -> str:
        """The model asked."""
        return self.call.model

    @property
    def prompt(self) -> Prompt:
        """What the model was sent."""
        return self.call.prompt

    @property
    def instructions(self) -> str:
        """The instructions sent."""
        return self.call.prompt.instructions

    @property
    def input_text(self) -> str:
        """The last user text sent."""
        return self.call.prompt.last_user_text

    @property
    def max_output_tokens(self) -> int:
        """The output token limit sent."""
        return self.call.max_output_tokens

    @property
    def temperature(self) -> float | None:
        """The temperature sent."""
        return self.call.temperature

    @property
    def prompt_cache_key(self) -> str:
        """The prompt cache key sent."""
        return self.call.prompt_cache_key


@dataclass
class FakeUpstream:
    """Answers ``answer from <model>``, or raises the error set for that model.

    A set ``gate`` holds every call until it opens; ``stream_breaks_after`` cuts
    streams after that many deltas; set ``tool_calls`` make every answer call them.
    """

    failures: dict[str, Exception] = field(default_factory=dict)
    truncated: bool = False
    gate: asyncio.Event | None = None
    stream_breaks_after: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    calls: list[SentCall] = field(default_factory=list)

    async def create(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> UpstreamAnswer:
        self.calls.append(SentCall(call, timeout_seconds))
        if self.gate is not None:
            await self.gate.wait()
        failure = self.failures.get(call.model)
        if failure is not None:
            raise failure
        if self.tool_calls:
            return UpstreamAnswer(
                output_text="",
                model=call.model,
                usage=UPSTREAM_USAGE,
                truncated=False,
                tool_calls=self.tool_calls,
                finish_reason=FinishReason.TOOL_CALLS,
            )
        return UpstreamAnswer(
            output_text=f"answer from {call.model}",
            model=call.model,
            usage=UPSTREAM_USAGE,
            truncated=self.truncated,
            finish_reason=FinishReason.LENGTH if self.truncated else FinishReason.STOP,
        )

    async def stream(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> AsyncIterator[str | ToolCallDelta | UpstreamAnswer]:
        answer = await self.create(call, timeout_seconds)
        delivered = ""
        for n, word in enumerate(
            answer.output_text.split(" ") if answer.output_text else []
        ):
            if n == self.stream_breaks_after:
                raise UpstreamStreamBrokenError(delivered)
            delta = word if n == 0 else f" {word}"
            delivered += delta
            yield delta
        for index, tool_call in enumerate(answer.tool_calls):
            middle = len(tool_call.arguments) // 2
            yield ToolCallDelta(index, tool_call.id, tool_call.name, "")
            yield ToolCallDelta(index, "", "", tool_call.arguments[:middle])
            yield ToolCallDelta(index, "", "", tool_call.arguments[middle:])
        yield answer

    @property
    def models(self) -> list[str]:
        """The models called, in order."""
        return [call.model for call in self.calls]


class FakeTickets:
    """The maintenance/asynchronous queue: records what was accepted."""

    def __init__(self) -> None:
        self.accepted: list[tuple[Principal, ResponseRequest]] = []

    async def enqueue_ticket(
        self, principal: Principal, request: ResponseRequest
    ) -> str:
        self.accepted.append((principal, request))
        return f"ticket-{len(self.accepted)}"


def text_item(
    custom_id: str, text: str, instructions: str = "", **fields: Any
) -> BatchItemRequest:
    """A batch item whose prompt is one user message."""
    return BatchItemRequest(custom_id, Prompt.of_text(text, instructions), **fields)


# Two failures open a breaker for 30 s; one successful probe closes it again.
TEST_BREAKER = BreakerConfig(
    failure_threshold=2,
    recovery_timeout_seconds=30.0,
    half_open_max_calls=1,
    success_threshold=1,
)
TEST_TIMEOUT_SECONDS = 30.0
TEST_HOLD_SECONDS = 30.0


def fake_orchestrator(
    outbox: SqliteOutbox,
    *,
    clock: FakeClock,
    limiter: FakeRateLimiter,
    cache: FakeCache,
    router: FakeRouter,
    ledger: FakeLedger,
    upstream: FakeUpstream,
    tickets: FakeTickets,
    fail_open: bool = True,
    local_rpm: int = 2,
    max_concurrency: int = 4,
    max_queue_depth: int = 8,
) -> Orchestrator:
    """An orchestrator over the fakes, with a real outbox and the test's knobs."""
    return Orchestrator(
        ratelimit=limiter,
        cache=cache,
        router=router,
        ledger=ledger,
        upstream=upstream,
        outbox=outbox,
        tickets=tickets,
        local_limiter=LocalLimiter(local_rpm, clock),
        prices=load_pricing(),
        queue=AdmissionQueue(
            max_concurrency=max_concurrency,
            max_depth=max_queue_depth,
            aging_seconds=5.0,
            clock=clock,
        ),
        downstream_breakers=[],
        config=FlowConfig(
            ratelimit_fail_open=fail_open,
            upstream_timeout_seconds=TEST_TIMEOUT_SECONDS,
            upstream_breaker=TEST_BREAKER,
            auto_degradation_hold_seconds=TEST_HOLD_SECONDS,
        ),
        clock=clock,
    )
