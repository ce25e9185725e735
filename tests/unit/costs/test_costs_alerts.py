from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.costs.alerts import AlertHub, AlertWatcherTooSlowError
from services.costs.ports import Alert, Budget, BudgetPeriod, BudgetScope, ScopeKind

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _alert(tenant_id: str, threshold: int) -> Alert:
    kind = ScopeKind.TENANT if tenant_id else ScopeKind.GLOBAL
    budget = Budget(
        BudgetScope(kind, tenant_id), BudgetPeriod.DAY, 100, False, (threshold,), ""
    )
    return Alert(f"{tenant_id}-{threshold}", budget, threshold, 100, AT, AT)


async def test_every_matching_watcher_gets_every_alert_in_order() -> None:
    hub = AlertHub()
    alerts = [_alert("acme", 50), _alert("", 75), _alert("globex", 90)]

    with (
        hub.watch("") as everything,
        hub.watch("acme") as acme,
        hub.watch("acme") as acme_too,
    ):
        assert hub.watcher_count == 3
        hub.publish(alerts)
        seen_all = [await everything.next() for _ in range(3)]
        seen_acme = [await acme.next(), await acme_too.next()]

    assert hub.watcher_count == 0
    assert seen_all == alerts
    assert seen_acme == [alerts[0], alerts[0]]


async def test_a_watcher_that_falls_behind_is_ended() -> None:
    hub = AlertHub(queue_size=2)

    with hub.watch("") as slow:
        hub.publish([_alert("acme", t) for t in (50, 75, 90)])

        with pytest.raises(AlertWatcherTooSlowError) as raised:
            await slow.next()

    assert raised.value.reason == "ALERT_WATCHER_TOO_SLOW"
    assert raised.value.retry_after is not None


async def test_an_unsubscribed_watcher_gets_nothing() -> None:
    hub = AlertHub()
    with hub.watch("") as watch:
        pass

    hub.publish([_alert("acme", 50)])

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watch.next(), timeout=0)
