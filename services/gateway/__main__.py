"""``python -m services.gateway [--port N] [--host H] [--workers N]``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from services.core.runner import run_service
from services.gateway.config import GatewaySettings

if TYPE_CHECKING:
    from services.gateway.app import GatewayApp


async def _build(settings: GatewaySettings) -> GatewayApp:
    # Imported by the process that serves: the supervisor of N workers never does.
    from services.gateway.app import build_app

    return await build_app(settings)


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until SIGTERM, as ``--workers N`` processes (one per CPU)."""
    return run_service("gateway", GatewaySettings, _build, argv, workers=True)


if __name__ == "__main__":
    sys.exit(main())
