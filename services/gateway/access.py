"""What the gateway's access line says of a request (:mod:`services.core.access_log`).

Both doors note the caller when they authenticate it; the orchestrator (and the
HTTP door's embeddings) note the model asked for, the answer's model and cache
status, its tokens and cost. Outside a logged request every function does nothing.
"""

from __future__ import annotations

from services.core import access_log
from services.gateway.domain import CacheStatus, Principal, Usage
from services.gateway.pipeline.plan import AUTO_MODEL


def note_principal(principal: Principal) -> None:
    """The authenticated caller: tenant, key id and the key's own user."""
    record = access_log.current()
    if record is not None:
        record.tenant = principal.tenant_id
        record.key_id = principal.key_id
        record.user = principal.user_id


def note_request(user: str, model: str) -> None:
    """The user the request is booked to and the model it names ("": auto)."""
    record = access_log.current()
    if record is not None:
        record.user = user
        record.model_requested = model or AUTO_MODEL


def note_served(model: str, cache_status: CacheStatus) -> None:
    """The model that answers and where the answer comes from."""
    record = access_log.current()
    if record is not None:
        record.model = model
        record.cache_status = cache_status.value


def note_usage(usage: Usage, cost_micros: int) -> None:
    """The answer's tokens and what it cost."""
    record = access_log.current()
    if record is not None:
        record.input_tokens = usage.input_tokens
        record.output_tokens = usage.output_tokens
        record.cost_micros = cost_micros
