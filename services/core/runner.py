"""Entry point shared by ``python -m services.<svc>`` and ``tollgate serve <svc>``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from services.core.logging import configure_logging
from services.core.settings import ServerSettings
from services.core.workers import (
    WorkerSettings,
    available_cpus,
    notify_ready,
    serve_workers,
)

if TYPE_CHECKING:
    from services.core.server import ServiceApp

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
    *,
    workers: bool = False,
) -> int:
    """Parse ``[--port N] [--host H]``, load settings, build the app and serve it.

    With ``workers`` (the gateway) it takes ``--workers N`` too: N > 1 runs a
    supervisor and N workers sharing the ports (:mod:`services.core.workers`);
    unset, N is ``TOLLGATE_WORKERS`` or the CPUs the container may use.
    """
    parser = argparse.ArgumentParser(prog=f"tollgate serve {name}")
    parser.add_argument("--port", type=int, help="port to listen on (0: any free)")
    parser.add_argument("--host", help="interface to listen on")
    if workers:
        parser.add_argument(
            "--workers",
            type=int,
            help="processes sharing the ports (default: TOLLGATE_WORKERS, else one "
            "per CPU the container may use)",
        )
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    settings = settings_type(**overrides)  # type: ignore[arg-type]
    worker = WorkerSettings()
    if workers and worker.worker_index is None:
        count = args.workers or worker.workers or available_cpus()
        if args.workers is not None and args.workers < 1:
            parser.error("--workers must be at least 1")
        if count > 1:
            configure_logging(settings.log_level, service=name)
            return serve_workers(
                name,
                f"services.{name}",
                {name: settings},
                count,
                worker_env(settings, count),
            )
    configure_logging(settings.log_level, service=name, worker=worker.worker_index)
    # Imported here: a supervisor of workers never serves, and stays small.
    from services.core.server import ListenError, serve_until_signal

    async def main() -> None:
        app = await build(settings)
        await serve_until_signal(app, settings, lambda: notify_ready(worker))

    try:
        run_event_loop(main())
    except ListenError as error:
        print(f"tollgate serve {name}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def worker_env(settings: ServerSettings, count: int) -> dict[str, str]:
    """Per-process settings divided among ``count`` workers, so the pod's stay.

    The gateway's local limiter (used while ratelimit is unreachable) admits
    ``local_limit_rpm_per_user`` per process: each worker takes its share.
    """
    rpm = getattr(settings, "local_limit_rpm_per_user", None)
    if rpm is None:
        return {}
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}LOCAL_LIMIT_RPM_PER_USER": str(max(1, int(rpm) // count))}
