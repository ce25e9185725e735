"""OpenAI's Files and Batches endpoints over the gateway's batch lane.

``POST /v1/files`` (purpose ``batch``) keeps the uploaded JSONL in the
:class:`InputFiles` store (a directory, or the shared Postgres batch store so that
any gateway replica reads what another received); ``POST /v1/batches`` reads it,
decodes each line's body with the same decoders as the synchronous endpoints
(``/v1/responses`` or ``/v1/chat/completions`` lines) and submits the items to
:class:`BatchService`, which runs them through the Batch API at the batch price.
A batch's output and error files are not stored twice: their ids name the batch,
and ``GET /v1/files/{id}/content`` writes them from the lane's results in the
endpoint's own response shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from typing import Any, Protocol

from aiohttp import BodyPartReader, web

from services.core.errors import FieldViolation, InvalidArgumentError, NotFoundError
from services.gateway.batches import (
    BatchItemRequest,
    BatchService,
    BatchStatus,
    BatchView,
    ItemResult,
)
from services.gateway.domain import Principal
from services.gateway.http import encode
from services.gateway.http.decode import decode_chat, decode_headers, decode_responses
from services.gateway.http.errors import invalid
from services.gateway.http.server import Call, Extension, HttpDoor, read_json

MAX_FILE_BYTES = 200 * 1024 * 1024
"""OpenAI's limit of a batch input file."""
_ENDPOINTS = ("/v1/responses", "/v1/chat/completions")
_ENDPOINT_KEY = "tollgate_endpoint"
_INPUT_FILE_KEY = "tollgate_input_file_id"
_OUTPUT_PREFIX = "file-batchout-"
_ERROR_PREFIX = "file-batcherr-"
_FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
_STATUS = {
    BatchStatus.QUEUED: "validating",
    BatchStatus.VALIDATING: "validating",
    BatchStatus.IN_PROGRESS: "in_progress",
    BatchStatus.FINALIZING: "finalizing",
    BatchStatus.COMPLETED: "completed",
    BatchStatus.FAILED: "failed",
    BatchStatus.EXPIRED: "expired",
    BatchStatus.CANCELLING: "cancelling",
    BatchStatus.CANCELLED: "cancelled",
}
WINDOW_SECONDS = 24 * 3600


class InputFiles(Protocol):
    """Where uploaded input files wait for their batch."""

    async def put_content(self, file_id: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file's bytes as they arrive; returns how many.

        Should ``chunks`` raise, what was stored is deleted and the error goes on.
        """
        ...

    async def put_meta(self, meta: Mapping[str, Any]) -> None:
        """Make a stored file visible, with its metadata (``meta["id"]``)."""
        ...

    async def file_meta(self, file_id: str) -> dict[str, Any] | None:
        """A visible file's metadata, or None."""
        ...

    def file_content(self, file_id: str) -> AsyncGenerator[bytes, None]:
        """A file's bytes, a piece at a time; nothing for an unknown file."""
        ...

    async def delete_file(self, file_id: str) -> None:
        """Forget a file, its metadata and its bytes."""
        ...


class FilesAndBatches(Extension):
    """The routes of ``/v1/files`` and ``/v1/batches``."""

    def __init__(self, batches: BatchService, files: InputFiles) -> None:
        self._batches = batches
        self._files = files

    def routes(self, door: HttpDoor) -> list[web.RouteDef]:
        """The routes, each authenticated by the door."""

        def route(handler: Any) -> Any:
            async def wrapped(request: web.Request) -> web.StreamResponse:
                answer: web.StreamResponse = await handler(
                    request, door.authenticate(request)
                )
                return answer

            return wrapped

        return [
            web.post("/v1/files", route(self._upload)),
            web.get("/v1/files/{file_id}", route(self._file)),
            web.get("/v1/files/{file_id}/content", route(self._content)),
            web.post("/v1/batches", route(self._create)),
            web.get("/v1/batches/{batch_id}", route(self._retrieve)),
            web.post("/v1/batches/{batch_id}/cancel", route(self._cancel)),
        ]

    # -- files

    async def _owned_meta(self, principal: Principal, file_id: str) -> dict[str, Any]:
        if not _FILE_ID.match(file_id):
            raise NotFoundError(
                f"No such File object: {file_id[:64]}", reason="FILE_NOT_FOUND"
            )
        meta = await self._files.file_meta(file_id)
        if meta is None or meta.get("tenant_id") != principal.tenant_id:
            raise NotFoundError(
                f"No such File object: {file_id}", reason="FILE_NOT_FOUND"
            )
        return meta

    async def _upload(self, request: web.Request, call: Call) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise invalid("Upload the file as multipart/form-data.", "file")
        reader = await request.multipart()
        purpose = ""
        filename = "upload.jsonl"
        file_id = "file-" + os.urandom(12).hex()
        size = 0
        got_file = False
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):  # nested multipart: ignored
                continue
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                got_file = True
                filename = (part.filename or filename)[:256]
                size = await self._files.put_content(file_id, _limited(part))
        if not got_file:
            raise invalid("Missing required parameter: 'file'.", "file")
        if purpose != "batch":
            await self._files.delete_file(file_id)
            raise invalid(
                "This gateway accepts files with purpose 'batch' only.", "purpose"
            )
        meta = {
            "id": file_id,
            "tenant_id": call.principal.tenant_id,
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
        }
        await self._files.put_meta(meta)
        return web.json_response(_file_object(meta))

    async def _file(self, request: web.Request, call: Call) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        return web.json_response(
            _file_object(await self._owned_meta(call.principal, file_id))
        )

    async def _content(self, request: web.Request, call: Call) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        for prefix, errors in ((_OUTPUT_PREFIX, False), (_ERROR_PREFIX, True)):
            if file_id.startswith(prefix):
                return await self._results(
                    request, call, file_id.removeprefix(prefix), errors
                )
        await self._owned_meta(call.principal, file_id)
        response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        async with contextlib.aclosing(self._files.file_content(file_id)) as content:
            async for piece in content:
                await response.write(piece)
        await response.write_eof()
        return response

    async def _results(
        self, request: web.Request, call: Call, batch_id: str, errors: bool
    ) -> web.StreamResponse:
        view = await self._batches.get(call.principal, batch_id)
        endpoint = view.metadata.get(_ENDPOINT_KEY, "/v1/responses")
        response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        async for result in self._batches.results(call.principal, batch_id):
            if (result.error is not None) != errors:
                continue
            await response.write(
                (
                    json.dumps(_result_line(result, endpoint), separators=(",", ":"))
                    + "\n"
                ).encode()
            )
        await response.write_eof()
        return response

    # -- batches

    async def _create(self, request: web.Request, call: Call) -> web.StreamResponse:
        body = await read_json(request)
        input_file_id = body.get("input_file_id")
        if not isinstance(input_file_id, str):
            raise invalid(
                "Missing required parameter: 'input_file_id'.", "input_file_id"
            )
        endpoint = body.get("endpoint")
        if endpoint not in _ENDPOINTS:
            raise invalid(
                "This gateway batches '/v1/responses' and '/v1/chat/completions'.",
                "endpoint",
            )
        if body.get("completion_window", "24h") != "24h":
            raise invalid("completion_window must be '24h'.", "completion_window")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()
        ):
            raise invalid("metadata must map strings to strings.", "metadata")
        try:
            await self._owned_meta(call.principal, input_file_id)
        except NotFoundError:
            raise invalid(
                f"No such File object: {input_file_id[:64]}", "input_file_id"
            ) from None
        async with contextlib.aclosing(
            self._files.file_content(input_file_id)
        ) as content:
            items = await _items(content, str(endpoint), request.headers)
        view = await self._batches.submit(
            call.principal,
            items,
            {**metadata, _ENDPOINT_KEY: str(endpoint), _INPUT_FILE_KEY: input_file_id},
            "",
        )
        return web.json_response(_batch_object(view))

    async def _retrieve(self, request: web.Request, call: Call) -> web.StreamResponse:
        view = await self._batches.get(call.principal, request.match_info["batch_id"])
        return web.json_response(_batch_object(view))

    async def _cancel(self, request: web.Request, call: Call) -> web.StreamResponse:
        view = await self._batches.cancel(
            call.principal, request.match_info["batch_id"]
        )
        return web.json_response(_batch_object(view))


async def _limited(part: BodyPartReader) -> AsyncIterator[bytes]:
    """The part's bytes; past :data:`MAX_FILE_BYTES` the upload is invalid."""
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise invalid(f"The file must be at most {MAX_FILE_BYTES} bytes.", "file")
        yield chunk


async def _lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a file read in pieces, without their line ends."""
    pending = bytearray()
    async for piece in pieces:
        start = 0
        while (end := piece.find(b"\n", start)) != -1:
            if pending:
                pending += piece[start:end]
                yield bytes(pending)
                pending.clear()
            else:
                yield piece[start:end]
            start = end + 1
        pending += piece[start:]
    if pending:
        yield bytes(pending)


async def _items(
    content: AsyncIterator[bytes], endpoint: str, headers: Any
) -> list[BatchItemRequest]:
    """The batch items of a JSONL input file; problems name their line."""
    defaults = decode_headers(headers)
    decoder = decode_chat if endpoint == "/v1/chat/completions" else decode_responses
    items: list[BatchItemRequest] = []
    number = 0
    async for raw in _lines(content):
        number += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(f"line {number}: not valid UTF-8.", "input_file_id") from None
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            data = json.loads(line)
        except ValueError:
            raise invalid(f"{where}: not valid JSON.", "input_file_id") from None
        if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
            raise invalid(f"{where}: needs an object 'body'.", "input_file_id")
        if data.get("url") != endpoint:
            raise invalid(
                f"{where}: url {str(data.get('url'))[:64]!r} differs from the "
                f"batch's endpoint {endpoint!r}.",
                "input_file_id",
            )
        try:
            decoded = decoder(data["body"], defaults)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(
                [
                    FieldViolation(f"{where}: body.{v.field}", v.description)
                    for v in error.violations
                ]
            ) from None
        request = decoded.request
        items.append(
            BatchItemRequest(
                custom_id=str(data.get("custom_id", "")),
                prompt=request.prompt,
                model=request.model,
                request_type=request.request_type,
                max_output_tokens=request.max_output_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                safety_identifier=request.safety_identifier,
            )
        )
    return items


def _file_object(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "object": "file",
        "bytes": meta["bytes"],
        "created_at": meta["created_at"],
        "filename": meta["filename"],
        "purpose": meta["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def _batch_object(view: BatchView) -> dict[str, Any]:
    status = _STATUS[view.status]
    created = int(view.created_at)
    finished = int(view.finished_at) if view.finished_at is not None else None
    terminal = view.status.terminal
    metadata = {
        k: v
        for k, v in view.metadata.items()
        if k not in (_ENDPOINT_KEY, _INPUT_FILE_KEY)
    }
    return {
        "id": view.batch_id,
        "object": "batch",
        "endpoint": view.metadata.get(_ENDPOINT_KEY, "/v1/responses"),
        "errors": None,
        "input_file_id": view.metadata.get(_INPUT_FILE_KEY, ""),
        "completion_window": "24h",
        "status": status,
        "output_file_id": _OUTPUT_PREFIX + view.batch_id
        if terminal and view.completed_items
        else None,
        "error_file_id": _ERROR_PREFIX + view.batch_id
        if terminal and view.failed_items
        else None,
        "created_at": created,
        "in_progress_at": None,
        "expires_at": created + WINDOW_SECONDS,
        "finalizing_at": None,
        "completed_at": finished if status == "completed" else None,
        "failed_at": finished if status == "failed" else None,
        "expired_at": finished if status == "expired" else None,
        "cancelling_at": None,
        "cancelled_at": finished if status == "cancelled" else None,
        "request_counts": {
            "total": view.total_items,
            "completed": view.completed_items,
            "failed": view.failed_items,
        },
        "metadata": metadata,
    }


def _result_line(result: ItemResult, endpoint: str) -> dict[str, Any]:
    line_id = "batch_req_" + os.urandom(12).hex()
    if result.error is not None:
        return {
            "id": line_id,
            "custom_id": result.custom_id,
            "response": None,
            "error": {"code": result.error.code, "message": result.error.message},
        }
    body = (
        encode.chat_completion_of(
            result.output_text,
            result.model,
            result.usage,
            result.tool_calls,
            result.finish_reason,
            truncated=False,
        )
        if endpoint == "/v1/chat/completions"
        else encode.response_of(
            result.output_text,
            result.model,
            result.usage,
            result.tool_calls,
            truncated=False,
        )
    )
    return {
        "id": line_id,
        "custom_id": result.custom_id,
        "response": {
            "status_code": 200,
            "request_id": line_id,
            "body": {**body, "x_tollgate_cost_micros": result.cost_micros},
        },
        "error": None,
    }
