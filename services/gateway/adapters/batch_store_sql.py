"""The async results store of the batch lane in SQL, shared by SQLite and Postgres.

The batches are in ``batches`` (owner, status, upstream jobs with their file and batch
ids, polling schedule, the lease of the replica working on it) and
``batch_items``, keyed by ``(batch_id, custom_id)``, holding each item's request,
the model it went to, its result text, usage, error and booked cost. Maintenance
tickets are one-item batches in the same tables. ``input_files`` and
``input_file_chunks`` hold the files uploaded through the HTTP door until a batch
is made of them (the :class:`~services.gateway.http.batches.InputFiles` port), so
that any replica reads what another received. Every write commits before it
returns, so a batch accepted, a job created upstream or a result downloaded
survives a crash, and any process on the same database picks the work up where
another left it.

One schema, one set of statements and one implementation of every call, written
against the DB-API connection both ``sqlite3`` and ``psycopg`` (sync) provide; a
:class:`Dialect` holds the few differences (column types, how a write transaction
begins, placeholders, errors). Statements are written with ``?`` placeholders; the
Postgres dialect turns them into ``%s``. Each connection belongs to one worker
thread, so the event loop never blocks on the database.

Replicas sharing the store: the batch loop of every replica looks for due batches,
and works on one only after :meth:`SqlBatchStore.claim` leased it. The claim is one
conditional ``UPDATE`` (a lease that is free, expired, or already the caller's), so
of two replicas claiming together exactly one wins: Postgres re-checks the
condition on the row the other committed, SQLite serialises writers. ``save``
writes only under the caller's lease. A cancel from any replica
(:meth:`SqlBatchStore.request_cancel`) is a flag no ``save`` clears, so the lease
holder sees it on its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

import structlog

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

# Any: a DB-API connection, sqlite3.Connection or psycopg.Connection, whose
# libraries type execute() differently.
Connection = Any

_T = TypeVar("_T")
Row = tuple[object, ...]

_RETRY_AFTER_SECONDS = 1.0
_FILE_CHUNK_BYTES = 1024 * 1024

# The schema in SQLite's words (REAL is a double there, INTEGER 64-bit); the
# Postgres dialect renames the types. Created if missing, never dropped.
SCHEMA = (
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
        settled INTEGER NOT NULL,
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until REAL NOT NULL DEFAULT 0
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
    # Input files uploaded through the HTTP door (POST /v1/files) until a batch is
    # made of them: in pieces of about a MiB, visible once their metadata is in.
    """
    CREATE TABLE IF NOT EXISTS input_files (
        file_id TEXT PRIMARY KEY,
        meta TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS input_file_chunks (
        file_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (file_id, seq)
    )
    """,
)

# Columns added after the first release, for stores created before them.
ADDED_COLUMNS = {
    "batches": (
        ("lease_owner", "TEXT NOT NULL DEFAULT ''"),
        ("lease_until", "REAL NOT NULL DEFAULT 0"),
    ),
    "batch_items": (("answer_json", "TEXT NOT NULL DEFAULT '{}'"),),
}


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL backends.

    Attributes:
        name: the backend, for logs.
        begin_write: starts a transaction that serialises with other writers.
        types: column types renamed in the schema (SQLite's name to this one's).
        setup: run first in the schema transaction (a schema lock, a CREATE
            SCHEMA).
        errors: the library's exceptions that mean "the database failed".
        integrity_errors: those that mean "a unique key is taken".
        placeholder: the driver's parameter marker.
        columns: the column names of a table.
        text: makes a text value storable (Postgres' text cannot hold NUL).
        in_transaction: whether a connection has a transaction open.
        is_broken: whether a connection must be replaced before its next use.
    """

    name: str
    begin_write: str
    types: Mapping[str, str]
    setup: tuple[str, ...]
    errors: tuple[type[Exception], ...]
    integrity_errors: tuple[type[Exception], ...]
    placeholder: str
    columns: Callable[[Connection, str], set[str]]
    text: Callable[[str], str]
    in_transaction: Callable[[Connection], bool]
    is_broken: Callable[[Connection], bool]

    def sql(self, statement: str) -> str:
        """``statement`` with this driver's placeholders."""
        if self.placeholder == "?":
            return statement
        return statement.replace("?", self.placeholder)

    def ddl(self, statement: str) -> str:
        """``statement`` with this backend's column types."""
        for old, new in self.types.items():
            statement = re.sub(rf"\b{old}\b", new, statement)
        return statement


_PENDING, _SUCCEEDED, _FAILED = "pending", "succeeded", "failed"


def _literals(statuses: Collection[BatchStatus]) -> str:
    # Fixed enum values, never input: safe to inline.
    return ", ".join(f"'{status.value}'" for status in statuses)


_TERMINAL = _literals([s for s in BatchStatus if s.terminal])
# Statuses a requested cancel turns into CANCELLING.
_ACTIVE = _literals(
    [s for s in BatchStatus if not s.terminal and s is not BatchStatus.CANCELLING]
)

_RECORD_COLUMNS = (
    "batch_id, principal, status, metadata, created_at, finished_at, jobs, "
    "cancel_requested, next_poll_at, poll_attempt, settled"
)
_INSERT_BATCH = (
    f"INSERT INTO batches (tenant_id, {_RECORD_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ITEM = (
    "INSERT INTO batch_items (batch_id, custom_id, position, request, "
    "requested_model) VALUES (?, ?, ?, ?, ?)"
)
_SELECT_RECORD = f"SELECT {_RECORD_COLUMNS} FROM batches WHERE batch_id = ?"
# A writer that has not seen a requested cancel (its cancel_requested parameter 0
# while the row's is 1) neither hides it: an unfinished status it saves shows as
# cancelling, and the batch stays due when the cancel made it due.
_SAVE = (
    "UPDATE batches SET "
    f"status = CASE WHEN cancel_requested > ? AND ? IN ({_ACTIVE}) "
    f"THEN '{BatchStatus.CANCELLING.value}' ELSE ? END, "
    "finished_at = ?, jobs = ?, "
    "cancel_requested = CASE WHEN ? = 1 THEN 1 ELSE cancel_requested END, "
    "next_poll_at = CASE WHEN cancel_requested > ? AND next_poll_at < ? "
    "THEN next_poll_at ELSE ? END, "
    "poll_attempt = ?, settled = ? "
    "WHERE batch_id = ? AND lease_owner = ?"
)
_CLAIM = (
    "UPDATE batches SET lease_owner = ?, lease_until = ? "
    "WHERE batch_id = ? AND settled = 0 "
    "AND (lease_owner = ? OR lease_owner = '' OR lease_until <= ?)"
)
_RELEASE = (
    "UPDATE batches SET lease_owner = '', lease_until = 0 "
    "WHERE batch_id = ? AND lease_owner = ?"
)
_REQUEST_CANCEL = (
    f"UPDATE batches SET cancel_requested = 1, "
    f"status = '{BatchStatus.CANCELLING.value}', next_poll_at = ? "
    f"WHERE batch_id = ? AND cancel_requested = 0 AND status NOT IN ({_TERMINAL})"
)
_COUNTS = (
    "SELECT COUNT(*), SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), SUM(cost_micros) "
    "FROM batch_items WHERE batch_id = ?"
)
_RECORD_OUTCOME = (
    "UPDATE batch_items SET state = ?, output_text = ?, answer_model = ?, "
    "input_tokens = ?, cached_input_tokens = ?, output_tokens = ?, "
    "error_code = ?, error_message = ?, answer_json = ? "
    "WHERE batch_id = ? AND custom_id = ? AND state = ?"
)

_log = structlog.get_logger("tollgate.gateway.batch_store")


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


def _jobs_json(record: BatchRecord) -> str:
    return json.dumps([asdict(job) for job in record.jobs])


def _int(value: object) -> int:
    # SUM() of a BIGINT is a NUMERIC (Decimal) in Postgres, NULL over no rows.
    return int(str(value)) if value is not None else 0


@contextlib.contextmanager
def transaction(connection: Connection, dialect: Dialect) -> Iterator[None]:
    """One write transaction: committed at the end, rolled back on any error."""
    connection.execute(dialect.begin_write)
    try:
        yield
    except BaseException:
        # The database may have rolled back by itself (disk full, lost connection).
        if dialect.in_transaction(connection):
            with contextlib.suppress(*dialect.errors):
                connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _create_schema(connection: Connection, dialect: Dialect) -> None:
    with transaction(connection, dialect):
        for statement in dialect.setup:
            connection.execute(statement)
        for statement in SCHEMA:
            connection.execute(dialect.ddl(statement))
        for table, columns in ADDED_COLUMNS.items():
            present = dialect.columns(connection, table)
            for name, definition in columns:
                if name not in present:
                    connection.execute(
                        dialect.ddl(
                            f"ALTER TABLE {table} ADD COLUMN {name} {definition}"
                        )
                    )


class _Workers:
    """``size`` threads, each owning one connection, reconnecting when it breaks."""

    def __init__(
        self, dialect: Dialect, connect: Callable[[], Connection], size: int
    ) -> None:
        self._dialect = dialect
        self._connect = connect
        self.executor = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix=f"batch-store-{dialect.name}"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Connection] = []

    def call(self, work: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        # Any: each work function takes its own arguments after the connection.
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._dialect.is_broken(connection):
            self._forget(connection)
            connection = None
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return work(connection, self._dialect, *args)

    def _forget(self, connection: Connection) -> None:
        self._local.connection = None
        with self._lock:
            self._opened.remove(connection)
        with contextlib.suppress(*self._dialect.errors):
            connection.close()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(*self._dialect.errors):
                connection.close()


class SqlBatchStore:
    """A :class:`~services.gateway.batches.BatchStore` on SQL connections.

    Build it through the SQLite (:class:`SqliteBatchStore`) and Postgres
    (:func:`open_postgres_batch_store`) adapters. Opening creates the schema and
    blocks until it exists, so start-up fails fast on an unreachable database.
    """

    def __init__(
        self, dialect: Dialect, connect: Callable[[], Connection], *, size: int = 1
    ) -> None:
        """Start ``size`` workers and create the schema on one.

        Raises:
            BackendUnavailableError: the database cannot be reached or prepared.
        """
        self._dialect = dialect
        self._failures: tuple[type[Exception], ...] = (*dialect.errors, OSError)
        self._workers = _Workers(dialect, connect, size)
        try:
            self._workers.executor.submit(self._call, _create_schema, ()).result()
        except BaseException:
            self._workers.close()
            raise

    def _call(self, work: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        try:
            return self._workers.call(work, args)
        except self._failures as error:
            _log.error(
                "batch_store_error",
                backend=self._dialect.name,
                error_type=type(error).__name__,
            )
            raise BackendUnavailableError(
                f"batch store unavailable ({type(error).__name__})",
                retry_after=_RETRY_AFTER_SECONDS,
            ) from error

    async def _run(self, work: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._workers.executor, self._call, work, args
        )

    async def _rows(self, sql: str, params: Sequence[object]) -> list[Row]:
        return await self._run(_fetch, sql, tuple(params))

    async def _change(self, sql: str, params: Sequence[object]) -> int:
        return await self._run(_execute, sql, tuple(params))

    # -- batches

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
        batch = (
            record.principal.tenant_id,
            record.batch_id,
            json.dumps(asdict(record.principal), sort_keys=True),
            record.status.value,
            json.dumps(record.metadata, sort_keys=True),
            record.created_at,
            record.finished_at,
            _jobs_json(record),
            int(record.cancel_requested),
            record.next_poll_at,
            record.poll_attempt,
            int(record.settled),
        )
        await self._run(_create, batch, rows)

    async def get(self, batch_id: str) -> BatchRecord | None:
        """The batch, or None."""
        rows = await self._rows(_SELECT_RECORD, (batch_id,))
        return _record(rows[0]) if rows else None

    async def claim(
        self, batch_id: str, owner: str, now: float, until: float
    ) -> BatchRecord | None:
        """Lease an unsettled batch to ``owner`` until ``until``, and return it.

        Granted when the batch has no lease, when its lease ended by ``now``, or
        when ``owner`` holds it already (a renewal); None when another owner's
        lease is live, or the batch is settled or unknown.
        """
        return await self._run(_claim, batch_id, owner, now, until)

    async def release(self, batch_id: str, owner: str) -> None:
        """End ``owner``'s lease of the batch (nothing if it holds none)."""
        await self._change(_RELEASE, (batch_id, owner))

    async def save(self, record: BatchRecord, owner: str) -> bool:
        """Persist a batch's mutable state under ``owner``'s lease.

        Returns False, writing nothing, when ``owner`` does not hold the lease. A
        cancel requested meanwhile is kept, never cleared.
        """
        seen = int(record.cancel_requested)
        changed = await self._change(
            _SAVE,
            (
                seen,
                record.status.value,
                record.status.value,
                record.finished_at,
                _jobs_json(record),
                seen,
                seen,
                record.next_poll_at,
                record.next_poll_at,
                record.poll_attempt,
                int(record.settled),
                record.batch_id,
                owner,
            ),
        )
        return changed == 1

    async def request_cancel(self, batch_id: str, now: float) -> bool:
        """Mark an unfinished batch for cancelling, due at ``now``.

        Returns False when the batch has finished, is already marked, or is
        unknown.
        """
        return await self._change(_REQUEST_CANCEL, (now, batch_id)) == 1

    async def unsettled(self, due_by: float | None = None) -> list[BatchRecord]:
        """Every batch the loop still has work for (due by ``due_by``), oldest first."""
        sql = f"SELECT {_RECORD_COLUMNS} FROM batches WHERE settled = 0"
        params: tuple[object, ...] = ()
        if due_by is not None:
            sql += " AND next_poll_at <= ?"
            params = (due_by,)
        rows = await self._rows(sql + " ORDER BY created_at, batch_id", params)
        return [_record(row) for row in rows]

    # -- items

    async def counts(self, batch_id: str) -> BatchCounts:
        """Items by state and the cost booked so far."""
        rows = await self._rows(_COUNTS, (_SUCCEEDED, _FAILED, batch_id))
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
        text = self._dialect.text
        params = [
            (text(model), batch_id, custom_id) for custom_id, model in models.items()
        ]
        await self._run(
            _execute_many,
            "UPDATE batch_items SET model = ? WHERE batch_id = ? AND custom_id = ?",
            params,
        )

    async def record_outcomes(
        self, batch_id: str, outcomes: Sequence[ItemOutcome]
    ) -> int:
        """Store results of items still pending; a second download changes nothing."""
        text = self._dialect.text
        params = [
            (
                _FAILED if outcome.error else _SUCCEEDED,
                text(outcome.output_text),
                text(outcome.model),
                outcome.usage.input_tokens,
                outcome.usage.cached_input_tokens,
                outcome.usage.output_tokens,
                text(outcome.error.code) if outcome.error else None,
                text(outcome.error.message) if outcome.error else None,
                _answer_json(outcome),
                batch_id,
                text(outcome.custom_id),
                _PENDING,
            )
            for outcome in outcomes
        ]
        return await self._run(_execute_many, _RECORD_OUTCOME, params)

    async def fail_pending(
        self,
        batch_id: str,
        error: ItemError,
        *,
        models: Collection[str] | None = None,
        keep_models: Collection[str] = (),
    ) -> int:
        """Fail pending items sent to ``models`` (None: any) but not ``keep_models``."""
        text = self._dialect.text
        sql = (
            "UPDATE batch_items SET state = ?, error_code = ?, error_message = ? "
            "WHERE batch_id = ? AND state = ?"
        )
        params: list[object] = [
            _FAILED,
            text(error.code),
            text(error.message),
            batch_id,
            _PENDING,
        ]
        if models is not None:
            sql += f" AND model IN ({', '.join('?' * len(models)) or 'NULL'})"
            params.extend(text(model) for model in models)
        if keep_models:
            sql += f" AND model NOT IN ({', '.join('?' * len(keep_models))})"
            params.extend(text(model) for model in keep_models)
        return await self._change(sql, params)

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
        await self._change(
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
        return [_result(row) for row in rows]

    # -- input files of the HTTP door

    async def put_content(self, file_id: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file's bytes as they arrive; returns how many.

        Should ``chunks`` raise, what was stored is deleted and the error goes on.
        """
        size = seq = 0
        pending = bytearray()
        insert = "INSERT INTO input_file_chunks (file_id, seq, data) VALUES (?, ?, ?)"
        try:
            async for chunk in chunks:
                size += len(chunk)
                pending += chunk
                if len(pending) >= _FILE_CHUNK_BYTES:
                    await self._change(insert, (file_id, seq, bytes(pending)))
                    seq += 1
                    pending.clear()
            if pending or seq == 0:
                await self._change(insert, (file_id, seq, bytes(pending)))
        except BaseException:
            await self.delete_file(file_id)
            raise
        return size

    async def put_meta(self, meta: Mapping[str, Any]) -> None:
        """Make a stored file visible, with its metadata (``meta["id"]`` names it)."""
        await self._change(
            "INSERT INTO input_files (file_id, meta) VALUES (?, ?)",
            (str(meta["id"]), json.dumps(dict(meta), sort_keys=True)),
        )

    async def file_meta(self, file_id: str) -> dict[str, Any] | None:
        """A visible file's metadata, or None."""
        rows = await self._rows(
            "SELECT meta FROM input_files WHERE file_id = ?", (file_id,)
        )
        if not rows:
            return None
        meta: dict[str, Any] = json.loads(str(rows[0][0]))
        return meta

    async def file_content(self, file_id: str) -> AsyncGenerator[bytes, None]:
        """A file's bytes, a piece at a time; nothing for an unknown file."""
        seq = 0
        while rows := await self._rows(
            "SELECT data FROM input_file_chunks WHERE file_id = ? AND seq = ?",
            (file_id, seq),
        ):
            yield bytes(cast("bytes", rows[0][0]))
            seq += 1

    async def delete_file(self, file_id: str) -> None:
        """Forget a file, its metadata and its bytes."""
        await self._run(_delete_file, file_id)

    def close(self) -> None:
        """Wait for the calls under way, then close every connection."""
        self._workers.close()


def _result(row: Row) -> tuple[int, ItemResult]:
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
    return (
        _int(position),
        ItemResult(
            custom_id=str(custom_id),
            output_text=str(text),
            model=str(answered or sent),
            usage=Usage(_int(tokens_in), _int(cached), _int(tokens_out), reasoning),
            cost_micros=_int(cost),
            error=error,
            tool_calls=tool_calls,
            finish_reason=finish,
        ),
    )


# -- work functions, each run on a worker thread with its connection


def _fetch(
    connection: Connection, dialect: Dialect, sql: str, params: tuple[object, ...]
) -> list[Row]:
    rows: list[Row] = connection.execute(dialect.sql(sql), params).fetchall()
    return rows


def _execute(
    connection: Connection, dialect: Dialect, sql: str, params: tuple[object, ...]
) -> int:
    # Autocommit: one statement.
    changed: int = connection.execute(dialect.sql(sql), params).rowcount
    return changed


def _execute_many(
    connection: Connection,
    dialect: Dialect,
    sql: str,
    params: Sequence[tuple[object, ...]],
) -> int:
    # All rows or none; both drivers sum the rows changed by executemany().
    if not params:
        return 0
    with transaction(connection, dialect):
        cursor = connection.cursor()
        cursor.executemany(dialect.sql(sql), params)
        changed: int = cursor.rowcount
    return changed


def _create(
    connection: Connection,
    dialect: Dialect,
    batch: tuple[object, ...],
    rows: Sequence[tuple[object, ...]],
) -> None:
    with transaction(connection, dialect):
        connection.execute(dialect.sql(_INSERT_BATCH), batch)
        if rows:
            connection.cursor().executemany(dialect.sql(_INSERT_ITEM), rows)


def _delete_file(connection: Connection, dialect: Dialect, file_id: str) -> None:
    with transaction(connection, dialect):
        for table in ("input_files", "input_file_chunks"):
            connection.execute(
                dialect.sql(f"DELETE FROM {table} WHERE file_id = ?"), (file_id,)
            )


def _claim(
    connection: Connection,
    dialect: Dialect,
    batch_id: str,
    owner: str,
    now: float,
    until: float,
) -> BatchRecord | None:
    # The UPDATE holds the row until COMMIT: the SELECT reads what the claim won.
    with transaction(connection, dialect):
        claimed = connection.execute(
            dialect.sql(_CLAIM), (owner, until, batch_id, owner, now)
        ).rowcount
        if claimed != 1:
            return None
        row = connection.execute(dialect.sql(_SELECT_RECORD), (batch_id,)).fetchone()
    return _record(row)
