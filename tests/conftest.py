"""Fixtures shared by every test: a clean environment and gRPC servers on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from services.core.server import RunningServer, ServiceApp, start_server
from services.core.settings import ServerSettings
from tests.backends import postgres_dsn, redis_server

# Fixtures defined in tests/backends.py, re-exported so every test can request them.
__all__ = ["postgres_dsn", "redis_server"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees TOLLGATE_* or OPENAI_* settings from the machine it runs on."""
    for key in list(os.environ):
        if (
            key.startswith(("TOLLGATE_", "OPENAI_"))
            and key != "TOLLGATE_REQUIRE_INTEGRATION"
        ):
            monkeypatch.delenv(key, raising=False)
    yield


ServeApp = Callable[[ServiceApp], Awaitable[RunningServer]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start ServiceApps on 127.0.0.1 ephemeral ports; stop them after the test."""
    running: list[RunningServer] = []

    async def start(app: ServiceApp) -> RunningServer:
        server = await start_server(app, ServerSettings(host="127.0.0.1", port=0))
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        await server.stop(0)
