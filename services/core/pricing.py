"""Model prices and the one cost rule, in integer micro-dollars.

Prices are micro-dollars per 1,000,000 tokens, per model, in effective-dated entries:
the entry in force at a request's ``occurred_at`` (from 00:00 UTC of its
``effective_from`` date) prices it.

The cost rule, with integers only and a single rounding, always up (ceil)::

    uncached_input = input_tokens - cached_input_tokens
    numerator = uncached_input * input_price
              + cached_input_tokens * cached_input_price
              + output_tokens * output_price
    cost_micros = ceil(numerator * (100 - discount_percent) / (1_000_000 * 100))

``discount_percent`` is the batch discount for a Batch API request and 0 otherwise,
so the discount applies to the exact numerator before the one rounding. Rounding up
means a non-zero usage never costs 0: one gpt-4.1-nano input token costs
``ceil(0.1) = 1`` micro-dollar.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

TOKENS_PER_PRICE_UNIT = 1_000_000
_PERCENT = 100
_DEFAULT_PRICING_RESOURCE = "default_pricing.yaml"


class UnknownModelError(Exception):
    """No price is in force for the model at the given time."""

    def __init__(self, model: str, at: datetime) -> None:
        super().__init__(f"no price for model {model!r} at {at.isoformat()}")
        self.model = model


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens used by one model call; ``cached_input_tokens`` is part of the input."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        return self.input_tokens - self.cached_input_tokens


class PriceEntry(BaseModel):
    """The prices of one model from one date on, per 1M tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: date = Field(
        description="First UTC day (from 00:00 UTC) on which these prices apply."
    )
    input_micros_per_mtok: int = Field(
        ge=0, description="Uncached input tokens, micro-dollars per 1M tokens."
    )
    cached_input_micros_per_mtok: int = Field(
        ge=0, description="Cached input tokens, micro-dollars per 1M tokens."
    )
    output_micros_per_mtok: int = Field(
        ge=0, description="Output tokens, micro-dollars per 1M tokens."
    )


class PricingTable(BaseModel):
    """Every model's effective-dated prices, the currency and the batch discount."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency_code: str = Field(
        pattern=r"^[A-Z]{3}$", description="ISO 4217 code of every amount."
    )
    batch_discount_percent: int = Field(
        ge=0, le=100, description="Batch API discount in percent of the full price."
    )
    models: dict[str, tuple[PriceEntry, ...]] = Field(
        min_length=1, description="Price entries per model name."
    )

    @model_validator(mode="after")
    def _entries_are_ordered(self) -> Self:
        for model, entries in self.models.items():
            dates = [entry.effective_from for entry in entries]
            if not dates:
                raise ValueError(f"model {model!r} has no price entry")
            if dates != sorted(set(dates)):
                raise ValueError(
                    f"model {model!r}: effective_from dates must be unique and "
                    "in ascending order"
                )
        return self

    def price_at(self, model: str, at: datetime) -> PriceEntry:
        """The price entry of ``model`` in force at ``at`` (an aware datetime).

        Raises:
            UnknownModelError: the model is not listed, or not yet priced at ``at``.
        """
        day = at.astimezone(UTC).date()
        # Entries are in ascending date order (validated): the last one started.
        for entry in reversed(self.models.get(model, ())):
            if entry.effective_from <= day:
                return entry
        raise UnknownModelError(model, at)

    def cost_micros(
        self, model: str, usage: TokenUsage, *, at: datetime, batch: bool
    ) -> int:
        """The cost of ``usage`` on ``model`` at ``at``, batch price if ``batch``.

        Raises:
            UnknownModelError: no price is in force for the model at ``at``.
        """
        discount = self.batch_discount_percent if batch else 0
        return compute_cost_micros(self.price_at(model, at), usage, discount)


def compute_cost_micros(
    price: PriceEntry, usage: TokenUsage, discount_percent: int = 0
) -> int:
    """Apply the module's cost rule: integers only, one rounding, up."""
    numerator = (
        usage.uncached_input_tokens * price.input_micros_per_mtok
        + usage.cached_input_tokens * price.cached_input_micros_per_mtok
        + usage.output_tokens * price.output_micros_per_mtok
    ) * (_PERCENT - discount_percent)
    return -(-numerator // (TOKENS_PER_PRICE_UNIT * _PERCENT))


def list_price_micros(
    input_tokens: int,
    output_tokens: int,
    input_micros_per_million: int,
    output_micros_per_million: int,
) -> int:
    """The cost rule at list price: no cached input, no discount, rounded up.

    A routing decision's worst case; a caller reusing one recomputes it with this.
    """
    numerator = (
        input_tokens * input_micros_per_million
        + output_tokens * output_micros_per_million
    )
    return -(-numerator // TOKENS_PER_PRICE_UNIT)


def load_pricing(path: Path | None = None) -> PricingTable:
    """Load and validate a pricing YAML file; the packaged default when ``None``.

    Raises:
        pydantic.ValidationError: the file does not describe a valid table.
        OSError: the file cannot be read.
    """
    if path is None:
        text = (
            importlib.resources.files("services.core")
            .joinpath(_DEFAULT_PRICING_RESOURCE)
            .read_text(encoding="utf-8")
        )
    else:
        text = path.read_text(encoding="utf-8")
    return PricingTable.model_validate(yaml.safe_load(text))
