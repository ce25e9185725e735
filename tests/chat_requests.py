"""One chat request with every neutral field, for tests that need a whole one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.core.conversation import Prompt
from services.gateway.domain import Priority, RequestType, ResponseRequest


def chat_request(
    text: str, instructions: str = "", *, model: str = "gpt-4.1-mini", **changes: Any
) -> ResponseRequest:
    """A standard-priority chat request for ``text``; ``changes`` set other fields."""
    request = ResponseRequest(
        prompt=Prompt.of_text(text, instructions),
        model=model,
        priority=Priority.STANDARD,
        request_type=RequestType.CHAT,
        max_output_tokens=0,
        temperature=None,
        user_id="",
        metadata={},
        cache_bypass=False,
    )
    return replace(request, **changes)
