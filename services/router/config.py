"""Settings of the router service, read from ``TOLLGATE_ROUTER_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import ServerSettings

DEFAULT_PORT = 50054


class RouterSettings(ServerSettings):
    """Configuration of the router service.

    Every field can be set from the environment with the prefix
    ``TOLLGATE_ROUTER_`` (for example ``TOLLGATE_ROUTER_ROUTING_FILE=/etc/r.yaml``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_ROUTER_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    routing_file: Path | None = Field(
        default=None,
        description="YAML routing table; unset uses the built-in "
        "services/router/default_routing.yaml. The file is watched and reloaded "
        "when it changes; an invalid version is logged and the old table kept.",
    )
    routing_file_check_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the routing file's modification time is checked.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by every router replica (degradation level, "
        "traffic split, rollbacks, outcomes, routing counts), for example "
        "redis://redis:6379/0; unset keeps that state in this process.",
    )
