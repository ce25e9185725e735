"""The batch lane: many requests through the OpenAI Batch API at the batch price.

``BatchService.submit`` validates the items and commits them to the async results
store (SQLite by default) before it answers, so nothing accepted is lost. The
background loop (:meth:`BatchService.run`, one :meth:`~BatchService.poll_once` per
tick) then, for each unsettled batch:

1. dispatches it: resolves ``auto`` models, groups the items by model (an upstream
   batch holds one model), assembles one JSONL file per model, uploads it with
   ``files.create(purpose="batch")`` and creates the upstream batch with
   ``batches.create(completion_window="24h")``; each step is saved before the next,
   and a file already uploaded is matched to an upstream batch created before a
   crash, so a restart neither loses nor duplicates work;
2. polls each upstream batch with exponential backoff, and once it ends downloads
   its output and error files into the store, one result per ``custom_id``;
3. books every answered item through the ledger with ``batch=True`` (the batch
   price) and the idempotency key ``<batch_id>:<custom_id>``, so a replay after a
   crash books nothing twice; an unreachable ledger is retried on the next tick.
4. once the batch has ended and its results and record are saved, deletes the
   files it uploaded and the upstream's output and error files from the
   upstream; a failed deletion is logged and retried later, and the batch stays
   unsettled until none is left.

A batch is visible only to its own tenant; any other caller gets NOT_FOUND. A
maintenance-mode request (:meth:`BatchService.enqueue_ticket`) is a one-item batch
whose id is the ticket.

Several replicas may share one store (Postgres): each round on a batch runs under a
lease (:meth:`BatchStore.claim`), renewed before each long step, so only one
replica works on a batch at a time and nothing goes upstream twice. A lease left by
a crashed replica lapses after ``BatchConfig.lease_seconds``. A cancel from any
replica is a flag in the store (:meth:`BatchStore.request_cancel`) that the
replica holding the lease acts on at its next round, which the cancel makes due.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import math
import secrets
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, TypeVar

import openai
import pydantic
import structlog
from openai.types.responses import Response

from services.core.clock import Clock
from services.core.conversation import (
    FinishReason,
    Prompt,
    ToolCall,
    prompt_bytes,
    validate_prompt,
)
from services.core.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from services.gateway.domain import (
    CacheStatus,
    Principal,
    RecordResult,
    RequestType,
    ResponseRequest,
    UpstreamCall,
    Usage,
    UsageRecord,
)
from services.gateway.fallbacks import LOCAL_BUDGETS
from services.gateway.ports import DependencyUnavailableError
from services.gateway.responses_api import read_answer, request_body

_log = structlog.get_logger("tollgate.gateway.batches")

MAX_ITEMS = 50_000
MAX_CUSTOM_ID_CHARS = 64
MAX_INSTRUCTIONS_BYTES = 256 * 1024
MAX_BATCH_BYTES = 150 * 1024 * 1024
"""The prompts of a whole batch: under OpenAI's 200 MB input file."""
MAX_MODEL_CHARS = 128
MAX_OUTPUT_TOKENS_LIMIT = 128_000
MAX_USER_ID_CHARS = 128
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 512

DEFAULT_MODEL = "gpt-4.1-mini"
TICKET_ITEM_ID = "answer"
"""The custom id of the one item of a maintenance-queue ticket."""
UPSTREAM_ENDPOINT: Literal["/v1/responses"] = "/v1/responses"
RESULTS_PAGE = 500


class BatchStatus(enum.Enum):
    """A batch's state; the proto's ``BatchStatus`` values."""

    QUEUED = "queued"
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the batch has ended."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.EXPIRED,
        BatchStatus.CANCELLED,
    }
)
# How far an upstream batch has come, to report the least advanced of several.
_PROGRESS = {
    "validating": BatchStatus.VALIDATING,
    "in_progress": BatchStatus.IN_PROGRESS,
    "finalizing": BatchStatus.FINALIZING,
    "cancelling": BatchStatus.CANCELLING,
}
_UPSTREAM_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Why a still-unanswered item failed, by how its upstream batch ended.
_UNANSWERED = {
    "completed": ("missing_result", "the upstream returned no result for this item"),
    "failed": ("batch_failed", "the upstream batch failed"),
    "expired": ("batch_expired", "the 24-hour window passed before an answer"),
    "cancelled": ("batch_cancelled", "the batch was cancelled before an answer"),
}


@dataclass(frozen=True, slots=True)
class BatchItemRequest:
    """One request of a batch, as submitted."""

    custom_id: str
    prompt: Prompt
    model: str = ""
    """Empty or ``auto`` lets the model chooser pick."""
    request_type: RequestType = RequestType.CHAT
    max_output_tokens: int = 0
    """0 uses the request type's budget; a larger value is capped by it."""
    temperature: float | None = None
    top_p: float | None = None
    safety_identifier: str = ""


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item failed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What the upstream answered for one item."""

    custom_id: str
    output_text: str = ""
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    error: ItemError | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One finished item, as ListBatchResults shows it."""

    custom_id: str
    output_text: str
    model: str
    usage: Usage
    cost_micros: int
    """At the batch price; 0 until the ledger booked it, and for a failed item."""
    error: ItemError | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """A batch's items by state, and their cost so far."""

    total: int
    completed: int
    failed: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch's progress, as GetBatch shows it."""

    batch_id: str
    status: BatchStatus
    total_items: int
    completed_items: int
    failed_items: int
    created_at: float
    finished_at: float | None
    cost_micros: int
    metadata: dict[str, str]


@dataclass
class UpstreamJob:
    """One upstream batch: the items of one model."""

    model: str
    input_file_id: str = ""
    upstream_batch_id: str = ""
    status: str = ""
    """The upstream's last status, empty before creation."""
    collected: bool = False
    """Whether its results are in the store (and its unanswered items failed)."""
    cancel_sent: bool = False
    output_file_id: str = ""
    error_file_id: str = ""
    files_deleted: bool = False
    """Whether its input, output and error files are gone from the upstream."""


@dataclass
class BatchRecord:
    """A batch as the store keeps it (items aside)."""

    batch_id: str
    principal: Principal
    status: BatchStatus
    metadata: dict[str, str]
    created_at: float
    finished_at: float | None = None
    jobs: list[UpstreamJob] = field(default_factory=list)
    cancel_requested: bool = False
    next_poll_at: float = 0.0
    """Wall-clock time before which the loop leaves this batch alone."""
    poll_attempt: int = 0
    settled: bool = False
    """Terminal, and every answered item booked: the loop is done with it."""


@dataclass(frozen=True, slots=True)
class PendingItem:
    """An item not yet answered, with the model it is (or will be) sent to."""

    request: BatchItemRequest
    model: str
    """The resolved model; empty until dispatch resolves it."""


@dataclass(frozen=True, slots=True)
class UnbookedItem:
    """An answered item the ledger has not booked yet."""

    custom_id: str
    requested_model: str
    model: str
    usage: Usage


class BatchStore(Protocol):
    """The async results store: batches, their upstream jobs and their items."""

    async def create(
        self, record: BatchRecord, items: Sequence[BatchItemRequest]
    ) -> None:
        """Persist a new batch with its items, atomically."""
        ...

    async def get(self, batch_id: str) -> BatchRecord | None:
        """The batch, or None."""
        ...

    async def claim(
        self, batch_id: str, owner: str, now: float, until: float
    ) -> BatchRecord | None:
        """Lease an unsettled batch to ``owner`` until ``until``, and return it.

        Granted when the batch has no lease, when its lease ended by ``now``, or
        when ``owner`` holds it already (a renewal); None when another owner's
        lease is live, or the batch is settled or unknown. Atomic: of concurrent
        claims, one wins.
        """
        ...

    async def release(self, batch_id: str, owner: str) -> None:
        """End ``owner``'s lease of the batch (nothing if it holds none)."""
        ...

    async def save(self, record: BatchRecord, owner: str) -> bool:
        """Persist a batch's mutable state (status, jobs, polling, settled).

        Only under ``owner``'s lease: returns False, writing nothing, otherwise.
        A cancel requested meanwhile is kept: ``cancel_requested`` is never
        cleared, and an unfinished status saved by a writer that had not seen the
        request is stored as CANCELLING.
        """
        ...

    async def request_cancel(self, batch_id: str, now: float) -> bool:
        """Mark an unfinished batch for cancelling (status CANCELLING), due at ``now``.

        Returns False when the batch has finished, is already marked, or is
        unknown.
        """
        ...

    async def unsettled(self, due_by: float | None = None) -> list[BatchRecord]:
        """Every batch the loop still has work for, oldest first.

        With ``due_by``, only those whose ``next_poll_at`` is not after it.
        """
        ...

    async def counts(self, batch_id: str) -> BatchCounts:
        """Items by state and the cost booked so far."""
        ...

    async def pending(self, batch_id: str) -> list[PendingItem]:
        """The items without a result, in submission order."""
        ...

    async def set_models(self, batch_id: str, models: Mapping[str, str]) -> None:
        """Record the model each item (by custom id) is sent to."""
        ...

    async def record_outcomes(
        self, batch_id: str, outcomes: Sequence[ItemOutcome]
    ) -> int:
        """Store results of items still pending; returns how many were new."""
        ...

    async def fail_pending(
        self,
        batch_id: str,
        error: ItemError,
        *,
        models: Collection[str] | None = None,
        keep_models: Collection[str] = (),
    ) -> int:
        """Fail pending items; returns how many.

        Only items sent to ``models`` (None: to any model) and not to
        ``keep_models`` fail.
        """
        ...

    async def unbooked(self, batch_id: str, limit: int) -> list[UnbookedItem]:
        """Answered items not booked yet."""
        ...

    async def mark_booked(
        self, batch_id: str, custom_id: str, cost_micros: int
    ) -> None:
        """Remember an item's booked cost."""
        ...

    async def results(
        self, batch_id: str, after: int, limit: int
    ) -> list[tuple[int, ItemResult]]:
        """Finished items after position ``after``, with their positions."""
        ...


class BatchLedgerPort(Protocol):
    """The part of :class:`~services.gateway.ports.LedgerPort` the lane uses."""

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book one request's usage (idempotent on its request id)."""
        ...


ModelChooser = Callable[[Principal, BatchItemRequest], Awaitable[str]]
"""Picks the model of an item whose model is empty or ``auto``."""

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchConfig:
    """The lane's knobs, from the gateway settings."""

    poll_initial_seconds: float = 1.0
    """First wait between polls of an upstream batch; doubles each poll."""
    poll_max_seconds: float = 60.0
    """Longest wait between polls."""
    tick_seconds: float = 0.5
    """How often the loop looks for work."""
    request_timeout_seconds: float = 60.0
    """Timeout of each upstream call (upload, create, retrieve, download)."""
    default_model: str = DEFAULT_MODEL
    """The model of ``auto`` items when no chooser is given."""
    book_page: int = 500
    """Items booked per ledger round."""
    lease_seconds: float = 300.0
    """How long a round's lease on a batch lasts; renewed before each long step."""


class _TransientError(Exception):
    """An upstream or ledger failure worth retrying later."""


class _LeaseLostError(Exception):
    """Another replica took the batch over (this one stalled past its lease)."""


# -- validation and assembly (pure)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def metadata_violations(
    metadata: Mapping[str, str], field_name: str = "metadata"
) -> list[FieldViolation]:
    """The problems of a free-form label map (at most 16 pairs, bounded sizes)."""
    violations: list[FieldViolation] = []
    if len(metadata) > MAX_METADATA_PAIRS:
        violations.append(
            FieldViolation(
                field_name, f"must have at most {MAX_METADATA_PAIRS} entries"
            )
        )
    for key, value in metadata.items():
        where = f"{field_name}[{key[:32]!r}]"
        if not key or _utf8_len(key) > MAX_METADATA_KEY_BYTES:
            violations.append(
                FieldViolation(
                    where, f"keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes"
                )
            )
        if _utf8_len(value) > MAX_METADATA_VALUE_BYTES:
            violations.append(
                FieldViolation(
                    where, f"values must be at most {MAX_METADATA_VALUE_BYTES} bytes"
                )
            )
    return violations


def validate_submission(
    items: Sequence[BatchItemRequest], metadata: Mapping[str, str], user_id: str
) -> None:
    """Check a submission; every problem becomes one field violation.

    Raises:
        InvalidArgumentError: with paths like ``items[3].custom_id``.
    """
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(path, description))

    if not items:
        bad("items", "must hold at least one item")
    elif len(items) > MAX_ITEMS:
        bad("items", f"must hold at most {MAX_ITEMS} items")
    seen: set[str] = set()
    total_bytes = 0
    for index, item in enumerate(items):
        path = f"items[{index}]"
        if not item.custom_id:
            bad(f"{path}.custom_id", "must not be empty")
        elif len(item.custom_id) > MAX_CUSTOM_ID_CHARS:
            bad(
                f"{path}.custom_id", f"must be at most {MAX_CUSTOM_ID_CHARS} characters"
            )
        elif "\x00" in item.custom_id:
            bad(f"{path}.custom_id", "must not contain NUL characters")
        elif item.custom_id in seen:
            bad(f"{path}.custom_id", "must be unique within the batch")
        seen.add(item.custom_id)
        total_bytes += prompt_bytes(item.prompt)
        violations.extend(validate_prompt(item.prompt, prefix=f"{path}."))
        if _utf8_len(item.prompt.instructions) > MAX_INSTRUCTIONS_BYTES:
            bad(
                f"{path}.instructions",
                f"must be at most {MAX_INSTRUCTIONS_BYTES} bytes",
            )
        if len(item.model) > MAX_MODEL_CHARS:
            bad(f"{path}.model", f"must be at most {MAX_MODEL_CHARS} characters")
        elif "\x00" in item.model:
            bad(f"{path}.model", "must not contain NUL characters")
        if not 0 <= item.max_output_tokens <= MAX_OUTPUT_TOKENS_LIMIT:
            bad(
                f"{path}.max_output_tokens",
                f"must be between 0 and {MAX_OUTPUT_TOKENS_LIMIT}",
            )
        temperature = item.temperature
        if temperature is not None and not (
            math.isfinite(temperature) and 0.0 <= temperature <= 2.0
        ):
            bad(f"{path}.temperature", "must be between 0 and 2")
        if item.top_p is not None and not (
            math.isfinite(item.top_p) and 0.0 <= item.top_p <= 1.0
        ):
            bad(f"{path}.top_p", "must be between 0 and 1")
    if total_bytes > MAX_BATCH_BYTES:
        bad(
            "items",
            f"the items' prompts must total at most {MAX_BATCH_BYTES} bytes",
        )
    if len(user_id) > MAX_USER_ID_CHARS:
        bad("user_id", f"must be at most {MAX_USER_ID_CHARS} characters")
    violations.extend(metadata_violations(metadata))
    if violations:
        raise InvalidArgumentError(violations)


def output_token_budget(item: BatchItemRequest) -> int:
    """The item's ``max_output_tokens``: its own, capped by its request type's."""
    budget = LOCAL_BUDGETS[item.request_type][1]
    return min(item.max_output_tokens, budget) if item.max_output_tokens else budget


def jsonl_line(item: BatchItemRequest, model: str) -> str:
    """The Batch API input line of one item: the body the item would send alone."""
    body = request_body(
        UpstreamCall(
            model=model,
            prompt=item.prompt,
            max_output_tokens=output_token_budget(item),
            temperature=item.temperature,
            top_p=item.top_p,
            safety_identifier=item.safety_identifier,
        )
    )
    line = {
        "custom_id": item.custom_id,
        "method": "POST",
        "url": UPSTREAM_ENDPOINT,
        "body": body,
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def parse_result_line(line: str) -> ItemOutcome | None:
    """One line of an output or error file as an outcome; None if it names no item.

    Output lines carry ``response.status_code`` 200 and a Response body; error
    lines carry either a non-200 response with an error body, or ``error``.
    """
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        return None
    custom_id: str = data["custom_id"]
    response = data.get("response")
    error = data.get("error")
    if isinstance(response, dict) and response.get("status_code") == 200:
        try:
            parsed = Response.model_validate(response.get("body"))
        except pydantic.ValidationError:
            return ItemOutcome(
                custom_id, error=ItemError("invalid_output", "unreadable answer")
            )
        answer = read_answer(parsed)
        return ItemOutcome(
            custom_id,
            output_text=answer.output_text,
            model=answer.model,
            usage=answer.usage,
            tool_calls=answer.tool_calls,
            finish_reason=answer.finish_reason,
        )
    if isinstance(error, dict):
        return ItemOutcome(custom_id, error=_item_error(error, "upstream_error"))
    status = response.get("status_code") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    detail = body.get("error") if isinstance(body, dict) else None
    fallback = f"http_{status}" if isinstance(status, int) else "upstream_error"
    return ItemOutcome(
        custom_id,
        error=_item_error(detail if isinstance(detail, dict) else {}, fallback),
    )


def _item_error(detail: Mapping[str, object], fallback_code: str) -> ItemError:
    code = detail.get("code") or detail.get("type") or fallback_code
    message = detail.get("message") or "the upstream could not answer this item"
    return ItemError(str(code), str(message))


def _is_transient(error: openai.OpenAIError) -> bool:
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, openai.APIConnectionError)


# -- the service


class BatchService:
    """Submits, tracks, cancels and books batches; see the module docstring."""

    def __init__(
        self,
        *,
        store: BatchStore,
        client: openai.AsyncOpenAI,
        ledger: BatchLedgerPort,
        clock: Clock,
        config: BatchConfig | None = None,
        choose_model: ModelChooser | None = None,
        sleep: Sleep = asyncio.sleep,
        owner: str = "",
    ) -> None:
        """Wire the lane.

        Args:
            store: the async results store.
            client: the upstream, through the ``openai`` SDK (its own retries off).
            ledger: books each answered item at the batch price.
            clock: wall time for timestamps and poll scheduling.
            config: polling and timeouts.
            choose_model: picks the model of ``auto`` items (the router); without
                one they go to ``config.default_model``.
            sleep: waits between ticks of :meth:`run`.
            owner: names this replica in the leases it takes on batches; unique
                per process (a random one when empty).
        """
        self._store = store
        self._client = client
        self._ledger = ledger
        self._clock = clock
        self._config = config or BatchConfig()
        self._choose_model = choose_model
        self._sleep = sleep
        self._owner = owner or secrets.token_hex(8)
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the API

    async def submit(
        self,
        principal: Principal,
        items: Sequence[BatchItemRequest],
        metadata: Mapping[str, str],
        user_id: str = "",
    ) -> BatchView:
        """Validate and durably accept a batch; the loop sends it upstream.

        Raises:
            InvalidArgumentError: a field is invalid.
        """
        return await self._accept(principal, items, metadata, user_id, "batch")

    async def enqueue_ticket(
        self, principal: Principal, request: ResponseRequest
    ) -> str:
        """Accept one request into the durable queue; returns its ticket id.

        The answer is fetched later with :meth:`get` and :meth:`results`, under the
        custom id :data:`TICKET_ITEM_ID`.
        """
        item = BatchItemRequest(
            custom_id=TICKET_ITEM_ID,
            prompt=request.prompt,
            model=request.model,
            request_type=request.request_type,
            max_output_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            safety_identifier=request.safety_identifier,
        )
        view = await self._accept(
            principal, [item], request.metadata, request.user_id, "ticket"
        )
        return view.batch_id

    async def get(self, principal: Principal, batch_id: str) -> BatchView:
        """The batch's progress.

        Raises:
            NotFoundError: no such batch for the caller's tenant.
        """
        return await self._view(await self._owned(principal, batch_id))

    async def results(
        self, principal: Principal, batch_id: str
    ) -> AsyncIterator[ItemResult]:
        """The finished items, in submission order.

        Raises:
            NotFoundError: no such batch for the caller's tenant.
        """
        await self._owned(principal, batch_id)
        after = 0
        while True:
            page = await self._store.results(batch_id, after, RESULTS_PAGE)
            for position, result in page:
                after = position
                yield result
            if len(page) < RESULTS_PAGE:
                return

    async def cancel(self, principal: Principal, batch_id: str) -> BatchView:
        """Cancel a batch that has not finished; already cancelled is no error.

        Raises:
            NotFoundError: no such batch for the caller's tenant.
            FailedPreconditionError: the batch has finished.
        """
        await self._owned(principal, batch_id)
        async with self._lock(batch_id):
            marked = await self._store.request_cancel(batch_id, self._clock.now())
            record = await self._owned(principal, batch_id)
            if not marked:
                if record.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
                    return await self._view(record)
                raise FailedPreconditionError(
                    f"batch {batch_id} has already finished ({record.status.value})",
                    reason="BATCH_FINISHED",
                )
            # Tell the upstream now rather than at the next poll, unless another
            # replica is working on the batch: it acts on the cancel next round.
            claimed = await self._claim(batch_id)
            if claimed is None:
                return await self._view(record)
            try:
                await self._advance(claimed)
                await self._save(claimed)
            except _LeaseLostError:
                _log.warning("batch_lease_lost", batch_id=batch_id)
            finally:
                await self._store.release(batch_id, self._owner)
            return await self._view(claimed)

    # -- the background loop

    async def run(self) -> None:
        """Poll forever, one :meth:`poll_once` per tick; cancel the task to stop."""
        while True:
            try:
                await self.poll_once()
            except Exception as error:  # the loop must outlive one bad round
                _log.error("batch_poll_failed", error_type=type(error).__name__)
            await self._sleep(self._config.tick_seconds)

    async def poll_once(self) -> int:
        """Advance every due batch no other replica holds; returns how many."""
        advanced = 0
        for candidate in await self._store.unsettled(due_by=self._clock.now()):
            async with self._lock(candidate.batch_id):
                record = await self._claim(candidate.batch_id)
                if record is None:  # settled meanwhile, or another replica's
                    continue
                try:
                    await self._advance(record)
                    await self._save(record)
                    advanced += 1
                except _LeaseLostError:
                    _log.warning("batch_lease_lost", batch_id=record.batch_id)
                finally:
                    await self._store.release(record.batch_id, self._owner)
        return advanced

    # -- internals

    async def _accept(
        self,
        principal: Principal,
        items: Sequence[BatchItemRequest],
        metadata: Mapping[str, str],
        user_id: str,
        prefix: str,
    ) -> BatchView:
        validate_submission(items, metadata, user_id)
        if user_id:
            principal = replace(principal, user_id=user_id)
        now = self._clock.now()
        record = BatchRecord(
            batch_id=f"{prefix}_{secrets.token_hex(12)}",
            principal=principal,
            status=BatchStatus.QUEUED,
            metadata=dict(metadata),
            created_at=now,
            next_poll_at=now,
        )
        await self._store.create(record, items)
        _log.info(
            "batch_accepted",
            batch_id=record.batch_id,
            tenant=principal.tenant_id,
            items=len(items),
        )
        return await self._view(record)

    async def _owned(self, principal: Principal, batch_id: str) -> BatchRecord:
        record = await self._store.get(batch_id) if batch_id else None
        if record is None or record.principal.tenant_id != principal.tenant_id:
            raise NotFoundError(
                f"batch {batch_id!r} not found", reason="BATCH_NOT_FOUND"
            )
        return record

    async def _view(self, record: BatchRecord) -> BatchView:
        counts = await self._store.counts(record.batch_id)
        return BatchView(
            batch_id=record.batch_id,
            status=record.status,
            total_items=counts.total,
            completed_items=counts.completed,
            failed_items=counts.failed,
            created_at=record.created_at,
            finished_at=record.finished_at,
            cost_micros=counts.cost_micros,
            metadata=record.metadata,
        )

    async def _claim(self, batch_id: str) -> BatchRecord | None:
        now = self._clock.now()
        return await self._store.claim(
            batch_id, self._owner, now, now + self._config.lease_seconds
        )

    async def _renew(self, record: BatchRecord) -> None:
        """Extend this replica's lease before a long step.

        Raises:
            _LeaseLostError: another replica holds the batch now.
        """
        if await self._claim(record.batch_id) is None:
            raise _LeaseLostError(record.batch_id)

    async def _save(self, record: BatchRecord) -> None:
        """Persist the batch under this replica's lease.

        Raises:
            _LeaseLostError: another replica holds the batch now.
        """
        if not await self._store.save(record, self._owner):
            raise _LeaseLostError(record.batch_id)

    def _lock(self, batch_id: str) -> asyncio.Lock:
        lock = self._locks.get(batch_id)
        if lock is None:
            lock = self._locks[batch_id] = asyncio.Lock()
        return lock

    async def _advance(self, record: BatchRecord) -> None:
        """One round of work on a batch; failures back off, never escape."""
        try:
            if not record.status.terminal:
                await self._dispatch(record)
                await self._poll_jobs(record)
                await self._conclude(record)
            await self._book(record)
        except _TransientError as error:
            _log.warning(
                "batch_round_deferred", batch_id=record.batch_id, cause=str(error)
            )
            self._schedule(record)
            return
        except openai.OpenAIError as error:
            # An upstream answer we cannot act on: try again later, never stop.
            _log.error(
                "batch_round_failed",
                batch_id=record.batch_id,
                error_type=type(error).__name__,
            )
            self._schedule(record)
            return
        if record.status.terminal:
            deleted = await self._delete_files(record)
            booked = not await self._store.unbooked(record.batch_id, 1)
            record.settled = deleted and booked
            if record.settled:
                self._locks.pop(record.batch_id, None)
            elif not deleted:
                self._schedule(record)
        else:
            self._schedule(record)

    async def _delete_files(self, record: BatchRecord) -> bool:
        """Delete the ended batch's files at the upstream; whether none is left.

        Runs only once the results are in the store and the record saying so is
        saved, so a crash here never leaves a job whose output is gone before it
        was read. A file already gone counts as deleted; any other failure is
        logged (ids and error type only) and tried again on a later round.
        """
        if all(job.files_deleted for job in record.jobs):
            return True
        await self._save(record)
        timeout = self._config.request_timeout_seconds
        for job in record.jobs:
            if job.files_deleted or not job.collected:
                continue
            try:
                for file_id in (
                    job.input_file_id,
                    job.output_file_id,
                    job.error_file_id,
                ):
                    if file_id:
                        await self._renew(record)
                        with contextlib.suppress(openai.NotFoundError):
                            await self._client.files.delete(file_id, timeout=timeout)
            except openai.OpenAIError as error:
                _log.warning(
                    "batch_files_delete_failed",
                    batch_id=record.batch_id,
                    model=job.model,
                    error_type=type(error).__name__,
                )
                continue
            job.files_deleted = True
        return all(job.files_deleted for job in record.jobs)

    def _schedule(self, record: BatchRecord) -> None:
        config = self._config
        wait = min(
            config.poll_max_seconds,
            config.poll_initial_seconds * 2 ** min(record.poll_attempt, 30),
        )
        record.poll_attempt += 1
        record.next_poll_at = self._clock.now() + wait

    async def _call(self, work: Awaitable[_T]) -> _T:
        """Await an upstream call; a transient failure becomes ``_TransientError``."""
        try:
            return await work
        except openai.OpenAIError as error:
            if _is_transient(error):
                raise _TransientError(f"upstream: {type(error).__name__}") from error
            raise

    async def _dispatch(self, record: BatchRecord) -> None:
        """Send the items that have no upstream batch yet, one job per model."""
        if record.jobs and all(job.upstream_batch_id for job in record.jobs):
            return
        if record.cancel_requested:
            # Nothing more goes upstream; what already went is cancelled there.
            for job in record.jobs:
                if job.input_file_id and not job.upstream_batch_id:
                    await self._renew(record)
                    created = await self._find_upstream(job.input_file_id)
                    job.upstream_batch_id = created.id if created else ""
            # A job whose file went up but no batch: nothing to wait for, only
            # the file to delete once the batch ends.
            for job in record.jobs:
                if not job.upstream_batch_id:
                    job.status, job.collected = "cancelled", True
            record.jobs = [
                job for job in record.jobs if job.upstream_batch_id or job.input_file_id
            ]
            await self._store.fail_pending(
                record.batch_id,
                ItemError(*_UNANSWERED["cancelled"]),
                keep_models=[j.model for j in record.jobs if j.upstream_batch_id],
            )
            return
        pending = await self._store.pending(record.batch_id)
        pending = await self._resolve_models(record, pending)
        by_model: dict[str, list[BatchItemRequest]] = {}
        for item in pending:
            by_model.setdefault(item.model, []).append(item.request)
        jobs = {job.model: job for job in record.jobs}
        for model, items in by_model.items():
            if model not in jobs:
                jobs[model] = UpstreamJob(model)
                record.jobs.append(jobs[model])
            job = jobs[model]
            if job.upstream_batch_id:
                continue
            try:
                await self._send(record, job, items)
            except openai.OpenAIError as error:
                if _is_transient(error):
                    raise _TransientError(
                        f"upstream: {type(error).__name__}"
                    ) from error
                # The upstream refuses this batch for good: its items fail.
                _log.warning(
                    "batch_rejected_upstream",
                    batch_id=record.batch_id,
                    model=model,
                    error_type=type(error).__name__,
                )
                await self._give_up(
                    record,
                    job,
                    ItemError("upstream_rejected", "the upstream rejected the batch"),
                )
        if record.status is BatchStatus.QUEUED:
            record.status = BatchStatus.VALIDATING
        record.poll_attempt = 0

    async def _resolve_models(
        self, record: BatchRecord, pending: list[PendingItem]
    ) -> list[PendingItem]:
        chosen: dict[str, str] = {}
        resolved: list[PendingItem] = []
        for item in pending:
            model = item.model
            if not model:
                requested = item.request.model
                if requested and requested != "auto":
                    model = requested
                elif self._choose_model is not None:
                    model = await self._choose_model(record.principal, item.request)
                else:
                    model = self._config.default_model
                chosen[item.request.custom_id] = model
            resolved.append(PendingItem(item.request, model))
        if chosen:
            await self._store.set_models(record.batch_id, chosen)
        return resolved

    async def _send(
        self, record: BatchRecord, job: UpstreamJob, items: list[BatchItemRequest]
    ) -> None:
        timeout = self._config.request_timeout_seconds
        await self._renew(record)
        existing = None
        if job.input_file_id:
            # Resuming: the batch may have been created just before a crash.
            existing = await self._find_upstream(job.input_file_id)
        else:
            content = "\n".join(jsonl_line(item, job.model) for item in items)
            uploaded = await self._client.files.create(
                file=(f"{record.batch_id}-{job.model}.jsonl", content.encode()),
                purpose="batch",
                timeout=timeout,
            )
            job.input_file_id = uploaded.id
            await self._save(record)
        if existing is None:
            existing = await self._client.batches.create(
                input_file_id=job.input_file_id,
                endpoint=UPSTREAM_ENDPOINT,
                completion_window="24h",
                metadata={**record.metadata, "tollgate_batch_id": record.batch_id}
                if len(record.metadata) < MAX_METADATA_PAIRS
                else record.metadata,
                timeout=timeout,
            )
        job.upstream_batch_id = existing.id
        job.status = existing.status
        await self._save(record)
        _log.info(
            "batch_sent_upstream",
            batch_id=record.batch_id,
            model=job.model,
            items=len(items),
        )

    async def _find_upstream(self, input_file_id: str) -> openai.types.Batch | None:
        """An upstream batch already created from this file (before a crash)."""
        page = await self._call(
            self._client.batches.list(
                limit=100, timeout=self._config.request_timeout_seconds
            )
        )
        return next((b for b in page.data if b.input_file_id == input_file_id), None)

    async def _give_up(
        self, record: BatchRecord, job: UpstreamJob, error: ItemError
    ) -> None:
        """End a job the upstream will not run: its unanswered items fail."""
        job.status = "failed"
        job.collected = True
        await self._store.fail_pending(record.batch_id, error, models=[job.model])

    async def _poll_jobs(self, record: BatchRecord) -> None:
        timeout = self._config.request_timeout_seconds
        for job in record.jobs:
            if job.collected or not job.upstream_batch_id:
                continue
            await self._renew(record)
            if record.cancel_requested and not job.cancel_sent:
                with contextlib.suppress(openai.BadRequestError):
                    # A batch that has just finished cannot be cancelled: fine.
                    await self._call(
                        self._client.batches.cancel(
                            job.upstream_batch_id, timeout=timeout
                        )
                    )
                job.cancel_sent = True
            try:
                upstream = await self._call(
                    self._client.batches.retrieve(
                        job.upstream_batch_id, timeout=timeout
                    )
                )
            except openai.APIStatusError as error:
                _log.warning(
                    "batch_lost_upstream",
                    batch_id=record.batch_id,
                    status_code=error.status_code,
                )
                await self._give_up(
                    record,
                    job,
                    ItemError("upstream_lost", "the upstream lost track of the batch"),
                )
                continue
            job.status = upstream.status
            if upstream.status in _UPSTREAM_TERMINAL:
                await self._collect(record, job, upstream)

    async def _collect(
        self, record: BatchRecord, job: UpstreamJob, upstream: openai.types.Batch
    ) -> None:
        """Download the job's output and error files, then fail what is left."""
        job.output_file_id = upstream.output_file_id or ""
        job.error_file_id = upstream.error_file_id or ""
        for file_id in (upstream.output_file_id, upstream.error_file_id):
            if not file_id:
                continue
            await self._renew(record)
            content = await self._call(
                self._client.files.content(
                    file_id, timeout=self._config.request_timeout_seconds
                )
            )
            outcomes = [
                outcome
                for line in content.text.splitlines()
                if (outcome := parse_result_line(line)) is not None
            ]
            await self._store.record_outcomes(record.batch_id, outcomes)
        code, message = _UNANSWERED[upstream.status]
        if upstream.status == "failed" and upstream.errors and upstream.errors.data:
            first = upstream.errors.data[0]
            code = first.code or code
            message = first.message or message
        await self._store.fail_pending(
            record.batch_id, ItemError(code, message), models=[job.model]
        )
        job.collected = True
        _log.info(
            "batch_collected",
            batch_id=record.batch_id,
            model=job.model,
            upstream_status=upstream.status,
        )

    async def _conclude(self, record: BatchRecord) -> None:
        """Derive the batch's status from its jobs."""
        jobs = record.jobs
        if record.cancel_requested and not any(j.upstream_batch_id for j in jobs):
            self._finish(record, BatchStatus.CANCELLED)
            return
        if not jobs:
            return
        if all(job.collected for job in jobs):
            statuses = {job.status for job in jobs}
            if record.cancel_requested or "cancelled" in statuses:
                final = BatchStatus.CANCELLED
            elif statuses == {"failed"}:
                final = BatchStatus.FAILED
            elif statuses == {"expired"}:
                final = BatchStatus.EXPIRED
            else:
                final = BatchStatus.COMPLETED
            self._finish(record, final)
            return
        if record.cancel_requested:
            record.status = BatchStatus.CANCELLING
            return
        phases = [
            _PROGRESS.get(job.status, BatchStatus.FINALIZING)
            for job in jobs
            if not job.collected
        ]
        order = list(_PROGRESS.values())
        record.status = min(phases, key=order.index)

    def _finish(self, record: BatchRecord, status: BatchStatus) -> None:
        record.status = status
        record.finished_at = self._clock.now()
        _log.info("batch_finished", batch_id=record.batch_id, status=status.value)

    async def _book(self, record: BatchRecord) -> None:
        """Book answered items at the batch price until none is left."""
        while True:
            await self._renew(record)
            page = await self._store.unbooked(record.batch_id, self._config.book_page)
            for item in page:
                usage_record = UsageRecord(
                    request_id=f"{record.batch_id}:{item.custom_id}",
                    principal=record.principal,
                    model=item.model,
                    requested_model=item.requested_model,
                    deployment="batch",
                    usage=item.usage,
                    cache_status=CacheStatus.MISS,
                    occurred_at=self._clock.now(),
                    batch=True,
                )
                try:
                    booked = await self._ledger.record(usage_record)
                except DependencyUnavailableError as error:
                    raise _TransientError("ledger unavailable") from error
                await self._store.mark_booked(
                    record.batch_id, item.custom_id, booked.cost_micros
                )
            if len(page) < self._config.book_page:
                return
