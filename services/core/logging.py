"""structlog JSON logging.

Events are fixed snake_case names with data in fields. Prompts, completions and API
keys are never logged: callers pass numbers and ids only. A line written while a
trace span is current carries the span's ``trace_id`` (32 hex digits) and
``span_id`` (16), the ids a tracing backend shows, so logs and traces join.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from opentelemetry import trace


def add_trace_context(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Add the current span's ``trace_id`` and ``span_id``, when there is one.

    The span is read from OpenTelemetry's context (a context variable), so the ids
    are those of the RPC or call the line was written in; without tracing there is
    no span and nothing is added.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(
    level: str = "INFO", service: str = "", worker: int | None = None
) -> None:
    """Send JSON log lines to stdout, with context variables merged in.

    A worker of ``--workers N`` adds its index and pid to every line (``worker``,
    ``pid``), so the lines of N processes on one port can be told apart.
    """
    pid = os.getpid()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO

    def add_service(
        _logger: object, _name: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        if service:
            event.setdefault("service", service)
        if worker is not None:
            event.setdefault("worker", worker)
            event.setdefault("pid", pid)
        return event

    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        add_trace_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # N workers share one stdout: each line goes out whole, in one write and
        # flush (print's separate newline could land after another worker's line).
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout)
        if worker is None
        else structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
