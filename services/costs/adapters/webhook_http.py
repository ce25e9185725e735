"""The webhook sender on aiohttp's client (already the simulator's HTTP library).

One session per replica, its connections reused across deliveries. Redirects are
not followed (a receiver answers where it was configured), the response body is
not read, and failures are described without the URL, which can hold a secret (a
Slack incoming webhook's path is its credential).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping

import aiohttp

from services.costs.ports import WebhookResponse, WebhookTransportError


class AiohttpWebhookSender:
    """A :class:`~services.costs.ports.WebhookSender` with a total timeout."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> WebhookResponse:
        """POST once; see the port.

        Raises:
            WebhookTransportError: no response came.
        """
        if self._session is None:
            # Created on first use, inside the running event loop.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return WebhookResponse(
                    status=response.status,
                    retry_after=_seconds(response.headers.get("Retry-After")),
                )
        except TimeoutError as error:
            raise WebhookTransportError(
                f"no response within {self._timeout_seconds:g} s"
            ) from error
        except aiohttp.ClientConnectorError as error:
            # From the errno alone: asyncio's own message quotes the address.
            number = error.os_error.errno
            reason = os.strerror(number) if number else type(error.os_error).__name__
            raise WebhookTransportError(f"cannot connect: {reason}") from error
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as error:
            # The class says what failed; its message may quote the URL.
            raise WebhookTransportError(type(error).__name__) from error

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in delay-seconds; None when absent or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
