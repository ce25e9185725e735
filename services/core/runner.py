"""Entry point shared by ``python -m services.<svc>`` and ``tollgate serve <svc>``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.core.logging import configure_logging
from services.core.server import ServiceApp, serve_until_signal
from services.core.settings import ServerSettings

SettingsT = TypeVar("SettingsT", bound=ServerSettings)


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

    asyncio.run(main())
    return 0
