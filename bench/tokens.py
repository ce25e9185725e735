"""Time exact o200k_base counting on pathological input.

Each input is 100,000 repeated characters (or the same length of a repeated short
pattern): the cases where a naive BPE goes quadratic. ``count_tokens`` is timed
several times per input after one warm-up call that loads the vocabulary, and the
median is reported.

Run from the repository root: ``python bench/tokens.py [--runs N]``. Prints a table
and writes ``bench/results/tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import toktok

from services.core.tokens import ENCODING, count_tokens

LENGTH = 100_000
INPUTS: dict[str, str] = {
    "letter": "a" * LENGTH,
    "space": " " * LENGTH,
    "newline": "\n" * LENGTH,
    "tab": "\t" * LENGTH,
    "digit": "7" * LENGTH,
    "punctuation": "." * LENGTH,
    "emoji": "😀" * LENGTH,
    "cjk": "中" * LENGTH,
    "combining_mark": "e" + "\u0301" * (LENGTH - 1),
    "two_letters": "ab" * (LENGTH // 2),
    "word_and_space": "a " * (LENGTH // 2),
    "zwj_family": "👨‍👩‍👧" * (LENGTH // 5),
}
RESULTS = Path(__file__).parent / "results" / "tokens.json"


@dataclass(frozen=True, slots=True)
class InputTiming:
    """How long counting one input took, over several runs."""

    input: str
    characters: int
    utf8_bytes: int
    tokens: int
    median_ms: float
    min_ms: float
    max_ms: float


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _time_once(text: str) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = count_tokens(text)
    return tokens, time.perf_counter() - started


def time_input(name: str, text: str, runs: int) -> InputTiming:
    """Count ``text`` ``runs`` times and summarise the timings."""
    counts, timings = zip(*(_time_once(text) for _ in range(runs)), strict=True)
    assert len(set(counts)) == 1, "the count changed between runs"
    return InputTiming(
        input=name,
        characters=len(text),
        utf8_bytes=len(text.encode()),
        tokens=counts[0],
        median_ms=_milliseconds(statistics.median(timings)),
        min_ms=_milliseconds(min(timings)),
        max_ms=_milliseconds(max(timings)),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and write the JSON result."""
    parser = argparse.ArgumentParser(description="Time count_tokens on 100k inputs.")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per input")
    args = parser.parse_args(argv)

    _, first_call_seconds = _time_once("warm-up: loads the vocabulary")
    timings = [time_input(name, text, args.runs) for name, text in INPUTS.items()]

    print(f"first call (loads the vocabulary): {_milliseconds(first_call_seconds)} ms")
    print(f"{'input':<16}{'chars':>8}{'tokens':>9}{'median ms':>11}{'max ms':>9}")
    for timing in timings:
        print(
            f"{timing.input:<16}{timing.characters:>8}{timing.tokens:>9}"
            f"{timing.median_ms:>11}{timing.max_ms:>9}"
        )
    report = {
        "benchmark": "services.core.tokens.count_tokens",
        "encoding": ENCODING,
        "toktok_version": toktok.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "runs_per_input": args.runs,
        "first_call_ms": _milliseconds(first_call_seconds),
        "results": [asdict(timing) for timing in timings],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
