"""The operator commands' parsing and printing, without any service."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from importlib import metadata

import pytest
from google.protobuf import timestamp_pb2
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.cli import main
from services.cli_ops import (
    OpsInputError,
    format_table,
    level_name,
    parse_duration,
    parse_level,
    parse_when,
    print_report,
)

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def test_version_prints_the_installed_distributions_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])

    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"tollgate {metadata.version('tollgate')}\n"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("1d", 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "0s", "1x", "1h-5m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(OpsInputError):
        parse_duration(text)


def test_times_are_rfc_3339_dates_or_durations_ago() -> None:
    assert parse_when("2026-01-05", NOW) == datetime(2026, 1, 5, tzinfo=UTC)
    assert parse_when("2026-01-05T09:30:00Z", NOW) == datetime(
        2026, 1, 5, 9, 30, tzinfo=UTC
    )
    assert parse_when("2026-01-05T09:30:00", NOW) == datetime(
        2026, 1, 5, 9, 30, tzinfo=UTC
    )
    assert parse_when("2026-01-05T09:30:00+02:00", NOW) == datetime(
        2026, 1, 5, 7, 30, tzinfo=UTC
    )
    assert parse_when("7d", NOW) == NOW - timedelta(days=7)
    with pytest.raises(OpsInputError):
        parse_when("last tuesday", NOW)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("0", "DEGRADATION_LEVEL_FULL_SERVICE"),
        ("2", "DEGRADATION_LEVEL_CACHED_ONLY"),
        ("cached-only", "DEGRADATION_LEVEL_CACHED_ONLY"),
        ("MAINTENANCE", "DEGRADATION_LEVEL_MAINTENANCE"),
    ],
)
def test_levels_by_number_or_name(text: str, name: str) -> None:
    assert parse_level(text) == name


@pytest.mark.parametrize("text", ["5", "-1", "broken"])
def test_unknown_levels_are_refused(text: str) -> None:
    with pytest.raises(OpsInputError):
        parse_level(text)


def test_level_names_carry_their_number() -> None:
    assert level_name(3) == "cached_only (2)"
    assert level_name(0) == "full_service (0)"  # unset means full service


def test_bad_arguments_exit_2_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No service listens on port 9: a call would fail with status 1, not 2.
    assert main(["degrade", "9", "--key", "k", "--router-address", "127.0.0.1:9"]) == 2
    assert "not a degradation level" in capsys.readouterr().err
    assert (
        main(["report", "--since", "soon", "--key", "k", "--address", "127.0.0.1:9"])
        == 2
    )
    assert "not a time" in capsys.readouterr().err


def _report() -> gateway_pb.GetUsageReportResponse:
    lines = [
        gateway_pb.UsageLine(
            key="", requests=1, cost_micros=6000, input_tokens=1000, output_tokens=500
        ),
        gateway_pb.UsageLine(
            key="key_0123456789abcdef",
            requests=2,
            cost_micros=1_234_567,
            saved_micros=10,
            input_tokens=2000,
            cached_input_tokens=100,
            output_tokens=800,
        ),
    ]
    return gateway_pb.GetUsageReportResponse(
        start_time=timestamp_pb2.Timestamp(seconds=1_767_225_600),
        end_time=timestamp_pb2.Timestamp(seconds=1_769_904_000),
        group_by=gateway_pb.USAGE_REPORT_GROUPING_API_KEY,
        lines=lines,
        total=gateway_pb.UsageLine(
            key="total",
            requests=3,
            cost_micros=1_240_567,
            saved_micros=10,
            input_tokens=3000,
            cached_input_tokens=100,
            output_tokens=1300,
        ),
        cache_saved_micros=10,
        currency_code="USD",
    )


def test_a_report_as_csv_is_integers_one_row_per_line() -> None:
    out = io.StringIO()

    print_report(_report(), "key", out, as_csv=True)

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows == [
        {
            "api_key_id": "",
            "requests": "1",
            "cost_micros": "6000",
            "saved_micros": "0",
            "input_tokens": "1000",
            "cached_input_tokens": "0",
            "output_tokens": "500",
        },
        {
            "api_key_id": "key_0123456789abcdef",
            "requests": "2",
            "cost_micros": "1234567",
            "saved_micros": "10",
            "input_tokens": "2000",
            "cached_input_tokens": "100",
            "output_tokens": "800",
        },
    ]


def test_a_report_as_a_table_has_dollars_and_a_total() -> None:
    out = io.StringIO()

    print_report(_report(), "key", out, as_csv=False)

    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "usage by key, 2026-01-01T00:00:00Z .. 2026-02-01T00:00:00Z (USD)"
    )
    assert lines[1].split() == [
        "API_KEY_ID",
        "REQUESTS",
        "COST",
        "$",
        "SAVED",
        "$",
        "INPUT",
        "CACHED",
        "OUTPUT",
    ]
    assert lines[2].split() == [
        "(none)",
        "1",
        "0.006000",
        "0.000000",
        "1000",
        "0",
        "500",
    ]
    assert lines[3].split()[:3] == ["key_0123456789abcdef", "2", "1.234567"]
    assert lines[4].split() == [
        "total",
        "3",
        "1.240567",
        "0.000010",
        "3000",
        "100",
        "1300",
    ]
    assert lines[5] == "savings: cache $0.000010, routing $0.000000, batch $0.000000"


def test_tables_align_numbers_right_and_text_left() -> None:
    assert format_table(
        ["NAME", "N", "STATE"], [["a", "1", "open"], ["bbb", "100", "closed"]]
    ) == ("NAME    N  STATE\na       1  open\nbbb   100  closed")
