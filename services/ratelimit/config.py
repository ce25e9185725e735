"""Settings of the ratelimit service, read from ``TOLLGATE_RATELIMIT_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import ServerSettings

DEFAULT_PORT = 50052


class RateLimitSettings(ServerSettings):
    """Configuration of the ratelimit service.

    Every field can be set from the environment with the prefix
    ``TOLLGATE_RATELIMIT_`` (for example
    ``TOLLGATE_RATELIMIT_LIMITS_FILE=limits.yaml``).
    The limits themselves live in the limits file, not here.
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_RATELIMIT_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    limits_file: Path | None = Field(
        default=None,
        description="YAML file of rate-limit rules (tiers, models, burst multiplier); "
        "unset: built-in defaults (free 20 RPM, paid 100 RPM, no model limits).",
    )
    reservation_ttl_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long an admitted request's reservation waits for Reconcile; "
        "after that it stands as estimated and is forgotten.",
    )
