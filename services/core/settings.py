"""Settings shared by every service.

Each service has one frozen pydantic-settings class with env prefix
``TOLLGATE_<SVC>_`` that extends :class:`ServerSettings`. Settings are loaded once in
``__main__`` and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """Where and how a service's gRPC server listens."""

    # A prefix of its own so a bare ServerSettings never reads generic names (PORT).
    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_SERVER_", frozen=True, extra="ignore"
    )

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 0.0.0.0 in containers.",
    )
    port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    grace_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM: seconds NOT_SERVING is announced and in-flight RPCs "
        "may finish before the server stops.",
    )
    log_level: str = Field(default="INFO", description="Minimum log level.")
    admin_key_sha256s: list[str] = Field(
        default_factory=list,
        description="SHA-256 hex digests of the keys allowed to call this service's "
        "admin RPCs (JSON list). Empty: admin RPCs are refused.",
    )
    health_check_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often component health checks run.",
    )
