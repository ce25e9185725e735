"""Server-sent events framing, byte-compatible with OpenAI's streams."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

DONE = b"data: [DONE]\n\n"
"""The terminator of Chat Completions streams."""

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
"""Headers of every event-stream answer."""


def encode_event(data: Mapping[str, object], *, event: str | None = None) -> bytes:
    """Frame one JSON event; Responses events carry an ``event:`` line too."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()


async def start_stream(
    request: web.Request, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send the headers of an event-stream answer and return it for writing."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    return response
