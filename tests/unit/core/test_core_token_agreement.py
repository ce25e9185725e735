"""The gateway's input-token count agrees with the simulator's and with tiktoken.

``bench/token_agreement.py`` counts nine requests three ways (conversation, tool
calls and results, tools, a strict schema, images of known and unknown size) and
exits non-zero when any case disagrees; this runs it, so the suite fails the day the
gateway's rule, the simulator's or the documented overheads drift apart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_gateway_simulator_and_tiktoken_agree_on_every_case() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "token_agreement.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 of 9 cases agree exactly" in result.stdout
