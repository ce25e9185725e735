"""Run the ratelimit service: ``python -m services.ratelimit [--host H] [--port N]``."""

from __future__ import annotations

import sys

from services.core.runner import run_service
from services.ratelimit.app import build_app
from services.ratelimit.config import RateLimitSettings


def main(argv: list[str] | None = None) -> int:
    """Serve the ratelimit service until SIGTERM or SIGINT."""
    return run_service("ratelimit", RateLimitSettings, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())
