"""Routing decisions reused for a moment, instead of one Route call per request.

A decision for a named model (or none) at full service, with one deployment taking
all the traffic, is the same for every request with that model, priority and
request type, but for its output limit and worst-case cost. The router marks such a
decision with a lease (``RouteResponse.lease``, one second by default); until the
lease ends this process answers those requests from it, recomputing what differs,
and reports each reuse to the router in its next ``RecordOutcomeBatch`` so that
GetRoutingStats counts every request. A degradation level or traffic split set on
the router binds here when the lease ends; a level this gateway holds itself drops
every lease at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.core.clock import Clock
from services.core.pricing import list_price_micros
from services.gateway.domain import Lane, Priority, RequestType, ResponseRequest, Route

_LeaseKey = tuple[str, Priority, RequestType]


@dataclass(frozen=True, slots=True)
class ReusedRoute:
    """One request answered from a lease: what the router would have counted."""

    tier: str
    lane: Lane
    routed_cost_micros: int
    premium_cost_micros: int


class RouteLeases:
    """The leased decisions of this process, by requested model, priority and type."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._held: dict[_LeaseKey, tuple[float, Route]] = {}

    def reuse(
        self, request: ResponseRequest, input_tokens: int
    ) -> tuple[Route, ReusedRoute] | None:
        """The leased decision for ``request``, fitted to it, or None."""
        key = (request.model, request.priority, request.request_type)
        held = self._held.get(key)
        if held is None:
            return None
        until, route = held
        if self._clock.monotonic() >= until:
            del self._held[key]
            return None
        lease = route.lease
        assert lease is not None  # only leased routes are kept
        cap = lease.max_output_tokens_cap
        max_output_tokens = min(cap, request.max_output_tokens or cap)
        billed_input = min(input_tokens, route.input_token_cap)
        cost = list_price_micros(billed_input, max_output_tokens, *lease.prices)
        premium_cost = list_price_micros(
            billed_input, max_output_tokens, *lease.premium_prices
        )
        return (
            replace(
                route, max_output_tokens=max_output_tokens, worst_case_cost_micros=cost
            ),
            ReusedRoute(lease.tier, route.lane, cost, premium_cost),
        )

    def keep(self, request: ResponseRequest, route: Route) -> None:
        """Hold ``route`` for requests like ``request`` if the router leased it."""
        if route.lease is not None:
            key = (request.model, request.priority, request.request_type)
            until = self._clock.monotonic() + route.lease.duration_seconds
            self._held[key] = (until, route)

    def drop_all(self) -> None:
        """Route every request through the router again (a level is held here)."""
        self._held.clear()
