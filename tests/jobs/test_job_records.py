"""Job records: claims, leases, retries and the recovery sweep, on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import dripstone.tasks  # noqa: F401  (registers every tick)
from dripstone import clock, db
from dripstone.accounts import service as accounts
from dripstone.jobs import service as jobs
from dripstone.jobs.models import Job
from dripstone.jobs.queue import configure_queue, huey, run_tasks_inline
from dripstone.jobs.ticker import tick

EXPLODING = "test_explodes"
COUNTING = "test_counts_to_ten"
SLOW = "test_takes_longer_than_a_lease_per_batch"
_slow_clock: list[clock.ManualClock] = []


@jobs.job_step(EXPLODING)
def _explode(session: Session, job: Job, batch_size: int) -> jobs.StepResult:
    raise RuntimeError("relay unreachable")


@jobs.job_step(COUNTING)
def _count(session: Session, job: Job, batch_size: int) -> jobs.StepResult:
    step = min(3, 10 - job.cursor)
    return jobs.StepResult(
        done=step, failed=0, cursor=job.cursor + step, finished=job.cursor + step >= 10
    )


@jobs.job_step(SLOW)
def _slow(session: Session, job: Job, batch_size: int) -> jobs.StepResult:
    _slow_clock[0].advance(timedelta(seconds=jobs._limits.lease_seconds + 5))
    return jobs.StepResult(done=1, failed=0, cursor=job.cursor + 1, finished=job.cursor >= 2)


@pytest.fixture
def account_id(database: db.Database) -> int:
    with database.transaction() as session:
        account, _ = accounts.create_account(session, "acme")
    return account.id


class HeldQueue:
    """A real Huey queue (in memory) with no consumer: tasks wait there, so a test can play
    the worker, or the worker that died, itself."""

    def jids(self) -> list[str]:
        return [task.args[0] for task in huey.pending()]

    def clear(self) -> None:
        huey.flush()


@pytest.fixture
def queue_held() -> Iterator[HeldQueue]:
    configure_queue("memory://")
    yield HeldQueue()
    huey.flush()


def _new_job(database: db.Database, account_id: int, kind: str) -> str:
    with database.transaction() as session:
        return jobs.create_job(session, account_id, kind, {}, total=10).id


def _job(database: db.Database, jid: str) -> Job:
    with database.sessions() as session:
        job = session.get(Job, jid)
        assert job is not None
        return job


def test_a_job_runs_in_batches_to_success_and_a_second_run_does_nothing(
    database: db.Database, account_id: int, queue_held: HeldQueue
) -> None:
    jid = _new_job(database, account_id, COUNTING)
    assert queue_held.jids() == [jid]
    jobs.execute_job(database, jid)
    jobs.execute_job(database, jid)  # a redelivered task
    job = _job(database, jid)
    assert (job.state, job.done, job.cursor, job.attempts) == ("succeeded", 10, 10, 1)
    assert job.started_at is not None
    assert job.finished_at is not None


def test_a_job_is_not_enqueued_when_its_transaction_rolls_back(
    database: db.Database, account_id: int, queue_held: HeldQueue
) -> None:
    def fail_after_recording_a_job() -> None:
        with database.transaction() as session:
            jobs.create_job(session, account_id, COUNTING, {})
            raise RuntimeError("request failed after the job was recorded")

    with pytest.raises(RuntimeError):
        fail_after_recording_a_job()
    assert queue_held.jids() == []
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_job_whose_worker_died_is_requeued_after_its_lease_and_then_finishes(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    jid = _new_job(database, account_id, COUNTING)
    dead_token = jobs._claim(database, jid, jobs._limits)  # a worker took it, then died
    assert dead_token is not None
    queue_held.clear()

    assert jobs.recover_jobs(database) == 0  # lease still running: leave it alone
    assert _job(database, jid).state == "running"

    manual_clock.advance(timedelta(seconds=jobs._limits.lease_seconds + 1))
    assert jobs.recover_jobs(database) == 1
    assert queue_held.jids() == [jid]
    assert _job(database, jid).state == "queued"

    jobs.execute_job(database, jid)
    job = _job(database, jid)
    assert (job.state, job.done, job.attempts) == ("succeeded", 10, 2)


def test_the_tick_requeues_a_job_whose_worker_was_killed_within_21_seconds(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    jid = _new_job(database, account_id, COUNTING)
    assert jobs._claim(database, jid, jobs._limits) is not None  # then its process was killed
    queue_held.clear()

    waited = 0
    while not queue_held.jids() and waited < 30:
        manual_clock.advance(timedelta(seconds=1))
        tick(database)
        waited += 1

    assert queue_held.jids() == [jid]
    assert waited <= 21
    jobs.execute_job(database, jid)
    job = _job(database, jid)
    assert (job.state, job.done, job.attempts) == ("succeeded", 10, 2)


def test_a_queued_job_past_its_lease_is_queued_again_only_once_the_queue_has_drained(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    jid = _new_job(database, account_id, COUNTING)  # behind a long queue
    manual_clock.advance(timedelta(seconds=jobs._limits.lease_seconds + 1))

    assert jobs.recover_jobs(database) == 0
    assert queue_held.jids() == [jid]  # no second copy while it is still in the queue

    queue_held.clear()  # its queue entry was lost
    assert jobs.recover_jobs(database) == 1
    assert queue_held.jids() == [jid]


def test_a_batch_longer_than_the_lease_keeps_the_job_with_its_worker(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    _slow_clock[:] = [manual_clock]
    jid = _new_job(database, account_id, SLOW)
    token = jobs._claim(database, jid, jobs._limits)
    assert token is not None
    queue_held.clear()

    finished = False
    while not finished:
        finished = jobs._run_one_batch(database, jid, token, jobs._limits)
        assert jobs.recover_jobs(database) == 0  # another process's sweep, between batches

    job = _job(database, jid)
    assert (job.state, job.done, job.attempts) == ("succeeded", 3, 1)
    assert queue_held.jids() == []


def test_a_worker_that_lost_its_lease_cannot_write_progress(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    jid = _new_job(database, account_id, COUNTING)
    stale_token = jobs._claim(database, jid, jobs._limits)
    assert stale_token is not None
    manual_clock.advance(timedelta(seconds=jobs._limits.lease_seconds + 1))
    jobs.recover_jobs(database)
    fresh_token = jobs._claim(database, jid, jobs._limits)
    assert fresh_token is not None

    finished = jobs._run_one_batch(database, jid, stale_token, jobs._limits)
    assert finished  # the stale worker stops
    assert _job(database, jid).cursor == 0  # and wrote nothing


def test_a_failing_job_is_retried_then_failed_with_its_reason(
    database: db.Database, account_id: int, queue_held: HeldQueue
) -> None:
    jid = _new_job(database, account_id, EXPLODING)
    jobs.execute_job(database, jid)
    job = _job(database, jid)
    assert job.state == "queued"
    assert job.error is not None
    assert "relay unreachable" in job.error
    for _ in range(jobs._limits.max_attempts - 1):
        jobs.execute_job(database, jid)
    job = _job(database, jid)
    assert job.state == "failed"
    assert job.error is not None
    assert f"gave up after {jobs._limits.max_attempts} attempts" in job.error
    assert "RuntimeError: relay unreachable" in job.error


def test_a_job_whose_worker_keeps_dying_is_failed_with_a_reason(
    database: db.Database, account_id: int, queue_held: HeldQueue, manual_clock: clock.ManualClock
) -> None:
    jid = _new_job(database, account_id, COUNTING)
    for _ in range(jobs._limits.max_attempts):
        assert jobs._claim(database, jid, jobs._limits) is not None
        manual_clock.advance(timedelta(seconds=jobs._limits.lease_seconds + 1))
        jobs.recover_jobs(database)
    job = _job(database, jid)
    assert job.state == "failed"
    assert job.error is not None
    assert "stopped 5 times" in job.error


def test_the_queued_task_runs_the_job(database: db.Database, account_id: int) -> None:
    run_tasks_inline()
    jid = _new_job(database, account_id, COUNTING)
    job = _job(database, jid)
    assert (job.state, job.done) == ("succeeded", 10)
