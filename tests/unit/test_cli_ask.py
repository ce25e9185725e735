"""`tollgate ask`: argument handling and printing, without a gateway."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.cli import (
    build_ask_request,
    build_parser,
    main,
    print_reply,
    print_stream,
    schema_name,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["ask", *argv])


def _schema_file(tmp_path: Path, name: str = "forecast.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    return path


def test_plain_ask_builds_a_create_request_without_a_format() -> None:
    request = build_ask_request(_args("hello", "--priority", "realtime"))

    assert isinstance(request, gateway_pb.CreateResponseRequest)
    assert request.input == "hello"
    assert request.instructions == ""
    assert request.priority == common_pb.PRIORITY_REALTIME
    assert not request.HasField("response_format")


def test_instructions_json_schema_and_stream_fill_a_stream_request(
    tmp_path: Path,
) -> None:
    path = _schema_file(tmp_path)

    request = build_ask_request(
        _args(
            "Forecast for Oslo",
            "--instructions",
            "Answer tersely.",
            "--json-schema",
            str(path),
            "--stream",
            "--model",
            "gpt-4.1-mini",
            "--user",
            "alice",
        )
    )

    assert isinstance(request, gateway_pb.StreamResponseRequest)
    assert request.instructions == "Answer tersely."
    assert (request.model, request.user_id) == ("gpt-4.1-mini", "alice")
    assert request.response_format.WhichOneof("format") == "json_schema"
    json_schema = request.response_format.json_schema
    assert json_schema.name == "forecast"
    assert json_schema.strict is True
    assert json_format.MessageToDict(json_schema.schema) == SCHEMA


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("invoice.json", "invoice"),
        ("invoice.schema.json", "invoice_schema"),
        ("my weather (v2).json", "my_weather_v2_"),
        ("kebab-case_ok.json", "kebab-case_ok"),
        ("ünïcode.json", "_n_code"),
        (f"{'x' * 80}.json", "x" * 64),
        ("...json", "schema"),
    ],
)
def test_the_schema_name_is_the_sanitised_file_stem(
    file_name: str, expected: str
) -> None:
    name = schema_name(Path(file_name))

    assert name == expected
    assert NAME_PATTERN.fullmatch(name)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('["an", "array"]', "must hold a JSON object schema"),
    ],
)
def test_a_bad_schema_file_exits_2_before_any_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("TOLLGATE_API_KEY", "tg_unit_key")
    # Nothing listens there: reaching the gateway would fail differently (exit 1).
    monkeypatch.setenv("TOLLGATE_GATEWAY_ADDRESS", "127.0.0.1:9")

    status = main(["ask", "question", "--json-schema", str(path)])

    assert status == 2
    assert message in capsys.readouterr().err


def test_without_a_key_ask_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOLLGATE_STATE_DIR", str(tmp_path))

    assert main(["ask", "question", "--stream"]) == 2
    assert "no API key" in capsys.readouterr().err


def _started() -> gateway_pb.StreamResponseResponse:
    return gateway_pb.StreamResponseResponse(
        started=gateway_pb.StreamStarted(
            request_id="req_1",
            model="gpt-4.1-mini",
            deployment="stable",
            cache_status=common_pb.CACHE_STATUS_MISS,
        )
    )


def _delta(text: str) -> gateway_pb.StreamResponseResponse:
    return gateway_pb.StreamResponseResponse(delta=gateway_pb.TextDelta(text=text))


def _piece(
    index: int, arguments: str, call_id: str = "", name: str = ""
) -> gateway_pb.StreamResponseResponse:
    return gateway_pb.StreamResponseResponse(
        tool_call_delta=gateway_pb.ToolCallDelta(
            index=index, id=call_id, name=name, arguments_delta=arguments
        )
    )


def _completed(**fields: Any) -> gateway_pb.StreamResponseResponse:
    return gateway_pb.StreamResponseResponse(
        completed=gateway_pb.StreamCompleted(
            usage=common_pb.Usage(input_tokens=12, output_tokens=30),
            cost_micros=250,
            currency_code="USD",
            **fields,
        )
    )


SUMMARY = (
    "model=gpt-4.1-mini deployment=stable cache=miss tokens in=12 out=30 "
    "cost=$0.000250 (250 micros) request_id=req_1"
)


def test_a_stream_prints_deltas_then_the_summary_of_started_and_completed() -> None:
    out = io.StringIO()

    status = print_stream(
        [_started(), _delta("Hello"), _delta(", world."), _completed()],
        out,
        json_answer=False,
    )

    assert status == 0
    assert out.getvalue() == f"Hello, world.\n\n{SUMMARY}\n"


def test_tool_call_pieces_are_printed_as_they_assemble() -> None:
    out = io.StringIO()
    events = [
        _started(),
        _piece(0, '{"city":', "call_a", "get_weather"),
        _piece(0, ' "Paris"}'),
        _piece(1, '{"tz":', "call_b", "get_time"),
        _piece(1, ' "CET"}'),
        _completed(finish_reason=common_pb.FINISH_REASON_TOOL_CALLS),
    ]

    assert print_stream(events, out, json_answer=False) == 0
    assert out.getvalue() == (
        '[tool call 0: get_weather call_a] {"city": "Paris"}\n'
        '[tool call 1: get_time call_b] {"tz": "CET"}\n'
        f"\n{SUMMARY}\n"
    )


def test_a_stream_without_a_completion_event_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()

    assert print_stream([_started(), _delta("Hel")], out, json_answer=False) == 1
    assert out.getvalue() == "Hel\n"
    assert "without a completion event" in capsys.readouterr().err


def test_a_streamed_json_answer_must_parse(capsys: pytest.CaptureFixture[str]) -> None:
    good = [_started(), _delta('{"city": '), _delta('"Oslo"}'), _completed()]
    bad = [_started(), _delta('{"city": '), _completed()]

    assert print_stream(good, io.StringIO(), json_answer=True) == 0
    assert print_stream(bad, io.StringIO(), json_answer=True) == 1
    assert "not JSON" in capsys.readouterr().err


def _reply(text: str, **fields: Any) -> gateway_pb.CreateResponseResponse:
    return gateway_pb.CreateResponseResponse(
        output_text=text,
        model="gpt-4.1-mini",
        deployment="stable",
        cache_status=common_pb.CACHE_STATUS_EXACT,
        usage=common_pb.Usage(input_tokens=12, output_tokens=30),
        request_id="req_2",
        **fields,
    )


def test_a_json_answer_is_pretty_printed() -> None:
    out = io.StringIO()

    status = print_reply(_reply('{"city":"Oslo","days":2}'), out, json_answer=True)

    assert status == 0
    answer, summary = out.getvalue().split("\n\n")
    assert answer == '{\n  "city": "Oslo",\n  "days": 2\n}'
    assert summary.startswith("model=gpt-4.1-mini deployment=stable cache=exact ")
    assert summary.endswith("cost=$0.000000 (0 micros) request_id=req_2\n")


def test_a_text_answer_to_a_json_request_is_printed_and_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()

    assert print_reply(_reply("Sorry, no."), out, json_answer=True) == 1
    assert out.getvalue().startswith("Sorry, no.\n")
    assert "not JSON" in capsys.readouterr().err


def test_tool_calls_of_a_reply_are_printed_one_a_line() -> None:
    out = io.StringIO()
    call = common_pb.ToolCall(id="call_a", name="get_weather", arguments="{}")

    print_reply(_reply("", tool_calls=[call]), out, json_answer=False)

    assert out.getvalue().startswith("[tool call 0: get_weather call_a] {}\n\n")
