"""Run the router: ``python -m services.router [--host H] [--port N]``."""

from __future__ import annotations

import sys

from services.core.runner import run_service
from services.router.app import build_app
from services.router.config import RouterSettings


def main(argv: list[str] | None = None) -> int:
    """Serve the router until SIGTERM or SIGINT; return the exit status."""
    return run_service("router", RouterSettings, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())
