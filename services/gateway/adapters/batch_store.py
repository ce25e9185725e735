"""The async results store of the batch lane, in SQLite (WAL, synchronous FULL).

Two tables: ``batches`` (owner, status, upstream jobs with their file and batch
ids, polling schedule) and ``batch_items``, keyed by ``(batch_id, custom_id)``,
holding each item's request, the model it went to, its result text, usage, error
and booked cost. Every write commits before it returns, so a batch accepted, a job
created upstream or a result downloaded survives a crash, and a new process picks
the work up where the old one left it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from services.core.conversation import (
    FinishReason,
    Prompt,
    ToolCall,
    prompt_from_json,
    prompt_to_json,
)
from services.core.errors import BackendUnavailableError
from services.gateway.batches import (
    BatchCounts,
    BatchItemRequest,
    BatchRecord,
    BatchStatus,
    ItemError,
    ItemOutcome,
    ItemResult,
    PendingItem,
    UnbookedItem,
    UpstreamJob,
)
from services.gateway.domain import Principal, RequestType, Usage

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS batches (
        batch_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        status TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        jobs TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        next_poll_at REAL NOT NULL,
        poll_attempt INTEGER NOT NULL,
        settled INTEGER NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS batches_unsettled ON batches (settled, created_at)",
    """
    CREATE TABLE IF NOT EXISTS batch_items (
        batch_id TEXT NOT NULL,
        custom_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        request TEXT NOT NULL,
        requested_model TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending',
        output_text TEXT NOT NULL DEFAULT '',
        answer_model TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        booked INTEGER NOT NULL DEFAULT 0,
        cost_micros INTEGER NOT NULL DEFAULT 0,
        answer_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (batch_id, custom_id),
        UNIQUE (batch_id, position)
    )
    """,
)

# Columns added after the first release, for stores created before them.
_ADDED_COLUMNS = {
    "batch_items": (("answer_json", "TEXT NOT NULL DEFAULT '{}'"),),
}

_PENDING, _SUCCEEDED, _FAILED = "pending", "succeeded", "failed"

_T = TypeVar("_T")
Row = tuple[object, ...]


def _request_json(item: BatchItemRequest) -> str:
    data = {
        "custom_id": item.custom_id,
        "prompt": prompt_to_json(item.prompt),
        "model": item.model,
        "request_type": item.request_type.value,
        "max_output_tokens": item.max_output_tokens,
        "temperature": item.temperature,
        "top_p": item.top_p,
        "safety_identifier": item.safety_identifier,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _request(raw: str) -> BatchItemRequest:
    data = json.loads(raw)
    if "prompt" in data:
        prompt = prompt_from_json(data["prompt"])
    else:  # stored before conversations: one input and instructions
        prompt = Prompt.of_text(data["input"], data.get("instructions", ""))
    return BatchItemRequest(
        custom_id=data["custom_id"],
        prompt=prompt,
        model=data["model"],
        request_type=RequestType(data["request_type"]),
        max_output_tokens=data["max_output_tokens"],
        temperature=data["temperature"],
        top_p=data.get("top_p"),
        safety_identifier=data.get("safety_identifier", ""),
    )


def _answer_json(outcome: ItemOutcome) -> str:
    return json.dumps(
        {
            "tool_calls": [
                [call.id, call.name, call.arguments] for call in outcome.tool_calls
            ],
            "finish_reason": (
                None if outcome.finish_reason is None else outcome.finish_reason.value
            ),
            "reasoning_tokens": outcome.usage.reasoning_tokens,
        },
        ensure_ascii=False,
    )


def _answer(raw: object) -> tuple[tuple[ToolCall, ...], FinishReason | None, int]:
    data = json.loads(str(raw or "{}"))
    finish = data.get("finish_reason")
    return (
        tuple(ToolCall(*call) for call in data.get("tool_calls", ())),
        None if finish is None else FinishReason(finish),
        int(data.get("reasoning_tokens", 0)),
    )


def _record(row: Row) -> BatchRecord:
    (
        batch_id,
        principal,
        status,
        metadata,
        created_at,
        finished_at,
        jobs,
        cancel_requested,
        next_poll_at,
        poll_attempt,
        settled,
    ) = row
    return BatchRecord(
        batch_id=str(batch_id),
        principal=Principal.from_json(json.loads(str(principal))),
        status=BatchStatus(status),
        metadata=json.loads(str(metadata)),
        created_at=float(str(created_at)),
        finished_at=None if finished_at is None else float(str(finished_at)),
        jobs=[UpstreamJob(**job) for job in json.loads(str(jobs))],
        cancel_requested=bool(cancel_requested),
        next_poll_at=float(str(next_poll_at)),
        poll_attempt=int(str(poll_attempt)),
        settled=bool(settled),
    )


_RECORD_COLUMNS = (
    "batch_id, principal, status, metadata, created_at, finished_at, jobs, "
    "cancel_requested, next_poll_at, poll_attempt, settled"
)


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


class SqliteBatchStore:
    """A :class:`~services.gateway.batches.BatchStore` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the store at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        for table, columns in _ADDED_COLUMNS.items():
            present = {
                row[1] for row in self._db.execute(f"PRAGMA table_info({table})")
            }
            for name, definition in columns:
                if name not in present:
                    self._db.execute(
                        f"ALTER TABLE {table} ADD COLUMN {name} {definition}"
                    )
        self._db.commit()

    def _transact(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                result = work(self._db)
                self._db.commit()
            except sqlite3.Error as error:
                self._db.rollback()
                raise BackendUnavailableError(f"batch store: {error}") from error
        return result

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._transact, work)

    async def _rows(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def create(
        self, record: BatchRecord, items: Sequence[BatchItemRequest]
    ) -> None:
        """Persist a new batch with its items, in one transaction."""
        rows = [
            (
                record.batch_id,
                item.custom_id,
                position,
                _request_json(item),
                item.model if item.model not in ("", "auto") else "",
            )
            for position, item in enumerate(items, start=1)
        ]

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO batches (tenant_id, {_RECORD_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.principal.tenant_id, *self._record_values(record)),
            )
            db.executemany(
                "INSERT INTO batch_items "
                "(batch_id, custom_id, position, request, requested_model) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        await self._run(work)

    @staticmethod
    def _record_values(record: BatchRecord) -> tuple[object, ...]:
        return (
            record.batch_id,
            json.dumps(asdict(record.principal), sort_keys=True),
            record.status.value,
            json.dumps(record.metadata, sort_keys=True),
            record.created_at,
            record.finished_at,
            json.dumps([asdict(job) for job in record.jobs]),
            int(record.cancel_requested),
            record.next_poll_at,
            record.poll_attempt,
            int(record.settled),
        )

    async def get(self, batch_id: str) -> BatchRecord | None:
        """The batch, or None."""
        rows = await self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
        )
        return _record(rows[0]) if rows else None

    async def save(self, record: BatchRecord) -> None:
        """Persist a batch's mutable state."""
        await self._rows(
            "UPDATE batches SET status = ?, finished_at = ?, jobs = ?, "
            "cancel_requested = ?, next_poll_at = ?, poll_attempt = ?, settled = ? "
            "WHERE batch_id = ?",
            (
                record.status.value,
                record.finished_at,
                json.dumps([asdict(job) for job in record.jobs]),
                int(record.cancel_requested),
                record.next_poll_at,
                record.poll_attempt,
                int(record.settled),
                record.batch_id,
            ),
        )

    async def unsettled(self, due_by: float | None = None) -> list[BatchRecord]:
        """Every batch the loop still has work for (due by ``due_by``), oldest first."""
        due = float("inf") if due_by is None else due_by
        rows = await self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM batches "
            "WHERE settled = 0 AND next_poll_at <= ? ORDER BY created_at",
            (due,),
        )
        return [_record(row) for row in rows]

    async def counts(self, batch_id: str) -> BatchCounts:
        """Items by state and the cost booked so far."""
        rows = await self._rows(
            "SELECT COUNT(*), SUM(state = ?), SUM(state = ?), SUM(cost_micros) "
            "FROM batch_items WHERE batch_id = ?",
            (_SUCCEEDED, _FAILED, batch_id),
        )
        total, completed, failed, cost = rows[0]
        return BatchCounts(_int(total), _int(completed), _int(failed), _int(cost))

    async def pending(self, batch_id: str) -> list[PendingItem]:
        """The items without a result, in submission order."""
        rows = await self._rows(
            "SELECT request, model FROM batch_items WHERE batch_id = ? AND state = ? "
            "ORDER BY position",
            (batch_id, _PENDING),
        )
        return [PendingItem(_request(str(raw)), str(model)) for raw, model in rows]

    async def set_models(self, batch_id: str, models: Mapping[str, str]) -> None:
        """Record the model each item is sent to."""
        params = [(model, batch_id, custom_id) for custom_id, model in models.items()]
        await self._run(
            lambda db: db.executemany(
                "UPDATE batch_items SET model = ? WHERE batch_id = ? AND custom_id = ?",
                params,
            )
        )

    async def record_outcomes(
        self, batch_id: str, outcomes: Sequence[ItemOutcome]
    ) -> int:
        """Store results of items still pending; a second download changes nothing."""
        params = [
            (
                _FAILED if outcome.error else _SUCCEEDED,
                outcome.output_text,
                outcome.model,
                outcome.usage.input_tokens,
                outcome.usage.cached_input_tokens,
                outcome.usage.output_tokens,
                outcome.error.code if outcome.error else None,
                outcome.error.message if outcome.error else None,
                _answer_json(outcome),
                batch_id,
                outcome.custom_id,
                _PENDING,
            )
            for outcome in outcomes
        ]

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "UPDATE batch_items SET state = ?, output_text = ?, answer_model = ?, "
                "input_tokens = ?, cached_input_tokens = ?, output_tokens = ?, "
                "error_code = ?, error_message = ?, answer_json = ? "
                "WHERE batch_id = ? AND custom_id = ? AND state = ?",
                params,
            )
            return db.total_changes - before

        return await self._run(work)

    async def fail_pending(
        self,
        batch_id: str,
        error: ItemError,
        *,
        models: Collection[str] | None = None,
        keep_models: Collection[str] = (),
    ) -> int:
        """Fail pending items sent to ``models`` (None: any) but not ``keep_models``."""
        sql = (
            "UPDATE batch_items SET state = ?, error_code = ?, error_message = ? "
            "WHERE batch_id = ? AND state = ?"
        )
        params: list[object] = [_FAILED, error.code, error.message, batch_id, _PENDING]
        if models is not None:
            sql += f" AND model IN ({', '.join('?' * len(models)) or 'NULL'})"
            params.extend(models)
        if keep_models:
            sql += f" AND model NOT IN ({', '.join('?' * len(keep_models))})"
            params.extend(keep_models)
        return await self._run(lambda db: db.execute(sql, tuple(params)).rowcount)

    async def unbooked(self, batch_id: str, limit: int) -> list[UnbookedItem]:
        """Answered items not booked yet, in submission order."""
        rows = await self._rows(
            "SELECT custom_id, requested_model, answer_model, model, input_tokens, "
            "cached_input_tokens, output_tokens, answer_json FROM batch_items "
            "WHERE batch_id = ? AND state = ? AND booked = 0 ORDER BY position LIMIT ?",
            (batch_id, _SUCCEEDED, limit),
        )
        return [
            UnbookedItem(
                custom_id=str(row[0]),
                requested_model=str(row[1]),
                model=str(row[2] or row[3]),
                usage=Usage(
                    _int(row[4]), _int(row[5]), _int(row[6]), _answer(row[7])[2]
                ),
            )
            for row in rows
        ]

    async def mark_booked(
        self, batch_id: str, custom_id: str, cost_micros: int
    ) -> None:
        """Remember an item's booked cost."""
        await self._rows(
            "UPDATE batch_items SET booked = 1, cost_micros = ? "
            "WHERE batch_id = ? AND custom_id = ?",
            (cost_micros, batch_id, custom_id),
        )

    async def results(
        self, batch_id: str, after: int, limit: int
    ) -> list[tuple[int, ItemResult]]:
        """Finished items after position ``after``, in submission order."""
        rows = await self._rows(
            "SELECT position, custom_id, output_text, answer_model, model, "
            "input_tokens, cached_input_tokens, output_tokens, cost_micros, "
            "error_code, error_message, answer_json FROM batch_items "
            "WHERE batch_id = ? AND state != ? AND position > ? "
            "ORDER BY position LIMIT ?",
            (batch_id, _PENDING, after, limit),
        )
        results: list[tuple[int, ItemResult]] = []
        for row in rows:
            (
                position,
                custom_id,
                text,
                answered,
                sent,
                tokens_in,
                cached,
                tokens_out,
                cost,
                code,
                message,
                answer,
            ) = row
            error = None if code is None else ItemError(str(code), str(message or ""))
            tool_calls, finish, reasoning = _answer(answer)
            results.append(
                (
                    _int(position),
                    ItemResult(
                        custom_id=str(custom_id),
                        output_text=str(text),
                        model=str(answered or sent),
                        usage=Usage(
                            _int(tokens_in), _int(cached), _int(tokens_out), reasoning
                        ),
                        cost_micros=_int(cost),
                        error=error,
                        tool_calls=tool_calls,
                        finish_reason=finish,
                    ),
                )
            )
        return results

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
