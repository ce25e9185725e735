"""Settings of the costs service, read from ``TOLLGATE_COSTS_*``."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import ServerSettings

DEFAULT_PORT = 50055


class CostsSettings(ServerSettings):
    """Configuration of the costs service.

    Every field can be set from the environment with the prefix ``TOLLGATE_COSTS_``
    (for example ``TOLLGATE_COSTS_DATABASE_PATH=/data/costs.sqlite3``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_COSTS_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    database_path: Path = Field(
        default=Path(".tollgate/costs.sqlite3"),
        description="SQLite file of the ledger; parent directories are created. "
        "':memory:' keeps the ledger in memory, for tests only.",
    )
    pricing_file: Path | None = Field(
        default=None,
        description="YAML pricing table replacing the packaged "
        "services/core/default_pricing.yaml.",
    )
    postgres_dsn: str | None = Field(
        default=None,
        description="libpq connection string or URL of a Postgres ledger "
        "(e.g. 'host=db dbname=tollgate user=costs'); when set it replaces the "
        "SQLite file, so that several costs replicas can share one ledger.",
    )
    postgres_pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Postgres connections (each on its own thread) per replica.",
    )
    reservation_ttl_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a CheckBudget reservation counts against budgets "
        "when no Record settles it.",
    )
    alert_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica reads the alerts other replicas fired, "
        "for its own WatchAlerts watchers.",
    )
    max_batch_size: int = Field(
        default=512,
        ge=1,
        description="Most Records (or CheckBudgets) grouped into one commit.",
    )
    timezone: ZoneInfo = Field(
        default=ZoneInfo("UTC"),
        description="IANA time zone of report days and budget periods "
        "(e.g. Europe/Paris).",
    )
