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
        description="YAML pricing table replacing the packaged default_pricing.yaml.",
    )
    timezone: ZoneInfo = Field(
        default=ZoneInfo("UTC"),
        description="IANA time zone of report days and budget periods "
        "(e.g. Europe/Paris).",
    )
