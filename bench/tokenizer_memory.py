"""Resident memory of exact o200k_base token counters, each in a fresh interpreter.

The gateway counts every request's tokens exactly, and the counter's vocabulary is
most of the gateway's memory (docs/performance.md). This measures what each exact
counter on the package registries adds: RSS after importing it, loading o200k_base
and counting one text, minus RSS before the import. Each counter runs in its own
subprocess of ``--python`` (an interpreter that has the packages: most are not
project dependencies, so install them into a throwaway virtual environment).

Counters: ``toktok`` (the gateway's), ``tiktoken`` (its vocabulary from the
bundled ``tests/data/o200k_base.tiktoken.gz``, nothing downloaded), ``kitoken``
(the same file), ``rs_bpe`` and ``bpe_openai`` (vocabularies in the package),
``tokie`` (which fetches its vocabulary at run time, so it fails offline and says
so), and ``python_compact``: the smallest exact counter we could write without
native code, to see what it would cost. It pre-tokenizes with o200k's pattern in
the ``regex`` package, keeps the ranks in a hash table of 2^19 slots probed by
CRC-32 over one blob of token bytes (about 4 MB), merges pieces as tiktoken does,
and remembers the count of each piece it has seen (up to 50,000). Every count is
checked against toktok's on the same text, and each counter's time per count is
the median over 20 variants of the text (each a new text, so no counter answers
from a cache of whole texts), after a first count that loads it.

Example::

    python -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install toktok-rs tiktoken kitoken rs-bpe regex
    /tmp/tokvenv/bin/pip install bpe-openai tokie
    python bench/tokenizer_memory.py --python /tmp/tokvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = ROOT / "tests" / "data" / "o200k_base.tiktoken.gz"
RESULT = ROOT / "bench" / "results" / "tokenizer_memory.json"
COUNTERS = (
    "toktok",
    "tiktoken",
    "kitoken",
    "rs_bpe",
    "bpe_openai",
    "tokie",
    "python_compact",
)

# Runs in the child: prints one JSON line {rss_added_mb, tokens, count_us}.
_CHILD = r"""
import base64, gzip, json, os, statistics, sys, tempfile, time, zlib

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

which, vocabulary, text = sys.argv[1], sys.argv[2], sys.stdin.read()
start = rss_mb()
if which == "toktok":
    import toktok
    count = toktok._encoding("o200k_base").count
elif which == "tiktoken":
    import tiktoken
    from tiktoken_ext import openai_public
    from unittest import mock
    def load(*_args, **_kwargs):
        ranks = {}
        for line in gzip.open(vocabulary, "rt"):
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks
    with mock.patch.object(openai_public, "load_tiktoken_bpe", load):
        encoding = tiktoken.Encoding(**openai_public.o200k_base())
    count = lambda t: len(encoding.encode_ordinary(t))
elif which == "kitoken":
    from kitoken import Kitoken
    with tempfile.NamedTemporaryFile(suffix=".tiktoken", delete=False) as out:
        out.write(gzip.open(vocabulary).read())
    encoder = Kitoken.from_file(out.name)
    os.unlink(out.name)
    count = lambda t: len(encoder.encode(t, False))
elif which == "rs_bpe":
    from rs_bpe import openai
    count = openai.o200k_base().count
elif which == "bpe_openai":
    import bpe_openai
    encoding = bpe_openai.get_encoding("o200k_base")
    count = lambda t: len(encoding.encode_ordinary(t))
elif which == "tokie":
    import tokie
    tokenizer = tokie.Tokenizer.from_pretrained("o200k_base")
    count = lambda t: len(tokenizer.encode(t))
elif which == "python_compact":
    from array import array
    import regex
    pattern = regex.compile("|".join([
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]))
    lines = gzip.open(vocabulary).read().split(b"\n")[:-1]
    offsets = array("I", bytes(4 * (len(lines) + 1)))
    blob = bytearray()
    for rank, line in enumerate(lines):
        blob += base64.b64decode(line[: line.index(b" ")])
        offsets[rank + 1] = len(blob)
    blob, lines, mask, none = bytes(blob), None, (1 << 19) - 1, 1 << 30
    slots = array("I", bytes(4 << 19))
    for rank in range(len(offsets) - 1):
        i = zlib.crc32(blob[offsets[rank]:offsets[rank + 1]]) & mask
        while slots[i]:
            i = (i + 1) & mask
        slots[i] = rank + 1
    def rank_of(token):
        i = zlib.crc32(token) & mask
        while slots[i]:
            rank = slots[i] - 1
            if blob[offsets[rank]:offsets[rank + 1]] == token:
                return rank
            i = (i + 1) & mask
        return none
    def piece_tokens(piece):  # tiktoken's merge loop, lowest rank first
        starts = list(range(len(piece) + 1))
        ranks = [rank_of(piece[i:i + 2]) for i in range(len(piece) - 1)] + [none, none]
        while (lowest := min(ranks)) != none:
            i = ranks.index(lowest)
            if i > 0:
                end = starts[i + 2] if i + 2 < len(starts) else None
                ranks[i - 1] = rank_of(piece[starts[i - 1]:end]) if end else none
            end = starts[i + 3] if i + 3 < len(starts) else None
            ranks[i] = rank_of(piece[starts[i]:end]) if end else none
            del starts[i + 1], ranks[i + 1]
        return len(starts) - 1
    seen = {}
    def piece_count(piece):
        if len(seen) >= 50_000:
            seen.clear()
        raw = piece.encode()
        seen[piece] = 1 if rank_of(raw) != none else piece_tokens(raw)
        return seen[piece]
    def count(t):
        pieces = pattern.findall(t)
        known = list(map(seen.get, pieces))
        return sum(n if n is not None else piece_count(p)
                   for n, p in zip(known, pieces))
tokens = count(text)
variants = [f"{text} {i}" for i in range(20)]
times = []
for variant in variants:
    began = time.perf_counter()
    count(variant)
    times.append(time.perf_counter() - began)
print(json.dumps({
    "rss_added_mb": round(rss_mb() - start, 1),
    "tokens": tokens,
    "count_us": round(statistics.median(times) * 1e6, 1),
    "characters": len(text),
}))
"""


def measure(python: str, which: str, text: str) -> dict[str, object]:
    """One counter's added RSS and count, or why it could not run."""
    done = subprocess.run(
        [python, "-c", _CHILD, which, str(VOCABULARY)],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["failed"]
        return {"error": last[0][:200]}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Measure every counter, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    text = (ROOT / "docs" / "performance.md").read_text("utf-8")[:20000]
    text += " Привет мир 你好世界 é 🧠 " * 20
    results = {which: measure(args.python, which, text) for which in COUNTERS}
    reference = results["toktok"].get("tokens")
    for which, result in results.items():
        if "tokens" in result:
            result["agrees_with_toktok"] = result["tokens"] == reference
        print(which, result, flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
