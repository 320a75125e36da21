"""Huey tasks of the delivery pipeline: dispatch due deliveries; take back dead claims."""

from __future__ import annotations

from dripstone import db
from dripstone.delivery import dispatcher, recovery
from dripstone.jobs.queue import huey
from dripstone.jobs.ticker import on_tick, when_due


@huey.task(name="dispatch_deliveries")  # type: ignore[untyped-decorator]
def dispatch_deliveries() -> None:
    dispatcher.dispatch_due(db.database())


on_tick(recovery.recover_deliveries)
when_due(dispatcher.has_due_deliveries, dispatch_deliveries)
