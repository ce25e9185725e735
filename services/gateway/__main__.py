"""``python -m services.gateway [--port N]``."""

from __future__ import annotations

import sys

from services.core.runner import run_service
from services.gateway.app import build_app
from services.gateway.config import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until SIGTERM."""
    return run_service("gateway", GatewaySettings, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())
