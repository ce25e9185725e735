"""The simulator's prompt cache, seen through the real openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from services.core.tokens import count_tokens
from services.simulator.app import start_simulator
from services.simulator.config import SimulatorSettings
from services.simulator.text import MESSAGE_TOKENS

LONG_INSTRUCTIONS = "You are a careful support agent. " * 200  # > 1,024 tokens


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    settings = SimulatorSettings(port=0, latency_ms=0)
    async with (
        await start_simulator(settings) as sim,
        AsyncOpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0) as sdk,
    ):
        yield sdk


async def _cached(client: AsyncOpenAI, instructions: str, key: str, text: str) -> int:
    response = await client.responses.create(
        model="gpt-4.1-mini",
        instructions=instructions,
        input=text,
        prompt_cache_key=key,
    )
    assert response.usage is not None
    return response.usage.input_tokens_details.cached_tokens


async def test_a_repeated_long_prefix_is_reported_cached_in_128_token_steps(
    client: AsyncOpenAI,
) -> None:
    prefix = MESSAGE_TOKENS + count_tokens("system") + count_tokens(LONG_INSTRUCTIONS)
    assert prefix >= 1024

    assert await _cached(client, LONG_INSTRUCTIONS, "tenant-a", "first") == 0
    assert await _cached(client, LONG_INSTRUCTIONS, "tenant-a", "second") == (
        prefix // 128 * 128
    )


async def test_another_key_or_a_short_prefix_is_not_cached(client: AsyncOpenAI) -> None:
    await _cached(client, LONG_INSTRUCTIONS, "tenant-a", "warm")
    assert await _cached(client, LONG_INSTRUCTIONS, "tenant-b", "other key") == 0
    short = "Be brief."
    await _cached(client, short, "tenant-a", "warm")
    assert await _cached(client, short, "tenant-a", "again") == 0
