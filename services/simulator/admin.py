"""Test and operator endpoints under ``/_sim`` (not part of OpenAI's API)."""

from __future__ import annotations

from aiohttp import web

from services.simulator import payload
from services.simulator.errors import ApiError, error_response, invalid_request
from services.simulator.faults import UnknownFaultError, parse_fault_kind
from services.simulator.state import SimulatorState

STATE = web.AppKey("simulator_state", SimulatorState)
"""Where the application keeps its :class:`SimulatorState`."""

_MAX_SCHEDULED = 100_000


async def get_stats(request: web.Request) -> web.StreamResponse:
    """``GET /_sim/stats``: the request, fault and token counters."""
    return web.json_response(request.app[STATE].stats.snapshot())


async def get_faults(request: web.Request) -> web.StreamResponse:
    """``GET /_sim/faults``: how many scheduled faults are pending."""
    return web.json_response({"pending": request.app[STATE].faults.pending})


async def schedule_faults(request: web.Request) -> web.StreamResponse:
    """``POST /_sim/faults``: make the next ``count`` API requests fail.

    Body: ``{"kind": "...", "count": N, "retry_after_seconds": s, "model": m}``;
    ``count`` defaults to 1, ``retry_after_seconds`` to the configured value, and
    without ``model`` any request suffers the faults, else only requests for ``m``.
    """
    state = request.app[STATE]
    try:
        body = await payload.read_json(request)
        kind_name = payload.required_str(body, "kind")
        try:
            kind = parse_fault_kind(kind_name)
        except UnknownFaultError as err:
            raise invalid_request(str(err), param="kind") from None
        count = payload.optional_int(body, "count", minimum=0, maximum=_MAX_SCHEDULED)
        retry_after = payload.optional_int(
            body, "retry_after_seconds", minimum=0, maximum=86_400
        )
        model = payload.optional_str(body, "model")
    except ApiError as err:
        return error_response(err)
    state.faults.schedule(kind, 1 if count is None else count, retry_after, model)
    return web.json_response({"pending": state.faults.pending})


async def clear_faults(request: web.Request) -> web.StreamResponse:
    """``DELETE /_sim/faults``: drop every scheduled fault."""
    state = request.app[STATE]
    state.faults.clear()
    return web.json_response({"pending": state.faults.pending})


async def reset(request: web.Request) -> web.StreamResponse:
    """``POST /_sim/reset``: zero counters, drop scheduled faults, re-seed draws."""
    state = request.app[STATE]
    state.reset()
    return web.json_response(state.stats.snapshot())


def add_routes(app: web.Application) -> None:
    """Register the ``/_sim`` routes on ``app``."""
    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", schedule_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_post("/_sim/reset", reset)
