from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.cache.config import CacheSettings


def test_defaults() -> None:
    settings = CacheSettings()
    assert settings.port == 50053
    assert settings.exact_max_bytes == 64 * 1024 * 1024
    assert (settings.default_ttl_seconds, settings.max_ttl_seconds) == (3600, 86400)


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_CACHE_PORT", "0")
    monkeypatch.setenv("TOLLGATE_CACHE_EXACT_MAX_BYTES", "1024")
    monkeypatch.setenv("TOLLGATE_CACHE_DEFAULT_TTL_SECONDS", "60")
    settings = CacheSettings()
    assert (settings.port, settings.exact_max_bytes) == (0, 1024)
    assert settings.default_ttl_seconds == 60


def test_default_ttl_may_not_exceed_the_cap() -> None:
    with pytest.raises(ValidationError, match="default_ttl_seconds"):
        CacheSettings(default_ttl_seconds=100, max_ttl_seconds=10)


@pytest.mark.parametrize("field", ["exact_max_bytes", "default_ttl_seconds"])
def test_non_positive_values_are_rejected(field: str) -> None:
    values: dict[str, Any] = {field: 0}
    with pytest.raises(ValidationError, match=field):
        CacheSettings(**values)
