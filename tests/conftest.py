"""Fixtures shared by every test: a clean environment and gRPC servers on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Protocol

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


class ServeApp(Protocol):
    """Starts a ServiceApp; ``settings`` (host and port aside) apply to the server."""

    def __call__(
        self, app: ServiceApp, settings: ServerSettings | None = None
    ) -> Awaitable[RunningServer]: ...


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start ServiceApps on 127.0.0.1 ephemeral ports; stop them after the test."""
    running: list[RunningServer] = []

    async def start(
        app: ServiceApp, settings: ServerSettings | None = None
    ) -> RunningServer:
        loopback = (settings or ServerSettings()).model_copy(
            update={"host": "127.0.0.1", "port": 0}
        )
        server = await start_server(app, loopback)
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        await server.stop(0)
