"""A job survives its process being killed: real `dripstone worker` / `dripstone serve`
processes, a real queue, SIGKILL in the middle, then recovery."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dripstone import clock, db
from dripstone.accounts import service as accounts
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.jobs import service as jobs
from dripstone.jobs.models import Job
from dripstone.jobs.queue import configure_queue
from dripstone.subscribers import schemas, service
from dripstone.subscribers.models import Subscriber
from tests.conftest import SECRET
from tests.processes import Processes, queue_url, wait_until

SUBSCRIBERS = 4000
BATCH = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(settings.data_dir),
        "DRIPSTONE_DATABASE_URL": database_url,
        "DRIPSTONE_QUEUE_URL": queue_url(settings, database_url),
        "DRIPSTONE_SECRET_KEY": SECRET,
        "DRIPSTONE_JOB_BATCH_SIZE": str(BATCH),
    }
    running = Processes(env, tmp_path)
    yield running
    running.stop_all()


def _wait_for(
    database: db.Database, jid: str, condition: Callable[[Job], bool], timeout: float = 120
) -> Job:
    """Poll the job record until `condition` holds (another process is doing the work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.read_sessions() as session:
            job = session.get(Job, jid)
            assert job is not None
            if condition(job):
                return job
        time.sleep(0.02)
    raise AssertionError(f"job {jid}: the awaited state did not come within {timeout}s")


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_job_killed_mid_run_finishes_after_restart_with_every_subscriber_done_once(
    command: str,
    settings: Settings,
    database_url: str,
    database: db.Database,
    processes: Processes,
    manual_clock: clock.ManualClock,
) -> None:
    configure_queue(queue_url(settings, database_url))
    manual_clock.advance(timedelta(days=365 * 10))  # past the subprocesses' real clock
    with database.transaction() as session:
        account, _ = accounts.create_account(session, "acme")
        scope = AccountScope(session, account.id)
        rows = [schemas.BulkSubscriberRow(email=f"s{i}@example.com") for i in range(SUBSCRIBERS)]
        service.bulk_create(scope, rows, None)
        everyone = service.default_list(scope).uuid
    with database.transaction() as session:
        request = service.BulkSelectionRequest(everyone, "*", [], [])
        jid = service.start_bulk_change(
            AccountScope(session, account.id), "unsubscribe", request, dynamic=False
        ).id

    first = processes.start(command)
    _wait_for(database, jid, lambda job: job.done >= 5 * BATCH)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = _wait_for(database, jid, lambda job: True)
    assert killed.state == "running"
    assert 0 < killed.done < SUBSCRIBERS

    manual_clock.advance(timedelta(seconds=jobs._limits.lease_seconds + 1))
    # PostgreSQL frees the killed worker's row locks once it notices the connection is gone;
    # until then the sweep skips the locked job.
    wait_until(lambda: jobs.recover_jobs(database) == 1, "the sweep taking the job back", 30)
    processes.start(command)
    job = _wait_for(database, jid, lambda job: job.state in ("succeeded", "failed"))

    assert (job.state, job.error) == ("succeeded", None)
    assert job.total == job.done == SUBSCRIBERS
    assert job.attempts == 2
    with database.read_sessions() as session:
        still_in = session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.opted_out_on.is_(None))
        )
    assert still_in == 0
