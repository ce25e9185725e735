"""The JSON log lines a service really writes, read back from captured stdout.

``structlog.testing.capture_logs`` replaces the processors, so it cannot show what
they add (trace ids, the log context); this runs the production configuration
(:func:`services.core.logging.configure_logging`) and parses its output.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from services.core.logging import configure_logging


class JsonLogs:
    """Reads the lines written since the last read, as rendered JSON and parsed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.text = ""

    def read(self) -> list[dict[str, Any]]:
        """The JSON lines written since the last read (``text`` keeps them raw)."""
        self.text = self._capsys.readouterr().out
        return [
            json.loads(line) for line in self.text.splitlines() if line.startswith("{")
        ]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The lines of event ``name`` written since the last read."""
        return [line for line in self.read() if line.get("event") == name]


@contextlib.contextmanager
def json_logs(
    capsys: pytest.CaptureFixture[str], level: str = "INFO"
) -> Iterator[JsonLogs]:
    """Log as in production, to the captured stdout; restore the config after."""
    saved = structlog.get_config()
    configure_logging(level, service="gateway")
    capsys.readouterr()
    try:
        yield JsonLogs(capsys)
    finally:
        structlog.configure(**saved)
