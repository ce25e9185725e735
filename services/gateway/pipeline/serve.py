"""Serving a planned, admitted request: the ladder of models towards the upstream.

The first model of the ladder (the routed one, then its cheaper fallbacks, or the
budget's downgrade alone) whose breaker lets a call through is asked, through the
priority queue; when every breaker is open, the request type's static answer. An
open breaker holds the degradation level on the router, so every replica routes at
that level without first failing on the open model. Identical deterministic
requests in flight share one upstream call (``singleflight.py``).

A call that fails upstream (unavailable after the upstream client's retries, or
throttled with a 429) fails over to the next model of the ladder whose breaker lets
a call through, while the request's deadline has time left; a stream fails over
only before its first event, so nothing delivered is ever repeated. A failover
past a failing or throttled model holds no degradation level: only an open
breaker says the model is out for everyone. Refusals of the request itself (a
full queue, a spent deadline, a bad request) never fail over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, replace

import structlog

from services.core.breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker
from services.core.clock import Clock
from services.core.conversation import FinishReason
from services.core.errors import ResourceExhaustedError, UnavailableError
from services.gateway.domain import (
    BudgetVerdict,
    DegradationLevel,
    Route,
    ToolCallDelta,
    UpstreamAnswer,
    Usage,
)
from services.gateway.fallbacks import STATIC_ANSWERS
from services.gateway.pipeline.plan import Plan
from services.gateway.pipeline.settle import Settlement
from services.gateway.ports import (
    DependencyUnavailableError,
    OutcomeReport,
    RouterPort,
    UpstreamPort,
    UpstreamStreamBrokenError,
    UpstreamThrottledError,
)
from services.gateway.queue import AdmissionQueue
from services.gateway.route_leases import RouteLeases
from services.gateway.singleflight import SingleFlight

_log = structlog.get_logger("tollgate.gateway")


@dataclass(frozen=True)
class Outcome:
    """What the ladder produced: an upstream answer or a static answer."""

    answer: UpstreamAnswer
    model: str
    level: DegradationLevel
    from_upstream: bool


@dataclass(frozen=True)
class Choice:
    """The model the ladder chose, its breaker, and the level it serves at."""

    model: str
    level: DegradationLevel
    breaker: CircuitBreaker


@dataclass(frozen=True)
class OpenedStream:
    """A stream that delivered its first event, on the model that delivered it.

    ``events`` yields that first event again, then the rest.
    """

    choice: Choice
    started: float
    events: AsyncIterator[str | ToolCallDelta | UpstreamAnswer]


def upstream_unavailable() -> UnavailableError:
    """The error of an upstream that failed every attempt."""
    return UnavailableError(
        "the upstream is unavailable", reason="UPSTREAM_UNAVAILABLE", retry_after=1.0
    )


class Ladder:
    """The upstream side: breakers per model, degradation holds, the queue."""

    def __init__(
        self,
        *,
        upstream: UpstreamPort,
        router: RouterPort,
        queue: AdmissionQueue,
        settlement: Settlement,
        breaker_config: BreakerConfig,
        auto_degradation_hold_seconds: float,
        leases: RouteLeases,
        clock: Clock,
    ) -> None:
        self._upstream = upstream
        self._leases = leases
        self._router = router
        self.queue = queue
        self._settlement = settlement
        self._breaker_config = breaker_config
        self._hold_seconds = auto_degradation_hold_seconds
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._holds: dict[DegradationLevel, float] = {}
        self._flights: SingleFlight[Outcome] = SingleFlight()

    # -- one answer

    async def answer(self, plan: Plan, budget: BudgetVerdict) -> tuple[Outcome, bool]:
        """The outcome for ``plan``, and whether it was shared with another caller."""
        if not plan.shares_flight:
            return await self._answer_alone(plan, budget), False
        return await self._flights.do(
            plan.flight_key, lambda: self._answer_alone(plan, budget)
        )

    async def _answer_alone(self, plan: Plan, budget: BudgetVerdict) -> Outcome:
        choice = self.choose(plan, budget)
        if choice is None:
            _log.warning("upstream_circuits_open_static_fallback")
            return self.static_outcome(plan)
        tried: list[str] = []
        while True:
            started = self._clock.monotonic()
            call = replace(plan.call, model=choice.model)
            try:
                async with self.queue.slot(
                    choice.model, plan.request.priority, plan.deadline
                ):
                    answer = await self._upstream.create(
                        call, max(0.0, plan.deadline - self._clock.monotonic())
                    )
            except BaseException as error:
                mapped = self.failed(plan, choice, started, error, opened=False)
                following = self._fail_over(plan, budget, choice, error, tried)
                if following is not None:
                    choice = following
                    continue
                if mapped is error:
                    raise
                raise mapped from error
            self.succeeded(plan, choice, started)
            return Outcome(answer, choice.model, choice.level, from_upstream=True)

    # -- the stream

    async def open_stream(
        self, plan: Plan, budget: BudgetVerdict
    ) -> OpenedStream | None:
        """Open ``plan``'s stream on the ladder; None when every breaker is open.

        Fails over like :meth:`answer` until a model delivers its first event; a
        stream that ends before any event is a broken upstream. From then on, the
        caller records the outcome with :meth:`succeeded` or :meth:`failed`.
        """
        choice = self.choose(plan, budget)
        if choice is None:
            _log.warning("upstream_circuits_open_static_fallback")
            return None
        tried: list[str] = []
        while True:
            started = self._clock.monotonic()
            events = self.stream(plan, choice)
            try:
                first = await anext(events)
            except BaseException as raised:
                error: BaseException = raised
                if isinstance(raised, StopAsyncIteration):
                    error = UpstreamStreamBrokenError("")
                mapped = self.failed(plan, choice, started, error, opened=False)
                following = self._fail_over(plan, budget, choice, error, tried)
                if following is not None:
                    choice = following
                    continue
                if mapped is raised:
                    raise
                raise mapped from error
            return OpenedStream(choice, started, _starting_with(first, events))

    async def stream(
        self, plan: Plan, choice: Choice
    ) -> AsyncIterator[str | ToolCallDelta | UpstreamAnswer]:
        """The upstream stream of ``plan`` on the chosen model, through the queue."""
        call = replace(plan.call, model=choice.model)
        async with self.queue.slot(choice.model, plan.request.priority, plan.deadline):
            async for event in self._upstream.stream(
                call, max(0.0, plan.deadline - self._clock.monotonic())
            ):
                yield event

    def _fail_over(
        self,
        plan: Plan,
        budget: BudgetVerdict,
        failed: Choice,
        error: BaseException,
        tried: list[str],
    ) -> Choice | None:
        """The next model to ask after ``failed`` failed with ``error``, if any.

        Only an upstream that failed or throttled is passed over, and only while
        the deadline has time left; every model already tried stays out.
        """
        tried.append(failed.model)
        if not isinstance(error, DependencyUnavailableError):
            return None
        if plan.deadline - self._clock.monotonic() <= 0:
            return None
        following = self.choose(plan, budget, exclude=tried)
        if following is not None:
            _log.warning(
                "upstream_failover",
                failed_model=failed.model,
                model=following.model,
                cause=(
                    "throttled"
                    if isinstance(error, UpstreamThrottledError)
                    else "unavailable"
                ),
            )
        return following

    # -- the ladder's bookkeeping

    def choose(
        self, plan: Plan, budget: BudgetVerdict, exclude: Collection[str] = ()
    ) -> Choice | None:
        """The first model of the ladder, but ``exclude``, whose breaker allows a call.

        A budget downgrade replaces the ladder with its one model. ``allow()`` counts
        half-open probes, so only the model actually used is asked. Passing over an
        open breaker holds a degradation level; passing over a model this request
        already tried (``exclude``) does not.
        """
        route = plan.route
        if budget.downgrade_model:
            ladder: tuple[str, ...] = (budget.downgrade_model,)
        else:
            ladder = (route.model, *route.fallback_models)
        circuit_open = False
        for model in ladder:
            if model in exclude:
                continue
            breaker = self.breaker(model)
            if breaker.allow():
                level = route.degradation_level
                if model != route.model:
                    level = max(level, DegradationLevel.REDUCED_QUALITY)
                    if circuit_open and not budget.downgrade_model:
                        self._hold(DegradationLevel.REDUCED_QUALITY)
                return Choice(model, level, breaker)
            circuit_open = True
        if not exclude:
            self._hold(DegradationLevel.STATIC_FALLBACK)
        return None

    def succeeded(self, plan: Plan, choice: Choice, started: float) -> None:
        """Record a call that answered."""
        choice.breaker.record_success()
        self._report_outcome(plan.route, choice.model, started, error=False)
        self._settlement.report_success(choice.model)

    def failed(
        self,
        plan: Plan,
        choice: Choice,
        started: float,
        error: BaseException,
        *,
        opened: bool,
    ) -> BaseException:
        """Record a failed call; returns the error to raise to the caller.

        A throttled upstream answered (not an outage) and feeds the limiter's
        backoff; an unavailable one counts against its breaker; anything refused
        before the upstream (queue full, deadline, a bad request) teaches nothing
        about its health.
        """
        if isinstance(error, UpstreamThrottledError):
            choice.breaker.record_success()
            self._settlement.report_throttle(choice.model, error.retry_after)
            return ResourceExhaustedError(
                "the upstream is rate limiting; retry later",
                reason="UPSTREAM_RATE_LIMITED",
                retry_after=max(error.retry_after, 1.0),
            )
        if isinstance(error, DependencyUnavailableError):
            choice.breaker.record_failure()
            self._report_outcome(plan.route, choice.model, started, error=True)
            return upstream_unavailable()
        if not opened:
            choice.breaker.release()
        return error

    def static_outcome(self, plan: Plan) -> Outcome:
        """The request type's static answer, at level STATIC_FALLBACK at least."""
        text = plan.route.fallback_text or STATIC_ANSWERS[plan.request.request_type]
        return Outcome(
            UpstreamAnswer(
                text,
                plan.route.model,
                Usage(),
                truncated=False,
                finish_reason=FinishReason.STOP,
            ),
            plan.route.model,
            max(plan.route.degradation_level, DegradationLevel.STATIC_FALLBACK),
            from_upstream=False,
        )

    def _hold(self, level: DegradationLevel) -> None:
        """Hold ``level`` on the router while circuits stay open (seed section 6).

        The hold lapses once nobody renews it, so recovery needs no operator.
        Renewed at most every half hold, per level.
        """
        hold = self._hold_seconds
        now = self._clock.monotonic()
        if hold <= 0 or now - self._holds.get(level, -hold) < hold / 2:
            return
        self._holds[level] = now
        # The leased decisions are at full service: route through the router,
        # which answers with the held level from now on.
        self._leases.drop_all()
        self._settlement.spawn(self._send_hold(level, hold))

    async def _send_hold(self, level: DegradationLevel, hold: float) -> None:
        try:
            await self._router.hold_degradation(
                level, hold, "gateway: upstream circuits open"
            )
        except DependencyUnavailableError:
            _log.info("degradation_hold_skipped", level=level.name)

    def _report_outcome(
        self, route: Route, model: str, started: float, *, error: bool
    ) -> None:
        self._settlement.report_outcome(
            OutcomeReport(
                route.deployment, model, self._clock.monotonic() - started, error
            )
        )

    # -- breakers

    def breaker(self, model: str) -> CircuitBreaker:
        """The breaker of ``model``'s upstream, made on first use."""
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = self._breakers[model] = CircuitBreaker(
                f"upstream:{model}", self._breaker_config, self._clock
            )
        return breaker

    def snapshots(self) -> list[BreakerSnapshot]:
        """Every upstream breaker's state."""
        return [breaker.snapshot() for breaker in self._breakers.values()]


async def _starting_with(
    first: str | ToolCallDelta | UpstreamAnswer,
    rest: AsyncIterator[str | ToolCallDelta | UpstreamAnswer],
) -> AsyncIterator[str | ToolCallDelta | UpstreamAnswer]:
    yield first
    async for event in rest:
        yield event
