from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultKind


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOLLGATE_SIMULATOR_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = SimulatorSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8089)
    assert settings.latency_ms == 20
    assert settings.per_token_latency_ms == 0
    assert settings.default_max_output_tokens == 64
    assert settings.fault_rate == 0
    assert settings.fault_kind is FaultKind.SERVER_ERROR
    assert settings.batch_completion_seconds == 2.0
    assert settings.batch_failure_rate == 0


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_SIMULATOR_PORT", "0")
    monkeypatch.setenv("TOLLGATE_SIMULATOR_FAULT_KIND", "rate_limit")
    monkeypatch.setenv("TOLLGATE_SIMULATOR_FAULT_RATE", "0.25")
    settings = SimulatorSettings()
    assert settings.port == 0
    assert settings.fault_kind is FaultKind.RATE_LIMIT
    assert settings.fault_rate == 0.25


@pytest.mark.parametrize(
    "field", ["fault_rate", "port", "latency_ms", "default_max_output_tokens"]
)
def test_out_of_range_values_are_rejected(field: str) -> None:
    bad: dict[str, Any] = {
        "fault_rate": 1.5,
        "port": 70000,
        "latency_ms": -1,
        "default_max_output_tokens": 0,
    }
    with pytest.raises(ValidationError, match=field):
        SimulatorSettings(**{field: bad[field]})


def test_unknown_fault_kind_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_SIMULATOR_FAULT_KIND", "explode")
    with pytest.raises(ValidationError, match="fault_kind"):
        SimulatorSettings()


def test_settings_are_frozen_and_described() -> None:
    settings = SimulatorSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]  # frozen: mypy knows it fails
    assert all(f.description for f in SimulatorSettings.model_fields.values())
