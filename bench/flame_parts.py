"""Where a thread's CPU goes, by part: framework, or which piece of Tollgate.

Reads py-spy collapsed stacks recorded per thread (``profile_hot_path.py --flame
DIR --raw``, which passes ``--threads``) and gives each sample to the innermost
frame that belongs to a known part: the frameworks (aiohttp, grpc, the event loop,
thread hand-offs) or a piece of Tollgate (each service, the RPC envelope, the
doors, the prompt count, the access line, metrics). A sample inside aiohttp called
from Tollgate's upstream client counts as aiohttp: the question is what the
frameworks cost and what Tollgate's own code costs.

With ``--thread-ms NAME=MS`` (a thread's CPU ms per request, as
``profile_hot_path.py`` prints it), each part's share of that thread is also
given in ms per request.

    python bench/flame_parts.py DIR/flame_all_after.txt --thread-ms MainThread=1.25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (part, pattern of a frame's "function (path:line)"), matched innermost first.
PARTS: tuple[tuple[str, str], ...] = (
    ("framework: aiohttp (server and client)", r"\(aiohttp/"),
    ("framework: grpc", r"\(grpc/"),
    ("framework: thread hand-offs", r"\((concurrent/futures/|threading\.py)"),
    ("logging: structlog (the access line)", r"\(structlog/"),
    ("metrics: prometheus_client", r"\(prometheus_client/"),
    ("Tollgate: costs service (budget check, ledger)", r"\(services/costs/"),
    ("Tollgate: ratelimit service", r"\(services/ratelimit/"),
    ("Tollgate: router service", r"\(services/router/"),
    ("Tollgate: cache service", r"\(services/cache/"),
    (
        "Tollgate: RPC envelope, in-process channel, clients",
        r"\(services/(core/server\.py|allinone\.py|gateway/clients\.py)",
    ),
    ("logging: the access line", r"\(services/core/(access_log|logging)\.py"),
    ("metrics: prometheus_client", r"\(services/core/metrics\.py"),
    (
        "Tollgate: prompt count (o200k)",
        r"\((services/core/(prompt_tokens|tokens)\.py|toktok/)",
    ),
    ("Tollgate: upstream client (its own code)", r"\(services/gateway/upstream\.py"),
    ("Tollgate: HTTP door (decode, encode)", r"\(services/gateway/http/"),
    ("Tollgate: gRPC door (decode, encode)", r"\(services/gateway/servicer\.py"),
    ("Tollgate: gateway pipeline", r"\(services/"),
    ("stdlib: json", r"\(json/"),
    ("stdlib: dataclasses (Tollgate's objects)", r"\((dataclasses\.py|<string>)"),
    ("framework: event loop (uvloop, asyncio)", r"\((asyncio/|uvloop/)"),
)
_COMPILED = tuple((part, re.compile(pattern)) for part, pattern in PARTS)
OTHER = "other"
_THREAD = re.compile(r"^thread \(\d+\): (?P<name>.*)$")


def thread_group(name: str) -> str:
    """A thread's name without its pool index (``costs-sqlite-0_0``)."""
    return re.sub(r"(-\d+)?(_\d+)?$", "", name)


def part_of(frames: list[str]) -> str:
    """The part of the innermost frame that belongs to one."""
    for frame in reversed(frames):
        for part, pattern in _COMPILED:
            if pattern.search(frame):
                return part
    return OTHER


def parts_by_thread(path: Path) -> dict[str, Counter[str]]:
    """Samples per part, per thread group."""
    found: dict[str, Counter[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        match = _THREAD.match(frames[0])
        if match is None or not count.isdigit():
            continue
        group = thread_group(match["name"])
        found.setdefault(group, Counter())[part_of(frames[1:])] += int(count)
    return found


def table(found: dict[str, Counter[str]], thread_ms: dict[str, float]) -> list[str]:
    """A markdown table per thread group, largest part first."""
    lines: list[str] = []
    for group, parts in sorted(found.items(), key=lambda item: -item[1].total()):
        total = parts.total()
        ms = thread_ms.get(group)
        lines += [
            f"### {group} ({total:,} samples"
            + (f", {ms:g} ms of CPU per request)" if ms is not None else ")"),
            "",
            "| part | share | ms per request |" if ms else "| part | share |",
            "|---|---:|---:|" if ms else "|---|---:|",
        ]
        for part, n in parts.most_common():
            share = n / total
            cells = f"| {part} | {100 * share:.1f}% |"
            lines.append(cells + (f" {share * ms:.3f} |" if ms else ""))
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="py-spy raw output, --threads")
    parser.add_argument(
        "--thread-ms",
        action="append",
        default=[],
        metavar="NAME=MS",
        help="a thread group's CPU ms per request (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args()
    thread_ms = {
        name: float(ms) for name, ms in (item.split("=", 1) for item in args.thread_ms)
    }
    text = "\n".join(table(parts_by_thread(args.stacks), thread_ms))
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
