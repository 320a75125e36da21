"""Huey tasks of the jobs domain: run a job, and the periodic recovery sweep."""

from __future__ import annotations

from huey import crontab

from dripstone import db
from dripstone.jobs import service
from dripstone.jobs.queue import huey


@huey.task(name="run_job")  # type: ignore[untyped-decorator]
def run_job(jid: str) -> None:
    service.execute_job(db.database(), jid)


@huey.periodic_task(crontab(minute="*"), name="recover_jobs")  # type: ignore[untyped-decorator]
def recover_jobs() -> None:
    service.recover_jobs(db.database())
