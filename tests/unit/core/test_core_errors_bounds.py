"""A status built from hostile input stays under gRPC's 16 KiB header limit."""

from __future__ import annotations

from services.core.errors import (
    MAX_DESCRIPTION_CHARS,
    MAX_MESSAGE_CHARS,
    FieldViolation,
    InvalidArgumentError,
    to_grpc_status,
)


def test_long_violations_are_cut_so_the_status_fits_in_grpc_headers() -> None:
    quoted = "é" * 5000
    error = InvalidArgumentError(
        [FieldViolation(f"field_{i}", f"bad value {quoted}") for i in range(30)]
    )

    status = to_grpc_status(error, "test")

    assert len(status.details) <= MAX_MESSAGE_CHARS
    details_bin = dict(status.trailing_metadata)["grpc-status-details-bin"]
    assert isinstance(details_bin, bytes)
    # On the wire: the message percent-encoded (3 bytes per UTF-8 byte), the
    # details base64-encoded (4 per 3); both with room to spare under 16 KiB.
    wire = len(status.details.encode()) * 3 + len(details_bin) * 4 // 3
    assert wire < 15 * 1024
    assert (
        all(
            len(line) <= MAX_DESCRIPTION_CHARS for line in error.message.split("; ")[1:]
        )
        or len(status.details) == MAX_MESSAGE_CHARS
    )
