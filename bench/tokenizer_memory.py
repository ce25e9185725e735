"""Resident memory of exact o200k_base token counters, each in a fresh interpreter.

The gateway counts every request's tokens exactly, and the counter's vocabulary is
most of the gateway's memory (docs/performance.md). This measures what each exact
counter on the package registries adds: RSS after importing it, loading o200k_base
and counting one text, minus RSS before the import. Each counter runs in its own
subprocess of ``--python`` (an interpreter that has the packages: most are not
project dependencies, so install them into a throwaway virtual environment).

Counters: ``toktok`` (the gateway's), ``tiktoken`` (its vocabulary from the
bundled ``tests/data/o200k_base.tiktoken.gz``, nothing downloaded), ``kitoken``
(the same file), ``rs_bpe`` and ``bpe_openai`` (vocabularies in the package) and
``tokie`` (which fetches its vocabulary at run time, so it fails offline and says
so). Every count is checked against toktok's on the same text.

Example::

    python -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install toktok-rs tiktoken kitoken rs-bpe bpe-openai tokie
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
COUNTERS = ("toktok", "tiktoken", "kitoken", "rs_bpe", "bpe_openai", "tokie")

# Runs in the child: prints one JSON line {rss_added_mb, tokens}.
_CHILD = r"""
import base64, gzip, json, os, sys, tempfile

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
tokens = count(text)
print(json.dumps({"rss_added_mb": round(rss_mb() - start, 1), "tokens": tokens}))
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
