from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import services.ratelimit
from services.ratelimit.config import RateLimitSettings
from services.ratelimit.limits import RateLimits, RateRule, load_limits

EXAMPLE = Path(services.ratelimit.__file__).parent / "limits.example.yaml"


def test_defaults_without_a_file() -> None:
    limits = load_limits(None)

    assert limits.burst_multiplier == 1.0
    assert limits.default_tier == "free"
    assert limits.tiers == {"free": RateRule(rpm=20), "paid": RateRule(rpm=100)}
    assert limits.models == {}


def test_file_replaces_the_sections_it_names(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(
        "burst_multiplier: 1.2\nmodels:\n  gpt-4.1: {rpm: 500, tpm: 30000}\n"
    )

    limits = load_limits(path)

    assert limits.burst_multiplier == 1.2
    assert limits.tiers["free"] == RateRule(rpm=20)
    assert limits.models == {"gpt-4.1": RateRule(rpm=500, tpm=30_000)}


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("")

    assert load_limits(path) == RateLimits()


def test_example_file_is_valid() -> None:
    limits = load_limits(EXAMPLE)

    assert limits.tiers["paid"] == RateRule(rpm=100, tpm=200_000)
    assert limits.models["gpt-4.1"].tpm == 30_000


@pytest.mark.parametrize(
    "text",
    [
        "default_tier: gold\n",
        "tiers:\n  free: {rpm: 0}\n",
        "burst_multiplier: 0.5\n",
        "models:\n  gpt-4.1: {rps: 5}\n",
        "unknown_section: 1\n",
    ],
)
def test_invalid_rules_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text)

    with pytest.raises(ValidationError):
        load_limits(path)


def test_settings_defaults() -> None:
    settings = RateLimitSettings()

    assert settings.port == 50052
    assert settings.limits_file is None
    assert settings.reservation_ttl_seconds == 300.0


def test_settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOLLGATE_RATELIMIT_PORT", "6000")
    monkeypatch.setenv("TOLLGATE_RATELIMIT_LIMITS_FILE", str(tmp_path / "l.yaml"))
    monkeypatch.setenv("TOLLGATE_RATELIMIT_RESERVATION_TTL_SECONDS", "60")

    settings = RateLimitSettings()

    assert settings.port == 6000
    assert settings.limits_file == tmp_path / "l.yaml"
    assert settings.reservation_ttl_seconds == 60.0
