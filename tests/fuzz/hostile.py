"""Hypothesis strategies for hostile gRPC input, built from the contracts themselves.

Every request message is drawn from its descriptor, so a field added to a proto is
fuzzed without touching this file: strings run from empty to over a mebibyte,
integers to both ends of their range (negatives included), enums to values no
contract names, doubles to NaN and infinities, timestamps past year 9999. Raw
payloads go further than a well-behaved client can: invalid UTF-8 in string fields,
corrupt wire format and messages past the server's size limit.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.grpc_helpers import error_details

FD = descriptor.FieldDescriptor

# A proper answer to hostile input: a decision, or a status that says what went
# wrong. UNKNOWN and INTERNAL mean an exception escaped; DATA_LOSS is never right.
IMPROPER = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
)
MIB = 1024 * 1024
# The servers refuse messages above 8 MiB (services/core/server.py).
SERVER_LIMIT_BYTES = 8 * MIB
CALL_TIMEOUT_SECONDS = 10.0
# Server streams (WatchAlerts) may never end: read this long, then hang up.
STREAM_READ_SECONDS = 0.2

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings a careless handler trips on, next to random text.
_NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "auto",
    "gpt-4.1-mini",
    "dev",
    "-1",
    "NaN",
    "9" * 40,
    "../../../etc/passwd",
    "%s%n{0}${x}",
    "\u202e\u0000\ufeff",
    "😀" * 300,
    "a" * 70_000,
]


@st.composite
def _big_string(draw: st.DrawFn, max_bytes: int) -> str:
    size = draw(st.sampled_from([64 * 1024 + 1, 300_000, MIB + 1, 3 * MIB]))
    return draw(st.sampled_from("xé😀")) * min(size, max_bytes)


def _strings(max_bytes: int) -> st.SearchStrategy[str]:
    short = st.text(max_size=40)
    # Mostly short text, so that requests get past validation to the handlers.
    return st.one_of(
        short, short, short, st.sampled_from(_NASTY_STRINGS), _big_string(max_bytes)
    )


# The range google.protobuf.Timestamp allows (years 1 to 9999), and Duration's.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
_DURATION_SECONDS = 315_576_000_000


def _well_known_time(message: descriptor.Descriptor) -> st.SearchStrategy[Message]:
    """Timestamps and durations inside the ranges their specs allow, hostile within."""
    cls = message_factory.GetMessageClass(message)
    if message.full_name == "google.protobuf.Timestamp":
        low, high = _TIMESTAMP_SECONDS
        seconds = st.one_of(st.integers(low, high), st.sampled_from([low, high, 0]))
        return st.builds(cls, seconds=seconds, nanos=st.integers(0, 999_999_999))
    return st.one_of(
        st.builds(
            cls,
            seconds=st.integers(0, _DURATION_SECONDS),
            nanos=st.integers(0, 999_999_999),
        ),
        st.builds(
            cls,
            seconds=st.integers(-_DURATION_SECONDS, 0),
            nanos=st.integers(-999_999_999, 0),
        ),
    )


_TIME_TYPES = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration"})


def _scalar(field: FD, max_bytes: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FD.TYPE_STRING:
        return _strings(max_bytes)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=256)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=64 if kind == FD.TYPE_DOUBLE else 32)
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        # Proto3 enums are open: any int32 travels, named or not.
        return st.one_of(
            st.sampled_from(known),
            st.sampled_from([-1, max(known) + 1, 2**31 - 1, -(2**31)]),
            st.integers(-(2**31), 2**31 - 1),
        )
    low, high = _INT_RANGES[kind]
    return st.one_of(
        st.integers(-1000, 1000).filter(lambda n: low <= n <= high),
        st.sampled_from(sorted({low, high, low + 1, high - 1, 0, max(low, -1)})),
        st.integers(low, high),
    )


def _value(
    field: FD, depth: int, max_bytes: int, wild_time: bool
) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return messages(field.message_type, depth + 1, max_bytes, wild_time)
    return _scalar(field, max_bytes)


def messages(
    message: descriptor.Descriptor,
    depth: int = 0,
    max_bytes: int = 3 * MIB,
    wild_time: bool = False,
) -> st.SearchStrategy[Message]:
    """Messages of type ``message`` whose every field may be set to hostile values.

    Args:
        message: the message's descriptor.
        depth: nesting so far; below three levels nested messages stay empty.
        max_bytes: bound on a single drawn string, in characters.
        wild_time: Timestamps and Durations take any seconds and nanos, also
            outside the ranges their specs allow (years past 9999, negative nanos).
    """
    cls = message_factory.GetMessageClass(message)
    if message.full_name in _TIME_TYPES and not wild_time:
        return _well_known_time(message)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in message.fields:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            optional[field.name] = st.dictionaries(
                _scalar(key, 4096) if key.type != FD.TYPE_STRING else st.text(),
                _value(value, depth, max_bytes, wild_time),
                max_size=20,
            )
        elif field.is_repeated:
            # A few distinct items, or one item repeated hundreds of times (cheap
            # to draw, costly to a handler that loops over them).
            optional[field.name] = st.lists(
                _value(field, depth, max_bytes, wild_time), max_size=4
            ) | st.tuples(
                _value(field, depth, 64, wild_time), st.integers(200, 2000)
            ).map(lambda item: [item[0]] * item[1])
        else:
            optional[field.name] = _value(field, depth, max_bytes, wild_time)
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(cls, values)
    )


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    built = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        entry = field.message_type
        target = getattr(built, name)
        if entry is not None and entry.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            if field.type == FD.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FD.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(built, name, value)
    return built


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_fields(message: descriptor.Descriptor) -> list[int]:
    """The field numbers of the top-level string fields of ``message``."""
    return [f.number for f in message.fields if f.type == FD.TYPE_STRING]


@st.composite
def invalid_utf8_payloads(draw: st.DrawFn, message: descriptor.Descriptor) -> bytes:
    """A serialized ``message`` whose string field holds bytes that are not UTF-8."""
    numbers = string_fields(message)
    number = draw(st.sampled_from(numbers))
    junk = draw(
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"])
    )
    body = draw(st.binary(max_size=16)) + junk + draw(st.binary(max_size=16))
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def corrupt_payloads() -> st.SearchStrategy[bytes]:
    """Bytes that are not a protobuf message: truncated, bad tags, lying lengths."""
    return st.one_of(
        st.sampled_from(
            [
                b"\xff\xff\xff\xff",
                b"\x0a\x05ab",  # a length that runs past the end
                b"\x0a\xff\xff\xff\xff\x0f",  # a 4 GiB length
                b"\x07",  # wire type 7 does not exist
                b"\x00\x01",  # field number 0 does not exist
            ]
        ),
        st.binary(min_size=1, max_size=64),
    )


@st.composite
def hostile_metadata(
    draw: st.DrawFn, auth: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Call metadata: the right credentials most of the time, junk around them.

    Now and then a value goes past gRPC's 16 KiB limit (the transport refuses it
    with RESOURCE_EXHAUSTED and resets the connection, so not too often).
    """
    pairs: list[tuple[str, str]] = []
    wrong = [
        [],
        [("authorization", "Bearer ")],
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer " + "k" * 4000)],
    ]
    pairs.extend(draw(st.sampled_from([list(auth)] * 8 + wrong)))
    printable = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64
    )
    keys = st.from_regex(r"x-[a-z0-9_.-]{1,20}", fullmatch=True).filter(
        lambda key: not key.endswith("-bin")  # binary keys take bytes values
    )
    pairs.extend(draw(st.lists(st.tuples(keys, printable), max_size=4)))
    # Hypothesis favours the ends of a range: a middle value is a plain 1 in n.
    if draw(st.integers(0, 3)) == 2:
        size = draw(st.sampled_from([129, 2000, 9000]))
        pairs.append(("x-request-id", "r" * size))
    if draw(st.integers(0, 15)) == 7:
        pairs.append(("x-huge", "h" * 20_000))
    return pairs


@dataclass(frozen=True)
class Rpc:
    """One public RPC: its path, request type and whether it streams answers."""

    path: str
    request: descriptor.Descriptor
    server_streaming: bool


def rpcs_of(*services: descriptor.ServiceDescriptor) -> list[Rpc]:
    """Every RPC of ``services``."""
    return [
        Rpc(f"/{s.full_name}/{m.name}", m.input_type, m.server_streaming)
        for s in services
        for m in s.methods
    ]


@dataclass(frozen=True)
class Answer:
    """What a server said: OK or a status, with the details of a failure."""

    code: grpc.StatusCode
    detail_types: frozenset[str]
    message: str


async def call_raw(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    payload: bytes,
    metadata: Sequence[tuple[str, str]] = (),
    stream_seconds: float = STREAM_READ_SECONDS,
) -> Answer:
    """Send ``payload`` as the request of ``rpc``; the answer's bytes are not read.

    A server stream is read for ``stream_seconds`` at most, then cancelled; a
    stream still open by then counts as OK.
    """

    def raw(data: bytes) -> bytes:
        return data

    try:
        if rpc.server_streaming:
            stream = channel.unary_stream(
                rpc.path, request_serializer=raw, response_deserializer=raw
            )(payload, metadata=tuple(metadata), timeout=CALL_TIMEOUT_SECONDS)
            try:
                async with asyncio.timeout(stream_seconds):
                    async for _ in stream:
                        pass
            except TimeoutError:
                stream.cancel()
        else:
            await channel.unary_unary(
                rpc.path, request_serializer=raw, response_deserializer=raw
            )(payload, metadata=tuple(metadata), timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        details = frozenset(error_details(error))
        return Answer(error.code(), details, error.details() or "")
    return Answer(grpc.StatusCode.OK, frozenset(), "")


def improper(answer: Answer) -> str | None:
    """Why ``answer`` is not a proper answer to hostile input, or None if it is."""
    if answer.code in IMPROPER:
        return f"{answer.code.name}: {answer.message[:300]}"
    if (
        answer.code is grpc.StatusCode.INVALID_ARGUMENT
        and "google.rpc.ErrorInfo" not in answer.detail_types
    ):
        return f"INVALID_ARGUMENT without ErrorInfo: {answer.message[:300]}"
    return None


def rss_bytes() -> int:
    """The resident set size of this process now (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
