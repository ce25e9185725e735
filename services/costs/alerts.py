"""Live fan-out of fired alerts to any number of watchers, in this process.

Alerts are persisted by the store before they are published here, so a watcher
that falls behind or reconnects catches up from ListAlerts (or WatchAlerts with
``since``). Each watcher has a bounded queue: one that does not keep up is ended
with :class:`AlertWatcherTooSlowError` rather than slowing the ledger down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

from services.core.errors import UnavailableError
from services.costs.ports import Alert

DEFAULT_WATCHER_QUEUE_SIZE = 1024
_RETRY_AFTER_SECONDS = 1.0


class AlertWatcherTooSlowError(UnavailableError):
    """A watcher's queue overflowed; it should reconnect with ``since``."""

    default_reason = "ALERT_WATCHER_TOO_SLOW"


class AlertWatch:
    """One watcher's view: the alerts of its tenant (all if empty), in order."""

    def __init__(self, tenant_id: str, queue_size: int) -> None:
        self.tenant_id = tenant_id
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(queue_size)
        self._overflowed = False

    def matches(self, alert: Alert) -> bool:
        """Whether this watcher wants ``alert``."""
        return not self.tenant_id or alert.budget.scope.tenant_id == self.tenant_id

    def offer(self, alert: Alert) -> None:
        """Queue ``alert``; on overflow the watcher is marked too slow."""
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._overflowed = True

    async def next(self) -> Alert:
        """The next alert, waiting for one.

        Raises:
            AlertWatcherTooSlowError: alerts were dropped for this watcher.
        """
        if self._overflowed:
            raise AlertWatcherTooSlowError(
                "alerts arrived faster than this watcher read them; "
                "watch again with since set to the last alert's fired_at",
                retry_after=_RETRY_AFTER_SECONDS,
            )
        return await self._queue.get()


class AlertHub:
    """Publishes alerts to every current watcher whose filter matches."""

    def __init__(self, queue_size: int = DEFAULT_WATCHER_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._watches: set[AlertWatch] = set()

    @property
    def watcher_count(self) -> int:
        """How many watchers are subscribed now."""
        return len(self._watches)

    def publish(self, alerts: Sequence[Alert]) -> None:
        """Hand ``alerts`` to every matching watcher, without waiting."""
        for watch in self._watches:
            for alert in alerts:
                if watch.matches(alert):
                    watch.offer(alert)

    @contextlib.contextmanager
    def watch(self, tenant_id: str) -> Iterator[AlertWatch]:
        """Subscribe for the duration of the ``with`` block."""
        watch = AlertWatch(tenant_id, self._queue_size)
        self._watches.add(watch)
        try:
            yield watch
        finally:
            self._watches.discard(watch)
