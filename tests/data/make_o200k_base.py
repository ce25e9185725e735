"""Regenerate ``o200k_base.tiktoken.gz``, the bundled reference vocabulary.

The file is tiktoken's ``o200k_base.tiktoken`` (one ``base64(token_bytes) rank`` line
per mergeable token), rebuilt from the vocabulary compiled into ``toktok`` so that no
download is needed. It is written only if its SHA-256 equals the hash OpenAI
publishes for o200k_base (the ``expected_hash`` in ``tiktoken_ext.openai_public``).

Run from the repository root: ``python tests/data/make_o200k_base.py``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import sys
from pathlib import Path

import toktok

O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# Ranks 0..199997 are the mergeable tokens; 199999 and up are special tokens.
MERGEABLE_RANKS = 199_998
OUTPUT = Path(__file__).with_name("o200k_base.tiktoken.gz")


def o200k_base_tiktoken() -> bytes:
    """The uncompressed ``o200k_base.tiktoken`` contents."""
    encoding = toktok._encoding("o200k_base")
    lines = [
        base64.b64encode(encoding.decode_single_token_bytes(rank))
        + b" "
        + str(rank).encode()
        for rank in range(MERGEABLE_RANKS)
    ]
    return b"\n".join(lines) + b"\n"


def main() -> int:
    """Write the gzip file if the vocabulary matches the published hash."""
    contents = o200k_base_tiktoken()
    digest = hashlib.sha256(contents).hexdigest()
    if digest != O200K_BASE_SHA256:
        print(f"sha256 {digest} is not the published {O200K_BASE_SHA256}")
        return 1
    # mtime=0 and no file name in the header: the same input gives the same bytes.
    OUTPUT.write_bytes(gzip.compress(contents, compresslevel=9, mtime=0))
    print(f"wrote {OUTPUT} (sha256 of contents {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
