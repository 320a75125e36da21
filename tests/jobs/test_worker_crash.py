"""A job survives its process being killed: real `dripstone worker` / `dripstone serve`
processes, a real queue, SIGKILL in the middle, then a restart that takes the job back by
itself, with the default lease, within the recovery promise."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.jobs.models import Job
from dripstone.jobs.queue import configure_queue
from dripstone.subscribers import lists, schemas, service, subscriptions
from dripstone.subscribers.models import Subscriber
from tests.conftest import SECRET
from tests.processes import RECOVERY_SECONDS, Processes, queue_url, rate, recovery_budget

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
) -> None:
    configure_queue(queue_url(settings, database_url))
    with database.transaction() as session:
        account, _ = accounts.create_account(session, "acme")
        scope = AccountScope(session, account.id)
        rows = [schemas.BulkSubscriberRow(email=f"s{i}@example.com") for i in range(SUBSCRIBERS)]
        service.bulk_create(scope, rows, None)
        everyone = lists.default_list(scope).uuid
    with database.transaction() as session:
        request = subscriptions.BulkSelectionRequest(everyone, "*", [], [])
        jid = subscriptions.start_bulk_change(
            AccountScope(session, account.id), "unsubscribe", request, dynamic=False
        ).id

    first = processes.start(command)
    measured = _wait_for(database, jid, lambda job: job.done >= BATCH)
    measured_at = time.monotonic()
    _wait_for(database, jid, lambda job: job.done >= SUBSCRIBERS // 4)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    killed = _wait_for(database, jid, lambda job: True)
    assert killed.state == "running"
    assert 0 < killed.done < SUBSCRIBERS

    per_second = rate(killed.done - measured.done, killed_at - measured_at)
    budget = recovery_budget(SUBSCRIBERS - killed.done, per_second)
    restarted_at = time.monotonic()
    processes.start(command)
    _wait_for(database, jid, lambda job: job.attempts == 2, timeout=budget + 30)
    recovered = time.monotonic() - restarted_at
    job = _wait_for(
        database, jid, lambda job: job.state in ("succeeded", "failed"), timeout=budget + 30
    )
    took = time.monotonic() - restarted_at
    print(f"taken back {recovered:.1f}s, finished {took:.1f}s (budget {budget:.1f}s)")
    assert recovered < RECOVERY_SECONDS
    assert took < budget, f"the job finished {took:.1f}s after the restart (> {budget:.1f}s)"

    assert (job.state, job.error) == ("succeeded", None)
    assert job.total == job.done == SUBSCRIBERS
    assert job.attempts == 2
    with database.read_sessions() as session:
        still_in = session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.opted_out_on.is_(None))
        )
    assert still_in == 0
