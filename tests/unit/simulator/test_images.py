"""Image sizes from data URLs and OpenAI's tile formula (services.core.images)."""

from __future__ import annotations

import struct

import pytest

from services.core.images import (
    UNKNOWN_IMAGE_TOKENS,
    image_dimensions,
    image_tokens,
    image_url_tokens,
)
from tests.images import data_url, png


def _jpeg(width: int, height: int, *, padding: int = 0) -> bytes:
    app0 = (
        b"\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    # A large APP1 (EXIF-like) segment pushes the frame header past the first KBs.
    app1 = b"\xff\xe1" + struct.pack(">H", padding + 2) + b"\x00" * padding
    sof = (
        b"\xff\xc0"
        + struct.pack(">HBHHB", 17, 8, height, width, 3)
        + b"\x01\x22\x00" * 3
    )
    return b"\xff\xd8" + app0 + (app1 if padding else b"") + sof + b"\xff\xd9"


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (512, 512, "high", 255),
        (1024, 1024, "high", 765),
        (1024, 1024, "auto", 765),
        (2048, 4096, "high", 1105),
        (4096, 2048, "auto", 1105),
        (4096, 8192, "high", 1105),
        (100, 100, "high", 255),
        (1500, 300, "high", 595),
        (768, 1536, "high", 1105),
        (4096, 4096, "low", 85),
        (10, 10, "low", 85),
    ],
)
def test_tile_formula(width: int, height: int, detail: str, tokens: int) -> None:
    assert image_tokens(width, height, detail) == tokens


def test_unknown_size_counts_as_1024_square() -> None:
    assert UNKNOWN_IMAGE_TOKENS == image_tokens(1024, 1024, "high") == 765
    assert image_tokens(None, None, "auto") == UNKNOWN_IMAGE_TOKENS
    assert image_tokens(None, None, "low") == 85
    assert image_url_tokens("https://example.com/cat.png") == UNKNOWN_IMAGE_TOKENS
    assert image_url_tokens("https://example.com/cat.png", "low") == 85


def test_real_png_in_a_data_url() -> None:
    image = png(1500, 300)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    url = data_url(image)
    assert image_dimensions(url) == (1500, 300)
    assert image_url_tokens(url, "high") == 595
    assert image_url_tokens(url, "low") == 85


def test_only_the_header_is_decoded() -> None:
    # A payload whose tail (past the first KBs) is not base64 still has a size.
    url = data_url(png(640, 480) + b"\x01" * 10_000) + "!!!not base64!!!" * 10_000
    assert image_dimensions(url) == (640, 480)


@pytest.mark.parametrize(
    ("data", "media_type", "size"),
    [
        (
            b"GIF89a" + struct.pack("<HH", 320, 200) + b"\x00" * 20,
            "image/gif",
            (320, 200),
        ),
        (b"GIF87a" + struct.pack("<HH", 1, 65535), "image/gif", (1, 65535)),
        (_jpeg(800, 600), "image/jpeg", (800, 600)),
        (_jpeg(3000, 2000, padding=20_000), "image/jpeg", (3000, 2000)),
        (
            b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
            + (1919).to_bytes(3, "little")
            + (1079).to_bytes(3, "little"),
            "image/webp",
            (1920, 1080),
        ),
        (
            b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f"
            + ((400 - 1) | ((300 - 1) << 14)).to_bytes(4, "little"),
            "image/webp",
            (400, 300),
        ),
        (
            b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00\x00\x00\x00\x9d\x01\x2a"
            + struct.pack("<HH", 640, 360),
            "image/webp",
            (640, 360),
        ),
    ],
)
def test_other_formats(data: bytes, media_type: str, size: tuple[int, int]) -> None:
    assert image_dimensions(data_url(data, media_type)) == size


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "data:image/png;base64,",
        "data:image/png;base64,@@@@",
        "data:image/png;base64,iVBORw0KGgo",  # the signature, then nothing
        data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30),  # no IHDR
        data_url(png(1, 1)[:20]),
        data_url(b"plain text, not an image"),
        data_url(b"\xff\xd8\xff\xd9"),  # a JPEG that ends before any frame
        data_url(b"GIF89a" + struct.pack("<HH", 0, 10)),
        "data:image/png,no-comma-payload",
        "data:",
    ],
)
def test_invalid_or_unknown_is_none(url: str) -> None:
    assert image_dimensions(url) is None
    assert image_url_tokens(url) == UNKNOWN_IMAGE_TOKENS
