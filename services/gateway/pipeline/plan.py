"""Before anything is spent: count the prompt, route it, fit it, key it.

The prompt is counted once, exactly (o200k plus OpenAI's overheads,
:mod:`services.core.prompt_tokens`); the router picks model, lane and token budget
from the conversation's shape; an over-long conversation loses its oldest turns
whole; the cache key and the upstream call are derived from what will be sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace

import structlog

from services.core import metrics
from services.core.clock import Clock
from services.core.conversation import cache_context
from services.core.errors import PermissionDeniedError
from services.core.prompt_tokens import count_prompt, fit_conversation
from services.gateway.domain import (
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    Principal,
    RateDecision,
    ResponseRequest,
    Route,
    UpstreamCall,
)
from services.gateway.fallbacks import local_route
from services.gateway.ports import (
    CachePort,
    DependencyUnavailableError,
    RouterPort,
)
from services.gateway.route_leases import ReusedRoute, RouteLeases

_log = structlog.get_logger("tollgate.gateway")

AUTO_MODEL = "auto"
"""The model name that lets the router choose (as does an empty one)."""


def digest(*parts: object) -> str:
    """Hex SHA-256 of ``parts`` as JSON (enums by their string form)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


_ROUTED_BY_ROUTER = metrics.GATEWAY_ROUTES.labels("router")
_ROUTED_BY_LEASE = metrics.GATEWAY_ROUTES.labels("lease")
_ROUTED_LOCALLY = metrics.GATEWAY_ROUTES.labels("local")

_ADMITTED = RateDecision(allowed=True)
"""The decision of a plan not yet admitted."""


@dataclass(frozen=True)
class Plan:
    """Everything decided before the upstream is called.

    Attributes:
        call: the upstream call for the routed model; the ladder may change only
            its model.
        prompt_tokens: input tokens of what is sent, counted once.
        dropped_tokens: input tokens the conversation lost to the input cap.
    """

    principal: Principal
    request: ResponseRequest
    request_id: str
    started: float
    deadline: float
    route: Route
    call: UpstreamCall
    prompt_tokens: int
    dropped_tokens: int
    key: CacheKeyParts
    decision: RateDecision = _ADMITTED
    cached: CachedAnswer | None = None
    cache_status: CacheStatus = CacheStatus.SKIPPED

    @property
    def flight_key(self) -> str:
        """The identity of the upstream call: every part of the exact cache key."""
        return digest(*astuple(self.key))

    @property
    def shares_flight(self) -> bool:
        """Whether identical requests in flight may share this one's answer.

        Only deterministic (temperature 0) and cacheable requests: two callers at a
        higher temperature are owed two samples, and one who bypassed the cache
        asked for a fresh answer.
        """
        return self.cache_status is CacheStatus.MISS and self.call.temperature == 0.0


class Planner:
    """Counts, routes and fits a request; the router's failure policy lives here."""

    def __init__(
        self,
        router: RouterPort,
        clock: Clock,
        timeout_seconds: float,
        *,
        leases: RouteLeases,
        report_reused: Callable[[ReusedRoute], None],
        cache: CachePort | None = None,
    ):
        """Route through ``router``, or from ``leases`` while one holds.

        Each decision reused from a lease goes to ``report_reused``, for the
        router's statistics.
        """
        self._router = router
        self._clock = clock
        self._timeout_seconds = timeout_seconds
        self._leases = leases
        self._report_reused = report_reused
        self._cache = cache

    async def plan(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> Plan:
        """The plan of one request, before admission."""
        started = self._clock.monotonic()
        budget = self._timeout_seconds
        if time_remaining is not None:
            budget = min(budget, time_remaining)
        if request.user_id:
            principal = replace(principal, user_id=request.user_id)
        asked = request.model or AUTO_MODEL
        if not principal.may_use(asked):
            raise PermissionDeniedError(
                f"this API key may not use the model {asked[:128]!r}",
                reason="MODEL_NOT_ALLOWED",
                metadata={"model": asked[:128]},
            )

        counted = count_prompt(request.prompt)
        route = await self._route(request_id, principal, request, counted.conversation)
        fitted = fit_conversation(request.prompt, counted, route.input_token_cap)
        prompt, prompt_tokens = fitted.prompt, fitted.tokens.total
        if route.deployment_instructions:
            instructions = "\n\n".join(
                part
                for part in (route.deployment_instructions, prompt.instructions)
                if part
            )
            prompt = replace(prompt, instructions=instructions)
            prompt_tokens = count_prompt(prompt).total
        temperature = (
            request.temperature
            if request.temperature is not None
            else route.temperature
        )
        context = cache_context(prompt)
        key = CacheKeyParts(
            tenant_id=principal.tenant_id,
            model=route.model,
            instructions=prompt.instructions,
            input=context.text,
            temperature=temperature,
            max_output_tokens=route.max_output_tokens,
            top_p=request.top_p,
            tools_json=context.tools_json,
            response_format_json=context.response_format_json,
            context_digest=context.context_digest,
            multi_turn=context.multi_turn,
            exact_only_reason=context.exact_only_reason,
            request_type=request.request_type,
        )
        call = UpstreamCall(
            model=route.model,
            prompt=prompt,
            max_output_tokens=route.max_output_tokens,
            temperature=temperature,
            top_p=request.top_p,
            safety_identifier=request.safety_identifier
            or _safety_identifier(principal),
            prompt_cache_key=digest(
                principal.tenant_id, prompt.instructions, context.tools_json
            )[:32],
        )
        return Plan(
            principal=principal,
            request=request,
            request_id=request_id,
            started=started,
            deadline=started + budget,
            route=route,
            call=call,
            prompt_tokens=prompt_tokens,
            dropped_tokens=fitted.dropped_tokens,
            key=key,
        )

    async def _route(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        conversation_tokens: int,
    ) -> Route:
        leased = self._leases.reuse(request, conversation_tokens)
        if leased is not None:
            route, reused = leased
            self._report_reused(reused)
            _ROUTED_BY_LEASE.inc()
            return route
        try:
            route = await self._router.route(
                request_id, principal, request, conversation_tokens
            )
        except DependencyUnavailableError as error:
            _log.warning("router_unavailable_local_route", dependency=error.dependency)
            _ROUTED_LOCALLY.inc()
            return local_route(
                request.priority,
                request.request_type,
                request.model,
                request.max_output_tokens,
            )
        _ROUTED_BY_ROUTER.inc()
        self._leases.keep(request, route)
        return route


def _safety_identifier(principal: Principal) -> str:
    """A stable id of the end user that names nobody: a hash of tenant and user."""
    if not principal.user_id:
        return ""
    return digest(principal.tenant_id, principal.user_id)[:32]
