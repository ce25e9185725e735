"""Real image files made in memory, for tests of image input (no file fixtures)."""

from __future__ import annotations

import base64
import struct
import zlib


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, kind, data and CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width: int, height: int) -> bytes:
    """A real (all black, RGB) PNG of ``width`` x ``height``."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\x00" * 3 * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes, media_type: str = "image/png") -> str:
    """``data`` as a base64 data URL."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def png_data_url(width: int, height: int) -> str:
    """A PNG of ``width`` x ``height`` as a data URL."""
    return data_url(png(width, height))
