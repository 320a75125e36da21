"""Huey tasks of the delivery pipeline: dispatch due deliveries; take back dead claims."""

from __future__ import annotations

from dripstone import db
from dripstone.db import Database
from dripstone.delivery import service
from dripstone.jobs.queue import huey
from dripstone.jobs.ticker import on_tick


@huey.task(name="dispatch_deliveries")  # type: ignore[untyped-decorator]
def dispatch_deliveries() -> None:
    service.dispatch_due(db.database())


@on_tick
def dispatch_when_due(database: Database) -> None:
    """Queue a dispatcher when deliveries are due and none is waiting for a worker already;
    over a few ticks every free worker joins in, and each returns after its time budget."""
    service.recover_deliveries(database)
    if service.has_due_deliveries(database) and huey.pending_count() == 0:
        dispatch_deliveries()
