"""The Files endpoints: upload, retrieve, list, download and delete, in memory."""

from __future__ import annotations

import secrets

from aiohttp import web

from services.simulator import payload
from services.simulator.errors import ApiError, invalid_request
from services.simulator.handlers import ApiCall
from services.simulator.state import SimulatorState, StoredFile

PURPOSES = frozenset(
    {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
)
"""Purposes a client may upload with; ``batch_output`` files are the simulator's."""

_MAX_LIST_LIMIT = 10_000


def add_file(
    state: SimulatorState, filename: str, purpose: str, content: bytes
) -> StoredFile:
    """Store ``content`` as a new file and return it."""
    stored = StoredFile(
        id="file-" + secrets.token_hex(12),
        filename=filename,
        purpose=purpose,
        content=content,
        created_at=int(state.clock.now()),
    )
    state.files[stored.id] = stored
    return stored


def get_file(state: SimulatorState, file_id: str, *, param: str = "id") -> StoredFile:
    """Return the file ``file_id``.

    Raises:
        ApiError: 404 when there is no such file.
    """
    stored = state.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {file_id}", param=param)
    return stored


async def upload_file(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/files`` (multipart: ``file`` and ``purpose``)."""
    form = await call.request.post()
    upload = form.get("file")
    purpose = form.get("purpose")
    if not isinstance(upload, web.FileField):
        raise invalid_request(
            "Missing required parameter: 'file'.",
            param="file",
            code="missing_required_parameter",
        )
    if not isinstance(purpose, str) or not purpose:
        raise invalid_request(
            "Missing required parameter: 'purpose'.",
            param="purpose",
            code="missing_required_parameter",
        )
    if purpose not in PURPOSES:
        allowed = ", ".join(f"'{p}'" for p in sorted(PURPOSES))
        raise invalid_request(
            f"Invalid value for 'purpose': expected one of {allowed}.",
            param="purpose",
        )
    stored = add_file(call.state, upload.filename, purpose, upload.file.read())
    return web.json_response(stored.to_json())


async def retrieve_file(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/files/{file_id}``."""
    stored = get_file(call.state, call.request.match_info["file_id"])
    return web.json_response(stored.to_json())


async def file_content(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/files/{file_id}/content``: the raw bytes."""
    stored = get_file(call.state, call.request.match_info["file_id"])
    return web.Response(body=stored.content, content_type="application/octet-stream")


async def delete_file(call: ApiCall) -> web.StreamResponse:
    """Serve ``DELETE /v1/files/{file_id}``."""
    stored = get_file(call.state, call.request.match_info["file_id"])
    del call.state.files[stored.id]
    return web.json_response({"id": stored.id, "object": "file", "deleted": True})


async def list_files(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/files`` (``purpose``, ``limit``, ``after``, ``order``)."""
    query = call.request.query
    purpose = query.get("purpose")
    files = [f for f in call.state.files.values() if purpose in (None, f.purpose)]
    if query.get("order", "desc") == "desc":
        files.reverse()
    page = payload.cursor_page(
        [f.to_json() for f in files],
        after=query.get("after"),
        limit=payload.query_limit(query, default=_MAX_LIST_LIMIT),
    )
    return web.json_response(page)
