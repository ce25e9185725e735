"""The rate-limit rules: a validated YAML file, separate from the settings.

Without a file the built-in defaults apply: free users 20 requests per minute, paid
users 100, no token limits and no per-model limits. A file replaces each top-level
section it names; see ``limits.example.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class RateRule(BaseModel):
    """Per-minute rates for one bucket owner; an unset rate means no such bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute; unset: not limited."
    )
    tpm: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per minute (input plus maximum output); "
        "unset: not limited.",
    )


def _default_tiers() -> dict[str, RateRule]:
    return {"free": RateRule(rpm=20), "paid": RateRule(rpm=100)}


class RateLimits(BaseModel):
    """Every rule the limiter applies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    burst_multiplier: float = Field(
        default=1.0,
        ge=1.0,
        description="Bucket capacity as a multiple of the per-minute rate. 1.0 makes "
        "'20 RPM' admit exactly 20 requests in a burst; 1.2 allows 24.",
    )
    default_tier: str = Field(
        default="free",
        description="The tier of users whose tier is empty or not listed in tiers.",
    )
    tiers: dict[str, RateRule] = Field(
        default_factory=_default_tiers,
        description="Per-user limits by user tier (the user layer).",
    )
    models: dict[str, RateRule] = Field(
        default_factory=dict,
        description="Limits per upstream model, the OpenAI account's own (the global "
        "layer); models not listed have no global buckets.",
    )

    @model_validator(mode="after")
    def _default_tier_is_listed(self) -> Self:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not in tiers")
        return self


def load_limits(path: Path | None) -> RateLimits:
    """Read and validate the limits file, or return the defaults when ``path`` is None.

    Raises:
        OSError: the file cannot be read.
        yaml.YAMLError: the file is not valid YAML.
        pydantic.ValidationError: the rules are not of the expected shape.
    """
    if path is None:
        return RateLimits()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return RateLimits.model_validate(data)
