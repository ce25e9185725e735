from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.cli import build_parser
from services.cli_keys import (
    KeysInputError,
    build_create_request,
    format_key_table,
    parse_budget_usd,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 2_592_000),
        ("12h", 43_200),
        ("1h30m", 5400),
        ("90s", 90),
        ("2w", 1_209_600),
    ],
)
def test_durations_take_units_and_sums(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30", "1y", "0d", "h1", "1d-2h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(KeysInputError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "micros"),
    [("25", 25_000_000), ("12.50", 12_500_000), ("$0.000001", 1)],
)
def test_budgets_are_exact_micro_dollars(text: str, micros: int) -> None:
    assert parse_budget_usd(text) == micros


@pytest.mark.parametrize("text", ["0", "-5", "abc", "0.0000001", "nan", "inf"])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(KeysInputError):
        parse_budget_usd(text)


def test_create_request_carries_every_attribute() -> None:
    args = build_parser().parse_args(
        [
            "keys",
            "create",
            "--tenant",
            "acme",
            "--user",
            "alice",
            "--tier",
            "paid",
            "--service",
            "chat",
            "--models",
            "auto, gpt-4.1-mini,,",
            "--expires",
            "7d",
            "--budget-usd",
            "5",
        ]
    )

    request = build_create_request(args)

    assert (request.tenant_id, request.user_id, request.user_tier, request.service) == (
        "acme",
        "alice",
        "paid",
        "chat",
    )
    assert list(request.models) == ["auto", "gpt-4.1-mini"]
    assert request.ttl.seconds == 7 * 86_400
    assert request.budget_limit_micros == 5_000_000


def test_create_without_expiry_or_budget_leaves_them_unset() -> None:
    args = build_parser().parse_args(["keys", "create", "--tenant", "acme"])

    request = build_create_request(args)

    assert not request.HasField("ttl")
    assert not request.HasField("budget_limit_micros")


def test_the_table_shows_status_and_never_a_secret() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    expired = gateway_pb.ApiKey(
        key_id="tk_0000000000000001",
        source=gateway_pb.API_KEY_SOURCE_STORE,
        tenant_id="acme",
        service="chat",
        user_tier="free",
        budget_limit_micros=2_500_000,
    )
    expired.expire_time.FromDatetime(datetime(2026, 1, 1))
    revoked = gateway_pb.ApiKey(
        key_id="tk_0000000000000002",
        source=gateway_pb.API_KEY_SOURCE_STORE,
        tenant_id="acme",
        service="chat",
        user_id="bob",
        user_tier="paid",
        models=["auto"],
    )
    revoked.revoke_time.FromDatetime(datetime(2026, 5, 1))
    seed = gateway_pb.ApiKey(
        key_id="key_0123456789abcdef",
        source=gateway_pb.API_KEY_SOURCE_FILE,
        tenant_id="seed",
        service="default",
        user_tier="free",
    )

    lines = format_key_table([seed, expired, revoked], now).splitlines()

    assert [line.split() for line in lines] == [
        [
            "KEY_ID",
            "SOURCE",
            "STATUS",
            "TENANT",
            "SERVICE",
            "USER",
            "TIER",
            "MODELS",
            "EXPIRES",
            "BUDGET",
        ],
        [
            "key_0123456789abcdef",
            "file",
            "active",
            "seed",
            "default",
            "-",
            "free",
            "any",
            "never",
            "-",
        ],
        [
            "tk_0000000000000001",
            "store",
            "expired",
            "acme",
            "chat",
            "-",
            "free",
            "any",
            "2026-01-01T00:00:00Z",
            "$2.50/month",
        ],
        [
            "tk_0000000000000002",
            "store",
            "revoked",
            "acme",
            "chat",
            "bob",
            "paid",
            "auto",
            "never",
            "-",
        ],
    ]
