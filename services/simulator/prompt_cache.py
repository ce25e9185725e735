"""OpenAI's prompt caching, simulated.

OpenAI caches the longest previously seen prompt prefix of at least 1,024 tokens, in
steps of 128 tokens, for requests routed together (``prompt_cache_key``), for a few
minutes. The simulator models the stable prefix a gateway can control: the leading
system (instructions) or developer message, counted as
``message_tokens`` counts it. A repeat within the retention window reports
those tokens as ``cached_tokens``.
"""

from __future__ import annotations

import hashlib

from services.core.clock import Clock
from services.simulator.text import Message, message_tokens

MIN_CACHED_PREFIX_TOKENS = 1024
CACHE_INCREMENT_TOKENS = 128
RETENTION_SECONDS = 300.0
_MAX_ENTRIES = 10_000


class PromptCache:
    """Remembers recent prefixes by prompt cache key."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}

    def cached_tokens(self, messages: list[Message], prompt_cache_key: str) -> int:
        """Tokens of this request's prefix already in the cache; remembers it."""
        if not messages or messages[0].role not in ("developer", "system"):
            return 0
        prefix_tokens = message_tokens(messages[0])
        if prefix_tokens < MIN_CACHED_PREFIX_TOKENS:
            return 0
        digest = hashlib.sha256(
            f"{prompt_cache_key}\0{messages[0].text}".encode()
        ).hexdigest()
        now = self._clock.monotonic()
        expires = self._seen.get(digest)
        if len(self._seen) >= _MAX_ENTRIES:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[digest] = now + RETENTION_SECONDS
        if expires is None or expires <= now:
            return 0
        return prefix_tokens // CACHE_INCREMENT_TOKENS * CACHE_INCREMENT_TOKENS
