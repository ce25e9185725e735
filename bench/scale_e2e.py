"""The figures of the scaled topology's end-to-end tests, as a results page.

Runs ``tests/e2e/test_scale_e2e.py`` (the topology of ``tollgate dev --scale`` on
free ports, a private redis-server and a fresh Postgres database) with
``SCALE_E2E_FIGURES`` set, so the figures written are those the tests asserted
on, then writes ``bench/results/scale_e2e.json`` and ``bench/results/scale_e2e.md``.
Needs ``redis-server`` and a local Postgres (as ``make test`` does). Run from the
repository root: ``python bench/scale_e2e.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TEST = "tests/e2e/test_scale_e2e.py"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _limit(limit: dict[str, Any]) -> list[str]:
    return [
        f"{limit['requests']} requests of one user, alternating between the "
        f"gateways, one at a time, against a limit of {limit['capacity']} requests "
        f"a minute (capacity {limit['capacity']}, refill "
        f"{limit['refill_per_second']:g} a second) over {limit['seconds']:g} s.",
        "",
        "| admitted | per gateway | allowed (capacity + refill in the run) |",
        "|---|---|---|",
        f"| {limit['admitted']} | {' + '.join(map(str, limit['admitted_per_gateway']))}"
        f" | {limit['allowed_least']}..{limit['allowed_most']} |",
    ]


def _budget(budget: dict[str, Any]) -> list[str]:
    checks = budget["check_budget_calls_per_replica"]
    return [
        f"{budget['concurrent']} requests of one user at once, through both "
        f"gateways, against a hard daily budget of {budget['limit_micros']:,} "
        "micro-dollars.",
        "",
        "| admitted | refused | booked | spent (micros) | overshoot (micros) | "
        "CheckBudget calls per replica |",
        "|---|---|---|---|---|---|",
        f"| {budget['admitted']} | {budget['refused']} | {budget['booked']} | "
        f"{budget['spent_micros']:,} | {budget['overshoot_micros']:,} | "
        f"{', '.join(f'{k}: {v}' for k, v in checks.items())} |",
    ]


def _kill(kill: dict[str, Any]) -> list[str]:
    failed = ", ".join(f"{n} {code}" for code, n in kill["failures"].items())
    return [
        f"{kill['requests']} unique requests over 8 s, alternating between the "
        "gateways; costs-2 killed at 2 s and gateway-2 at 4 s, both restarted by "
        "`tollgate dev`'s supervisor; then every outbox drained. The ledger is read "
        "straight from Postgres.",
        "",
        "| replies | failed | replies booked | missing | booked at another cost | "
        "booked without a reply | booked twice | records outboxed |",
        "|---|---|---|---|---|---|---|---|",
        f"| {kill['replies']} | {failed or 0} | {kill['replies_booked']} | "
        f"{kill['replies_missing_from_ledger']} | "
        f"{kill['replies_booked_at_another_cost']} | {kill['booked_without_reply']} | "
        f"{kill['booked_twice']} | {kill['outboxed_while_a_costs_replica_died']} |",
        "",
        "What the supervisor said:",
        "",
        *(f"    {line.split(' (see ')[0]}" for line in kill["supervisor"]),
    ]


def _batch(batch: dict[str, Any]) -> list[str]:
    return [
        f"Submitted through {batch['submitted_through']}; fetched, its "
        f"{batch['results_listed']} results listed, and a second one cancelled "
        f"(answer {batch['cancel_answer']}) through "
        f"{batch['fetched_listed_cancelled_through']}."
    ]


SECTIONS = (
    ("request_limit", "A user's request limit across both gateways", _limit),
    ("hard_budget", "A hard budget across both costs replicas", _budget),
    ("kill_9", "kill -9 of a costs replica and a gateway under load", _kill),
    ("batch_across_gateways", "A batch across gateways", _batch),
)


def render(figures: dict[str, Any], meta: dict[str, Any]) -> str:
    """The results page of one run."""
    lines = [
        "# The scaled topology, end to end",
        "",
        f"`python bench/scale_e2e.py` on {meta['date']}, commit {meta['commit']}, "
        f"{meta['machine']}: the figures `{TEST}` asserted on, in one run of "
        "`tollgate dev --scale`'s topology (two gateways, two ratelimit and two "
        "costs replicas, one router, one cache; mutual TLS; a private redis-server; "
        "a fresh Postgres schema). Each gateway reaches both replicas of ratelimit "
        "and costs through gRPC's round robin.",
    ]
    for key, title, section in SECTIONS:
        lines += ["", f"## {title}", ""]
        lines += section(figures[key]) if key in figures else ["Not recorded."]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the tests, then write the results page and its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--name", default="scale_e2e", help="results file stem in bench/results"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures_file = Path(scratch) / "figures.json"
        env = {**os.environ, "SCALE_E2E_FIGURES": str(figures_file)}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
            cwd=ROOT,
            env={**env, "TOLLGATE_REQUIRE_INTEGRATION": "1"},
            check=False,
        )
        if not figures_file.exists():
            sys.exit(f"the tests wrote no figures (pytest exit {run.returncode})")
        figures = json.loads(figures_file.read_text(encoding="utf-8"))
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "machine": f"{os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}",
        "tests_passed": run.returncode == 0,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"meta": meta, "figures": figures}, indent=2) + "\n",
        encoding="utf-8",
    )
    page = render(figures, meta)
    if run.returncode != 0:
        page += "\n**The tests failed in this run**; see their output.\n"
    (RESULTS / f"{args.name}.md").write_text(page, encoding="utf-8")
    print(page)
    print(f"wrote bench/results/{args.name}.json and .md")
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
