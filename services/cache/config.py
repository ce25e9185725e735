"""Settings of the cache service, read from ``TOLLGATE_CACHE_*``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.settings import ServerSettings

DEFAULT_PORT = 50053


class CacheSettings(ServerSettings):
    """Configuration of the cache service.

    Every field can be set from the environment with the prefix ``TOLLGATE_CACHE_``
    (for example ``TOLLGATE_CACHE_EXACT_MAX_BYTES=134217728``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_CACHE_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    exact_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Bound in bytes of the in-process exact tier; least recently "
        "used entries are evicted beyond it.",
    )
    default_ttl_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Lifetime in seconds of an entry stored without a TTL. "
        "Absolute: hits do not extend it.",
    )
    max_ttl_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="The longest lifetime in seconds a Store request may ask for; "
        "longer TTLs are capped to it.",
    )

    @model_validator(mode="after")
    def _default_ttl_within_max(self) -> Self:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds must not exceed max_ttl_seconds")
        return self
