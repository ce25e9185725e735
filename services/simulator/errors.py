"""OpenAI-shaped error answers."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


class ApiError(Exception):
    """An error answered with OpenAI's body ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Describe an error answer; ``type_`` is OpenAI's ``error.type``."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> ApiError:
    """Return a 400 ``invalid_request_error``."""
    return ApiError(400, message, param=param, code=code)


def error_body(error: ApiError) -> dict[str, object]:
    """Return OpenAI's error body ``{"error": {...}}`` for ``error``."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def error_response(error: ApiError) -> web.Response:
    """Return the HTTP answer for ``error``."""
    return web.json_response(
        error_body(error), status=error.status, headers=error.headers
    )
