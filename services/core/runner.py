"""Entry point shared by ``python -m services.<svc>`` and ``tollgate serve <svc>``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from services.core.logging import configure_logging
from services.core.server import ServiceApp, serve_until_signal
from services.core.settings import ServerSettings

SettingsT = TypeVar("SettingsT", bound=ServerSettings)
T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio's own loop.

    uvloop cuts the gateway's CPU per request (docs/performance.md), and gRPC's
    asyncio API runs on it unchanged.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_service(
    name: str,
    settings_type: type[SettingsT],
    build: Callable[[SettingsT], Awaitable[ServiceApp]],
    argv: list[str] | None = None,
) -> int:
    """Parse ``[--port N] [--host H]``, load settings, build the app and serve it."""
    parser = argparse.ArgumentParser(prog=f"tollgate serve {name}")
    parser.add_argument("--port", type=int, help="port to listen on (0: any free)")
    parser.add_argument("--host", help="interface to listen on")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    settings = settings_type(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level, service=name)

    async def main() -> None:
        app = await build(settings)
        await serve_until_signal(app, settings)

    run_event_loop(main())
    return 0
