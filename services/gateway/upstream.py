"""The upstream model provider through the ``openai`` SDK (Responses API).

Retries are ours, not the SDK's, so that every attempt fits inside the caller's
deadline: exponential backoff with full jitter, and an upstream Retry-After is
honoured when it fits in the time left.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import openai
import structlog

from services.core.clock import Clock
from services.core.errors import DeadlineExceededError, FailedPreconditionError
from services.gateway.domain import UpstreamAnswer, Usage
from services.gateway.ports import DependencyUnavailableError, UpstreamThrottledError

_log = structlog.get_logger("tollgate.upstream")

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 4.0

Sleep = Callable[[float], Awaitable[None]]


def _retry_after(error: openai.APIStatusError) -> float:
    value = error.response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


class OpenAIUpstream:
    """An :class:`~services.gateway.ports.UpstreamPort` over ``AsyncOpenAI``."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        max_retries: int,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def create(
        self,
        *,
        model: str,
        instructions: str,
        input_text: str,
        max_output_tokens: int,
        temperature: float | None,
        timeout_seconds: float,
    ) -> UpstreamAnswer:
        """Ask the model, retrying transient failures within ``timeout_seconds``."""
        deadline = self._clock.monotonic() + timeout_seconds
        attempt = 0
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    "deadline passed before the upstream answered"
                )
            try:
                response = await self._client.responses.create(
                    model=model,
                    input=input_text,
                    instructions=instructions or openai.omit,
                    max_output_tokens=max_output_tokens or openai.omit,
                    temperature=openai.omit if temperature is None else temperature,
                    timeout=remaining,
                )
            except openai.RateLimitError as error:
                wait = max(_retry_after(error), self._backoff(attempt))
                if (
                    attempt >= self._max_retries
                    or wait >= deadline - self._clock.monotonic()
                ):
                    raise UpstreamThrottledError(
                        "upstream", "upstream rate limited", _retry_after(error)
                    ) from error
            except openai.BadRequestError as error:
                raise FailedPreconditionError(
                    "the upstream rejected the request", reason="UPSTREAM_REJECTED"
                ) from error
            except (openai.APIConnectionError, openai.APIStatusError) as error:
                # Connection failures, timeouts and 5xx are transient; other 4xx mean
                # the gateway is misconfigured (key, model), which is an outage too.
                wait = self._backoff(attempt)
                transient = not isinstance(error, openai.APIStatusError) or (
                    error.status_code >= 500
                )
                if (
                    not transient
                    or attempt >= self._max_retries
                    or wait >= deadline - self._clock.monotonic()
                ):
                    raise DependencyUnavailableError(
                        "upstream", f"upstream failed: {type(error).__name__}"
                    ) from error
            else:
                return self._answer(response)
            _log.info("upstream_retry", attempt=attempt + 1, wait_ms=round(wait * 1000))
            await self._sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
        return self._rng.uniform(0, ceiling)

    @staticmethod
    def _answer(response: openai.types.responses.Response) -> UpstreamAnswer:
        usage = response.usage
        return UpstreamAnswer(
            output_text=response.output_text,
            model=response.model,
            usage=Usage(
                input_tokens=usage.input_tokens if usage else 0,
                cached_input_tokens=(
                    usage.input_tokens_details.cached_tokens if usage else 0
                ),
                output_tokens=usage.output_tokens if usage else 0,
            ),
            truncated=response.status == "incomplete",
        )

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()
