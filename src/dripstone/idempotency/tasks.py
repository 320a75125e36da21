"""Huey tasks of idempotency keys: the hourly purge of expired keys."""

from __future__ import annotations

from huey import crontab

from dripstone import db
from dripstone.idempotency import service
from dripstone.jobs.queue import huey


@huey.periodic_task(crontab(minute="41"), name="purge_idempotency_keys")  # type: ignore[untyped-decorator]
def purge_idempotency_keys() -> None:
    service.purge_expired(db.database())
