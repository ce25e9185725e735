"""Run the OpenAI simulator: ``python -m services.simulator [--host H] [--port N]``.

Settings come from ``TOLLGATE_SIMULATOR_*``; the flags override host and port.
The process prints one JSON line with the address it listens on, then serves
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import structlog

from services.simulator.app import start_simulator
from services.simulator.config import SimulatorSettings

_log = structlog.get_logger("tollgate.simulator")


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.simulator",
        description="OpenAI-compatible simulator for Tollgate (no API key needed).",
    )
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port; 0 picks a free one")
    args = parser.parse_args(argv)
    # Any: flags are merged into the settings' own validation, field by field.
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = SimulatorSettings(**overrides)
    _configure_logging()
    try:
        asyncio.run(_serve(settings))
    except OSError as err:
        _log.error("simulator_bind_failed", port=settings.port, errno=err.errno)
        return 1
    return 0


async def _serve(settings: SimulatorSettings) -> None:
    simulator = await start_simulator(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    _log.info(
        "simulator_listening",
        host=simulator.host,
        port=simulator.port,
        base_url=simulator.base_url,
    )
    try:
        await stop.wait()
    finally:
        _log.info("simulator_stopping", port=simulator.port)
        await simulator.stop()


def _configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
    )


if __name__ == "__main__":
    raise SystemExit(main())
