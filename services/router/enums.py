"""The router's vocabulary, free of protobuf.

The servicer maps the wire enums onto these; the routing table uses their values
(lowercase) as YAML keys.
"""

from __future__ import annotations

import enum


class Priority(enum.StrEnum):
    """Scheduling priority of a request (the wire's UNSPECIFIED means STANDARD)."""

    CRITICAL = "critical"
    REALTIME = "realtime"
    STANDARD = "standard"
    BATCH = "batch"
    LOW = "low"


class RequestType(enum.StrEnum):
    """Kind of request, which selects the token budget (UNSPECIFIED means CHAT)."""

    CHAT = "chat"
    SUMMARIZE = "summarize"
    ANALYZE = "analyze"
    CLASSIFY = "classify"
    GENERATE = "generate"


class Lane(enum.StrEnum):
    """How the gateway serves a routed request."""

    SYNC = "sync"
    BATCH = "batch"
    CACHE_ONLY = "cache_only"
    STATIC = "static"
    QUEUE = "queue"


class Complexity(enum.StrEnum):
    """How demanding a prompt is; UNSPECIFIED until the router classifies it."""

    UNSPECIFIED = "unspecified"
    TRIVIAL = "trivial"
    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"


class DegradationLevel(enum.IntEnum):
    """The service level in force, the ladder of seed section 6 (0 is best)."""

    FULL_SERVICE = 0
    REDUCED_QUALITY = 1
    CACHED_ONLY = 2
    STATIC_FALLBACK = 3
    MAINTENANCE = 4


class QualitySignal(enum.StrEnum):
    """What a user or an application said of one answer, after the fact."""

    THUMBS_UP = "thumbs_up"
    THUMBS_DOWN = "thumbs_down"
    ESCALATED = "escalated"
    """The application retried on a more capable model or handed over to a human."""


class ShadowVerdict(enum.StrEnum):
    """How the shadow classifier's tier compares with the tier served."""

    SAME = "same"
    HIGHER = "higher"
    """The shadow would have used a more capable (dearer) tier."""
    LOWER = "lower"
    """The shadow would have used a cheaper tier."""
