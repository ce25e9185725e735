"""Seconds (float) to the protobuf well-known time types, rounded to nanoseconds."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of ``seconds``."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1_000_000_000))
    return value


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """The Timestamp ``seconds`` after the Unix epoch."""
    value = timestamp_pb2.Timestamp()
    value.FromNanoseconds(round(seconds * 1_000_000_000))
    return value
