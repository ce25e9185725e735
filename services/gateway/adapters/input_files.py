"""Input files of the HTTP door (POST /v1/files) in a local directory.

The embedded default, beside the SQLite batch store: ``<file_id>.jsonl`` holds a
file's bytes and ``<file_id>.json`` its metadata, written last, so a file is
visible only once complete. With a Postgres batch store the files live in the
database instead (:class:`~services.gateway.adapters.batch_store_sql.SqlBatchStore`),
so that every gateway replica reads what any other received.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from pathlib import Path
from typing import Any

_READ_BYTES = 1024 * 1024


class DirectoryInputFiles:
    """An :class:`~services.gateway.http.batches.InputFiles` in one directory."""

    def __init__(self, directory: Path) -> None:
        """Keep files under ``directory`` (created on the first upload)."""
        self._dir = directory

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        return self._dir / f"{file_id}.jsonl", self._dir / f"{file_id}.json"

    async def put_content(self, file_id: str, chunks: AsyncIterable[bytes]) -> int:
        """Write a file's bytes as they arrive; returns how many.

        Should ``chunks`` raise, the partial file is deleted and the error goes on.
        """
        data_path, _ = self._paths(file_id)
        self._dir.mkdir(parents=True, exist_ok=True)
        size = 0
        try:
            with data_path.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            data_path.unlink(missing_ok=True)
            raise
        return size

    async def put_meta(self, meta: Mapping[str, Any]) -> None:
        """Make a written file visible, with its metadata (``meta["id"]``)."""
        _, meta_path = self._paths(str(meta["id"]))
        meta_path.write_text(json.dumps(dict(meta)), encoding="utf-8")

    async def file_meta(self, file_id: str) -> dict[str, Any] | None:
        """A visible file's metadata, or None."""
        _, meta_path = self._paths(file_id)
        try:
            meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta

    async def file_content(self, file_id: str) -> AsyncGenerator[bytes, None]:
        """A file's bytes, a piece at a time; nothing for an unknown file."""
        data_path, _ = self._paths(file_id)
        try:
            source = data_path.open("rb")
        except FileNotFoundError:
            return
        with source:
            while piece := source.read(_READ_BYTES):
                yield piece

    async def delete_file(self, file_id: str) -> None:
        """Forget a file, its metadata and its bytes."""
        for path in self._paths(file_id):
            path.unlink(missing_ok=True)
