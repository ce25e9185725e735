"""Optimize a copy of a Qdrant Edge shard in a child process.

``python -m services.cache.adapters.edge_optimize PATH``.

Run by :class:`~services.cache.adapters.qdrant_edge.QdrantEdgeIndex` in a child
process, because ``EdgeShard.optimize`` holds the GIL for its whole run. Niced, so
that the serving process keeps the CPU it needs; the shard's configuration limits
the HNSW build to one thread.
"""

from __future__ import annotations

import os
import sys

from qdrant_edge import EdgeShard


def main(argv: list[str]) -> int:
    """Open the shard at ``argv[0]``, optimize it, flush and close it."""
    if len(argv) != 1:
        print("usage: python -m services.cache.adapters.edge_optimize PATH")
        return 2
    os.nice(10)
    shard = EdgeShard.load(argv[0])
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
