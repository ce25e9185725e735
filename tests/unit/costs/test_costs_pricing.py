from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pydantic
import pytest

from services.core.pricing import (
    PriceEntry,
    PricingTable,
    TokenUsage,
    UnknownModelError,
    compute_cost_micros,
    load_pricing,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PRICING = load_pricing()


def _price(input_: int, cached: int, output: int, since: date) -> PriceEntry:
    return PriceEntry(
        effective_from=since,
        input_micros_per_mtok=input_,
        cached_input_micros_per_mtok=cached,
        output_micros_per_mtok=output,
    )


def test_default_table_has_the_published_prices() -> None:
    assert PRICING.currency_code == "USD"
    assert PRICING.batch_discount_percent == 50
    prices = {
        model: (
            price.input_micros_per_mtok,
            price.cached_input_micros_per_mtok,
            price.output_micros_per_mtok,
        )
        for model in PRICING.models
        for price in [PRICING.price_at(model, NOW)]
    }
    assert prices == {
        "gpt-4.1": (2_000_000, 500_000, 8_000_000),
        "gpt-4.1-mini": (400_000, 100_000, 1_600_000),
        "gpt-4.1-nano": (100_000, 25_000, 400_000),
        "text-embedding-3-small": (20_000, 20_000, 0),
        "text-embedding-3-large": (130_000, 130_000, 0),
    }


def test_input_and_output_cost_exactly() -> None:
    usage = TokenUsage(input_tokens=1000, cached_input_tokens=0, output_tokens=500)
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=False) == 6000


def test_a_fraction_of_a_micro_dollar_rounds_up() -> None:
    usage = TokenUsage(input_tokens=1, cached_input_tokens=0, output_tokens=0)
    assert PRICING.cost_micros("gpt-4.1-nano", usage, at=NOW, batch=False) == 1


def test_cached_input_tokens_are_billed_at_the_cached_price() -> None:
    usage = TokenUsage(input_tokens=1000, cached_input_tokens=400, output_tokens=0)
    # 600 x 2.0 + 400 x 0.5 micro-dollars.
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=False) == 1400


def test_no_usage_costs_nothing() -> None:
    usage = TokenUsage(input_tokens=0, cached_input_tokens=0, output_tokens=0)
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=True) == 0


def test_batch_price_is_half() -> None:
    usage = TokenUsage(input_tokens=1000, cached_input_tokens=0, output_tokens=500)
    assert PRICING.cost_micros("gpt-4.1", usage, at=NOW, batch=True) == 3000


def test_discount_applies_to_the_exact_amount_before_the_one_rounding() -> None:
    price = _price(100_000, 25_000, 400_000, date(2025, 1, 1))
    usage = TokenUsage(input_tokens=15, cached_input_tokens=0, output_tokens=0)
    # Exact: 1.5 micro-dollars; 60% of it is 0.9 → 1. Rounding first would give
    # ceil(0.6 x 2) = 2.
    assert compute_cost_micros(price, usage) == 2
    assert compute_cost_micros(price, usage, discount_percent=40) == 1


def test_the_price_in_force_at_occurred_at_applies() -> None:
    table = PricingTable(
        currency_code="USD",
        batch_discount_percent=50,
        models={
            "m": (
                _price(1_000_000, 0, 0, date(2025, 1, 1)),
                _price(3_000_000, 0, 0, date(2025, 6, 1)),
            )
        },
    )
    usage = TokenUsage(input_tokens=10, cached_input_tokens=0, output_tokens=0)
    before = datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC)
    from_change = datetime(2025, 6, 1, tzinfo=UTC)
    assert table.cost_micros("m", usage, at=before, batch=False) == 10
    assert table.cost_micros("m", usage, at=from_change, batch=False) == 30
    with pytest.raises(UnknownModelError):
        table.price_at("m", datetime(2024, 12, 31, tzinfo=UTC))


def test_unknown_model_is_refused() -> None:
    with pytest.raises(UnknownModelError) as raised:
        PRICING.price_at("gpt-9", NOW)
    assert raised.value.model == "gpt-9"


def test_pricing_file_overrides_the_default(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "currency_code: EUR\n"
        "batch_discount_percent: 25\n"
        "models:\n"
        "  local-model:\n"
        "    - effective_from: 2025-01-01\n"
        "      input_micros_per_mtok: 1000000\n"
        "      cached_input_micros_per_mtok: 0\n"
        "      output_micros_per_mtok: 2000000\n",
        encoding="utf-8",
    )
    table = load_pricing(path)
    usage = TokenUsage(input_tokens=4, cached_input_tokens=0, output_tokens=2)
    assert table.currency_code == "EUR"
    assert table.cost_micros("local-model", usage, at=NOW, batch=True) == 6
    assert list(table.models) == ["local-model"]


@pytest.mark.parametrize(
    "models",
    [
        {"m": []},
        {
            "m": [
                {
                    "effective_from": "2025-06-01",
                    "input_micros_per_mtok": 1,
                    "cached_input_micros_per_mtok": 1,
                    "output_micros_per_mtok": 1,
                },
                {
                    "effective_from": "2025-01-01",
                    "input_micros_per_mtok": 1,
                    "cached_input_micros_per_mtok": 1,
                    "output_micros_per_mtok": 1,
                },
            ]
        },
        {
            "m": [
                {
                    "effective_from": "2025-01-01",
                    "input_micros_per_mtok": -1,
                    "cached_input_micros_per_mtok": 1,
                    "output_micros_per_mtok": 1,
                }
            ]
        },
    ],
    ids=["no-entry", "unordered-dates", "negative-price"],
)
def test_invalid_tables_are_refused(models: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        PricingTable.model_validate(
            {"currency_code": "USD", "batch_discount_percent": 50, "models": models}
        )
