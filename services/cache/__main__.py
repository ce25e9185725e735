"""Run the cache service: ``python -m services.cache [--host H] [--port N]``."""

from __future__ import annotations

import sys

from services.cache.app import build_app
from services.cache.config import CacheSettings
from services.core.runner import run_service


def main(argv: list[str] | None = None) -> int:
    """Serve the cache service until SIGTERM or SIGINT."""
    return run_service("cache", CacheSettings, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())
