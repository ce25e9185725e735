"""Settings of the ratelimit service, read from ``TOLLGATE_RATELIMIT_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import InternalServerSettings

DEFAULT_PORT = 50052


class RateLimitSettings(InternalServerSettings):
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
        description="YAML file of rate-limit rules (tiers, per-user overrides, "
        "service shares, models, Envoy mapping), reloaded when it changes; unset: "
        "built-in defaults (free 20 RPM, paid 100 RPM, no model limits).",
    )
    reservation_ttl_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long an admitted request's reservation waits for Reconcile; "
        "after that it stands as estimated and is forgotten.",
    )
    limits_reload_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the limits file's modification time is checked; a "
        "changed, valid file applies without a restart, an invalid one is logged and "
        "the rules in force stay.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:port/db) of the counter store shared by "
        "every replica; unset: in-process store (one replica only).",
    )
    redis_key_prefix: str = Field(
        default="{tollgate-rl}:",
        pattern=r"^[^{]*\{[^{}]+\}",
        description="Prefix of every Redis key. It must hold a {hash tag}: all keys "
        "share one Redis Cluster slot, as one script touches a user's and the "
        "model's buckets together.",
    )
    redis_socket_timeout_ms: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Redis read/write timeout; past it the decision is the failure "
        "mode's.",
    )
    redis_connect_timeout_ms: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Redis connect timeout.",
    )
    failure_mode: Literal["open", "closed"] = Field(
        default="open",
        description="When Redis is unreachable: 'open' decides with a local limiter "
        "whose limits are divided by replicas (answers say degraded); 'closed' "
        "answers UNAVAILABLE.",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        description="How many replicas share the Redis store; each takes limit / "
        "replicas while failing open.",
    )
    redis_retry_interval_ms: int = Field(
        default=1000,
        ge=1,
        description="While failing open: how long to decide locally before trying "
        "Redis again; recovery is automatic.",
    )
