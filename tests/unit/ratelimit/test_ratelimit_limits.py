from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

import services.ratelimit
from services.ratelimit.config import RateLimitSettings
from services.ratelimit.limits import (
    LimitsWatcher,
    RateLimits,
    RateRule,
    load_limits,
)

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
    assert limits.services == {"chat": 0.6, "batch": 0.3, "internal": 0.1}
    assert limits.service_rule("chat", "gpt-4.1") == RateRule(rpm=300, tpm=18_000)
    assert limits.user_rule("acme", "batch-robot", "paid") == RateRule(
        rpm=500, tpm=200_000
    )
    assert limits.envoy.domains == ["tollgate"]


@pytest.mark.parametrize(
    "text",
    [
        "default_tier: gold\n",
        "tiers:\n  free: {rpm: 0}\n",
        "burst_multiplier: 0.5\n",
        "models:\n  gpt-4.1: {rps: 5}\n",
        "unknown_section: 1\n",
        "services: {chat: 0.7, batch: 0.4}\n",
        "services: {chat: 0}\n",
        "users: {alice: {rpm: 5}}\n",
        "envoy: {entries: {user: nickname}}\n",
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


def test_shares_round_down_to_whole_units_without_float_surprises() -> None:
    limits = RateLimits(
        services={"a": 0.57, "b": 0.001}, models={"m": RateRule(rpm=100, tpm=7)}
    )

    assert limits.service_rule("a", "m") == RateRule(rpm=57, tpm=3)
    # At least one unit per minute, so a share always refills.
    assert limits.service_rule("b", "m") == RateRule(rpm=1, tpm=1)
    assert limits.service_rule("a", "unknown") is None
    assert limits.service_rule("unknown", "m") is None


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_watcher_applies_a_changed_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    _write(path, "tiers: {free: {rpm: 20}}\n", 1_000_000_000)
    applied: list[RateLimits] = []
    watcher = LimitsWatcher(path, applied.append)

    unchanged = watcher.check()
    _write(path, "tiers: {free: {rpm: 7}}\n", 2_000_000_000)
    changed = watcher.check()

    assert (unchanged, changed) == (False, True)
    assert [limits.tiers["free"].rpm for limits in applied] == [7]


def test_watcher_keeps_the_rules_in_force_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    _write(path, "tiers: {free: {rpm: 20}}\n", 1_000_000_000)
    applied: list[RateLimits] = []
    watcher = LimitsWatcher(path, applied.append)

    with capture_logs() as logs:
        _write(path, "tiers: {free: {rpm: -1}}\n", 2_000_000_000)
        invalid = watcher.check()
        _write(path, "tiers: [unclosed\n", 3_000_000_000)
        broken = watcher.check()
        path.unlink()
        missing = watcher.check()

    assert (invalid, broken, missing) == (False, False, False)
    assert applied == []
    assert [(e["event"], e["log_level"], e["error_type"]) for e in logs] == [
        ("limits_reload_failed", "error", "ValidationError"),
        ("limits_reload_failed", "error", "ParserError"),
        ("limits_reload_failed", "error", "FileNotFoundError"),
    ]


def test_settings_select_memory_by_default_and_short_redis_timeouts() -> None:
    settings = RateLimitSettings()

    assert settings.redis_url is None
    assert settings.failure_mode == "open"
    assert settings.replicas == 1
    assert settings.redis_socket_timeout_ms == 50
    assert settings.redis_connect_timeout_ms == 50
    assert settings.redis_key_prefix == "{tollgate-rl}:"


@pytest.mark.parametrize(
    "env",
    [
        {"TOLLGATE_RATELIMIT_REDIS_KEY_PREFIX": "no-hash-tag:"},
        {"TOLLGATE_RATELIMIT_REDIS_SOCKET_TIMEOUT_MS": "5000"},
        {"TOLLGATE_RATELIMIT_FAILURE_MODE": "maybe"},
        {"TOLLGATE_RATELIMIT_REPLICAS": "0"},
    ],
)
def test_invalid_settings_fail_fast(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(ValidationError):
        RateLimitSettings()
