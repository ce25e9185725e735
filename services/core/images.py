"""Input tokens of images, by OpenAI's published tile formula.

An image costs a fixed 85 tokens at ``detail="low"``. Otherwise (``auto`` or
``high``) it is first scaled down, never up, to fit inside 2048x2048, then scaled
down so that its shortest side is at most 768 pixels; it then costs 85 tokens
plus 170 per 512x512 tile needed to cover it:
``85 + 170 * ceil(w / 512) * ceil(h / 512)``. So 512x512 costs 255 tokens,
1024x1024 costs 765 and 2048x4096 costs 1105.

The size of a ``data:`` URL's image is read from its PNG, JPEG, GIF or WebP
header; only the first few kilobytes of the base64 payload are decoded (more
only for a JPEG whose metadata comes before its frame header). Nothing is ever
fetched: an https image, or a data URL whose header cannot be read, has an
unknown size and is counted as :data:`UNKNOWN_IMAGE_TOKENS` (765, the figure of
a 1024x1024 image) at ``auto``/``high`` detail, and 85 at ``low``.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import urllib.parse
from fractions import Fraction

LOW_DETAIL_TOKENS = 85
"""Tokens of any image at ``detail="low"``, and the base of the tile formula."""

TILE_TOKENS = 170
"""Tokens per 512x512 tile at ``auto``/``high`` detail."""

UNKNOWN_IMAGE_TOKENS = 765
"""Tokens of an image whose size is unknown at ``auto``/``high`` detail.

It is the cost of a 1024x1024 image: four tiles, 85 + 4 * 170.
"""

_MAX_SIDE = 2048
_MAX_SHORT_SIDE = 768
_TILE = 512
_HEADER_BYTES = 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def image_tokens(width: int | None, height: int | None, detail: str = "auto") -> int:
    """Return the input tokens of a ``width`` x ``height`` image at ``detail``.

    Args:
        width: the width in pixels; None (or not positive) when unknown.
        height: the height in pixels; None (or not positive) when unknown.
        detail: ``"low"``, ``"high"`` or ``"auto"`` (any value but ``"low"``
            counts as full detail, as ``auto`` does for images this size).
    """
    if detail == "low":
        return LOW_DETAIL_TOKENS
    if width is None or height is None or width <= 0 or height <= 0:
        return UNKNOWN_IMAGE_TOKENS
    # Exact fractions, so that a side scaled to exactly 1536 is never 1536.0000001.
    w, h = Fraction(width), Fraction(height)
    if max(w, h) > _MAX_SIDE:
        scale = _MAX_SIDE / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > _MAX_SHORT_SIDE:
        scale = _MAX_SHORT_SIDE / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / _TILE) * math.ceil(h / _TILE)
    return LOW_DETAIL_TOKENS + TILE_TOKENS * tiles


def image_url_tokens(url: str, detail: str = "auto") -> int:
    """Return the input tokens of the image at ``url`` (see :func:`image_tokens`)."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = image_dimensions(url)
    if size is None:
        return UNKNOWN_IMAGE_TOKENS
    return image_tokens(size[0], size[1], detail)


def image_dimensions(url: str) -> tuple[int, int] | None:
    """Return ``(width, height)`` of a ``data:`` URL's PNG, JPEG, GIF or WebP image.

    Returns None for any other URL (nothing is fetched) and for a payload whose
    header is missing or invalid.
    """
    if url[:5].lower() != "data:" or "," not in url:
        return None
    meta, _, data = url[5:].partition(",")
    is_base64 = meta.lower().endswith(";base64")
    size = _HEADER_BYTES
    while True:
        head = _decode_prefix(data, size, is_base64=is_base64)
        if head is None:
            return None
        complete = len(head) < size
        found = _dimensions(head, complete=complete)
        if found is not _NEED_MORE:
            return found if isinstance(found, tuple) else None
        if complete:
            return None
        size *= 4


class _NeedMore:
    """The header continues past the decoded prefix."""


_NEED_MORE = _NeedMore()


def _decode_prefix(data: str, size: int, *, is_base64: bool) -> bytes | None:
    """The first ``size`` bytes of the payload (fewer when it is shorter)."""
    if not is_base64:
        return urllib.parse.unquote_to_bytes(data[: size * 3])[:size]
    chars = (size + 2) // 3 * 4
    chunk = data[:chars]
    if not chunk.isascii() or any(c.isspace() for c in chunk):
        # Rare: line-wrapped base64; drop the whitespace, keep whole quanta.
        chunk = "".join(data.split())[:chars]
    try:
        return base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)[:size]
    except (binascii.Error, ValueError):
        return None


def _dimensions(head: bytes, *, complete: bool) -> tuple[int, int] | _NeedMore | None:
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", head[16:24])
        return _positive(width, height)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) < 10:
            return None
        width, height = struct.unpack("<HH", head[6:10])
        return _positive(width, height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg(head, complete=complete)
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return _positive(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _positive(width, height)
    return None


def _jpeg(head: bytes, *, complete: bool) -> tuple[int, int] | _NeedMore | None:
    offset = 2
    while offset < len(head):
        if head[offset] != 0xFF:
            return None
        # Fill bytes (0xFF) may pad before a marker.
        while offset < len(head) and head[offset] == 0xFF:
            offset += 1
        if offset >= len(head):
            break
        marker = head[offset]
        offset += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            return None  # end of image, or scan data, before any frame header
        if offset + 2 > len(head):
            break
        (length,) = struct.unpack(">H", head[offset : offset + 2])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if offset + 7 > len(head):
                break
            height, width = struct.unpack(">HH", head[offset + 3 : offset + 7])
            return _positive(width, height)
        offset += length
    return None if complete else _NEED_MORE


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None
