"""Huey tasks of the jobs domain: run a job, the recovery sweep, database upkeep."""

from __future__ import annotations

from huey import crontab

from dripstone import db
from dripstone.jobs import service
from dripstone.jobs.queue import huey
from dripstone.jobs.ticker import on_tick


@huey.task(name="run_job")  # type: ignore[untyped-decorator]
def run_job(jid: str) -> None:
    service.execute_job(db.database(), jid)


@service.queue_jobs_with
def _queue_job(jid: str, delay_seconds: float) -> None:
    if delay_seconds > 0:
        run_job.schedule((jid,), delay=delay_seconds)
    else:
        run_job(jid)


@huey.periodic_task(crontab(minute="17"), name="optimize_database")  # type: ignore[untyped-decorator]
def optimize_database() -> None:
    """Keep SQLite's query planner statistics fresh (PostgreSQL's autovacuum does this)."""
    database = db.database()
    if database.is_sqlite:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA optimize=0x10002")


on_tick(service.resume_due_jobs)
on_tick(service.recover_jobs)
