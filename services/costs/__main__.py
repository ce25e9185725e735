"""Run the costs service: ``python -m services.costs [--host H] [--port N]``."""

from __future__ import annotations

import sys

from services.core.runner import run_service
from services.costs.app import build_app
from services.costs.config import CostsSettings


def main(argv: list[str] | None = None) -> int:
    """Serve the costs service until SIGTERM or SIGINT; returns the exit status."""
    return run_service("costs", CostsSettings, build_app, argv)


if __name__ == "__main__":
    sys.exit(main())
