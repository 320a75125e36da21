"""Job records: create, claim with a lease, advance in batches, finish, recover.

A running job's lease (`lease_seconds`, 20 by default) is renewed as each batch commits, and
while a batch runs the job's row is locked (SQLite: the database is), so no sweep can take a
job from a live worker, however long a batch takes. A worker that dies stops renewing: the
sweep on the tick of any process re-queues its job once the lease has run out."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope, Database, UTCDateTime, after_commit
from dripstone.jobs.models import Job, JobState
from dripstone.jobs.queue import huey

log = logging.getLogger(__name__)

ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


class JobError(Exception):
    """A job cannot go on; its message is shown to the user in the job record."""


@dataclass(frozen=True)
class StepResult:
    """What one batch of a job did. `cursor` is where the next batch starts.

    With `wait_seconds`, the job has nothing to do until then (it waits on work that others
    do, such as deliveries): it stays running, gives up its worker and is resumed by the tick.
    """

    done: int
    failed: int
    cursor: int
    finished: bool
    wait_seconds: float = 0.0
    # The job cannot go on: it fails with this message, in the same transaction as the step.
    failed_with: str | None = None


Step = Callable[[Session, Job, int], StepResult]
_steps: dict[str, Step] = {}


@dataclass(frozen=True)
class JobLimits:
    batch_size: int = 1000
    lease_seconds: int = 20
    max_attempts: int = 5


_limits = JobLimits()


def set_limits(limits: JobLimits) -> None:
    """Apply the configured batch size, lease and attempts to every job of this process."""
    global _limits
    _limits = limits


def job_step(kind: str) -> Callable[[Step], Step]:
    """Register the function that runs one batch of jobs of `kind`."""

    def register(step: Step) -> Step:
        _steps[kind] = step
        return step

    return register


def create_job(
    session: Session,
    account_id: int,
    kind: str,
    payload: dict[str, Any],
    *,
    total: int = 0,
    not_before: datetime | None = None,
) -> Job:
    """Record a queued job; it is enqueued once the surrounding transaction commits, or
    by the tick once `not_before` has come."""
    if kind not in _steps:
        raise ValueError(f"no job step registered for {kind!r}")
    now = clock.now()
    later = not_before is not None and not_before > now
    job = Job(
        account_id=account_id,
        kind=kind,
        payload=payload,
        total=total,
        state=JobState.QUEUED,
        not_before=not_before if later else None,
        lease_expires_at=max(now, not_before or now) + timedelta(seconds=_limits.lease_seconds),
    )
    session.add(job)
    session.flush()
    jid = job.id
    if not later:
        after_commit(session, lambda: enqueue(jid))
    return job


def cancel_job(session: Session, job: Job) -> bool:
    """Cancel `job` if no worker has started it; returns whether it was cancelled."""
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == JobState.QUEUED, Job.started_at.is_(None))
        .values(state=JobState.CANCELLED, finished_at=clock.now(), lease_expires_at=None)
    )
    session.expire(job)
    return bool(cancelled.rowcount == 1)  # type: ignore[attr-defined]


# Puts a job on the queue to run after a delay: the queue task is defined in tasks.py, which
# imports this module, so it registers itself here rather than being imported.
QueueJob = Callable[[str, float], None]
_queue_job: QueueJob | None = None


def queue_jobs_with(queue_job: QueueJob) -> QueueJob:
    """Register how a job id is put on the queue (done once, by jobs/tasks.py)."""
    global _queue_job
    _queue_job = queue_job
    return queue_job


def enqueue(jid: str, delay_seconds: float = 0) -> None:
    """Put `jid` on the queue (the record must already be committed)."""
    if _queue_job is None:
        raise RuntimeError("no job queue registered: import dripstone.tasks first")
    _queue_job(jid, delay_seconds)


def get_job(scope: AccountScope, jid: str) -> Job | None:
    return scope.session.scalars(scope.select(Job).where(Job.id == jid)).one_or_none()


def recent_jobs(scope: AccountScope, kind: str, limit: int = 10) -> list[Job]:
    """The account's latest jobs of one kind, newest first."""
    stmt = (
        scope.select(Job)
        .where(Job.kind == kind)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return list(scope.session.scalars(stmt))


def execute_job(db: Database, jid: str) -> None:
    """Run job `jid` to its end, one committed batch at a time, unless another worker holds it."""
    limits = _limits
    token = _claim(db, jid, limits)
    if token is None:
        return
    try:
        while not _run_one_batch(db, jid, token, limits):
            pass
    except JobError as exc:
        _finish(db, jid, token, JobState.FAILED, str(exc))
    except Exception as exc:
        log.exception("job %s failed", jid)
        _retry_or_fail(db, jid, token, limits, exc)


def _unheld() -> Any:
    """SQL: a job no worker holds, queued or waiting between batches."""
    return or_(
        Job.state == JobState.QUEUED,
        and_(Job.state == JobState.RUNNING, Job.lease_token.is_(None)),
    )


def _claim(db: Database, jid: str, limits: JobLimits) -> str | None:
    now = clock.now()
    token = str(uuid.uuid4())
    with db.transaction() as session:
        claimed = session.execute(
            update(Job)
            .where(
                Job.id == jid,
                _unheld(),
                or_(Job.not_before.is_(None), Job.not_before <= now),
            )
            .values(
                state=JobState.RUNNING,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=limits.lease_seconds),
                not_before=None,
                # Resuming a waiting job is not a new attempt at it.
                attempts=case((Job.state == JobState.QUEUED, Job.attempts + 1), else_=Job.attempts),
                started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
    return token


def _run_one_batch(db: Database, jid: str, token: str, limits: JobLimits) -> bool:
    """One batch in one transaction with the job's progress; returns True when finished."""
    with db.transaction() as session:
        job = _held(session, jid, token)
        if job is None:
            log.warning("job %s: lease lost to another worker, stopping", jid)
            return True
        result = _steps[job.kind](session, job, limits.batch_size)
        # From the batch's end: only the time to the next batch counts against the lease.
        job.lease_expires_at = clock.now() + timedelta(seconds=limits.lease_seconds)
        job.done += result.done
        job.failed += result.failed
        job.cursor = result.cursor
        if result.failed_with is not None:
            job.state = JobState.FAILED
            job.error = result.failed_with
            job.finished_at = clock.now()
            job.lease_token = None
            job.lease_expires_at = None
            return True
        if result.finished:
            job.state = JobState.SUCCEEDED
            job.finished_at = clock.now()
            job.lease_token = None
            job.lease_expires_at = None
        elif result.wait_seconds > 0:
            job.lease_token = None
            job.not_before = clock.now() + timedelta(seconds=result.wait_seconds)
            job.lease_expires_at = job.not_before + timedelta(seconds=limits.lease_seconds)
            return True
        return result.finished


def _held(session: Session, jid: str, token: str) -> Job | None:
    stmt = select(Job).where(Job.id == jid, Job.lease_token == token, Job.state == JobState.RUNNING)
    return session.scalars(stmt.with_for_update()).one_or_none()


def _finish(db: Database, jid: str, token: str, state: str, error: str | None) -> None:
    with db.transaction() as session:
        job = _held(session, jid, token)
        if job is not None:
            job.state = state
            job.error = error
            job.finished_at = clock.now()
            job.lease_token = None
            job.lease_expires_at = None


def _retry_or_fail(db: Database, jid: str, token: str, limits: JobLimits, exc: Exception) -> None:
    with db.transaction() as session:
        job = _held(session, jid, token)
        if job is None:
            return
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if job.attempts >= limits.max_attempts:
            job.state = JobState.FAILED
            job.error = f"gave up after {job.attempts} attempts; last error: {reason}"
            job.finished_at = clock.now()
            job.lease_token = None
            job.lease_expires_at = None
            return
        delay = min(2**job.attempts, 300)
        job.state = JobState.QUEUED
        job.error = f"attempt {job.attempts} failed, retrying in {delay}s: {reason}"
        job.lease_token = None
        job.lease_expires_at = clock.now() + timedelta(seconds=delay + limits.lease_seconds)
        after_commit(session, lambda: enqueue(jid, delay))


def recover_jobs(db: Database) -> int:
    """Re-queue jobs whose lease ran out (their worker died, or their queue entry was lost);
    fail those that have used up their attempts. Returns how many jobs it touched.

    A job no worker holds (queued, or waiting between batches) is re-queued only when the
    queue is empty: while the queue has tasks, the job is most likely among them, and adding
    a copy of every such job each lease would flood a busy queue."""
    now, limits = clock.now(), _limits
    stale = and_(Job.state.in_(ACTIVE_STATES), Job.lease_expires_at < now)
    if not _any_job(db, stale):
        return 0
    if huey.pending_count() > 0:
        stale = and_(stale, Job.lease_token.is_not(None))
        if not _any_job(db, stale):
            return 0
    with db.transaction() as session:
        stale_jobs = session.scalars(
            select(Job).where(stale).with_for_update(skip_locked=True)
        ).all()
        for job in stale_jobs:
            if (
                job.state == JobState.RUNNING and job.lease_token is None
            ):  # waiting; its tick was missed
                job.not_before = None
                job.lease_expires_at = now + timedelta(seconds=limits.lease_seconds)
                after_commit(session, lambda jid=job.id: enqueue(jid))  # type: ignore[misc]
                continue
            if job.state == JobState.RUNNING and job.attempts >= limits.max_attempts:
                job.state = JobState.FAILED
                job.error = f"the worker running this job stopped {job.attempts} times; giving up"
                job.finished_at = now
                job.lease_token = None
                job.lease_expires_at = None
                continue
            job.state = JobState.QUEUED
            job.lease_token = None
            job.lease_expires_at = now + timedelta(seconds=limits.lease_seconds)
            requeued = job.id
            after_commit(session, lambda jid=requeued: enqueue(jid))  # type: ignore[misc]
        return len(stale_jobs)


def _any_job(db: Database, condition: Any) -> bool:
    """Whether a job matches `condition` (most ticks find none: no write lock for that)."""
    with db.reader.connect() as connection:
        return connection.execute(select(Job.id).where(condition).limit(1)).first() is not None


def resume_due_jobs(db: Database) -> int:
    """Enqueue the jobs whose time has come: scheduled ones, and running ones that waited."""
    now, limits = clock.now(), _limits
    waiting = _unheld()
    if not _any_job(db, and_(waiting, Job.not_before <= now)):
        return 0
    with db.transaction() as session:
        due = session.scalars(
            select(Job).where(waiting, Job.not_before <= now).with_for_update(skip_locked=True)
        ).all()
        for job in due:
            job.not_before = None
            job.lease_expires_at = now + timedelta(seconds=limits.lease_seconds)
            after_commit(session, lambda jid=job.id: enqueue(jid))  # type: ignore[misc]
        return len(due)
