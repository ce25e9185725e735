"""What the benchmark scripts share to start local processes: ports and environment.

Imported by ``bench/peers.py``, ``bench/profile_hot_path.py`` and
``bench/memory.py``. Each runs as ``python bench/<script>.py``, which puts this
directory first on ``sys.path``; ``bench/memory.py`` runs itself again as a child
with another source tree on ``PYTHONPATH``, and still finds this module beside it
first. Standard library only, imported at start: the memory child must import
nothing of the measured tree before it means to.
"""

from __future__ import annotations

import os
import socket

# Settings a benchmark never inherits from the shell: its processes get only
# what the script gives them.
ALWAYS_CLEARED = ("TOLLGATE_", "OPENAI_")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports_apart(names: list[str], *, above_each: int) -> dict[str, int]:
    """A free port per name, each with ``above_each`` free ports above it too.

    A server with ``--workers N`` serves worker i's metrics on its port plus i: the
    ports above it must belong to nobody else.
    """
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name in names:
        while True:
            port = free_port()
            block = set(range(port, port + above_each + 1))
            if block & taken or not all(_free(p) for p in block):
                continue
            chosen[name] = port
            taken |= block
            break
    return chosen


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def clean_env(*also: str) -> dict[str, str]:
    """This environment without Tollgate or OpenAI settings, nor those in ``also``.

    Args:
        also: more name prefixes to drop (a script's own, e.g. ``"LITELLM_"``).
    """
    prefixes = (*ALWAYS_CLEARED, *also)
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
