"""A send survives its worker being killed: a real `dripstone worker` sends to a real SMTP server,
is SIGKILLed in the middle, and a new worker finishes the send, with the default leases,
within the recovery promise of the restart. Every subscriber gets the message once; the only
copies twice are the deliveries the killed worker had handed to the server without recording
the reply (the documented window), sent again with the same Message-ID."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.delivery.models import Delivery
from dripstone.jobs.models import Job
from dripstone.jobs.queue import configure_queue
from dripstone.mailings import schemas as mailing_schemas
from dripstone.mailings import service as mailings
from dripstone.subscribers import lists, schemas, service
from tests.conftest import SECRET
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import HTML, parsed
from tests.processes import (
    RECOVERY_SECONDS,
    Processes,
    TakenBack,
    queue_url,
    rate,
    recovery_budget,
    wait_until,
)

SUBSCRIBERS = 600
pytestmark = pytest.mark.slow


def job_state(database: db.Database, jid: str) -> str:
    with database.read_sessions() as session:
        job = session.get(Job, jid)
        assert job is not None
        return job.state


def test_a_send_killed_mid_way_reaches_every_subscriber_once(
    settings: Settings,
    database_url: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    configure_queue(queue_url(settings, database_url))
    with database.transaction() as session:
        account, _ = accounts.create_account(session, "acme")
        scope = AccountScope(session, account.id)
        rows = [schemas.BulkSubscriberRow(email=f"s{i}@example.com") for i in range(SUBSCRIBERS)]
        service.bulk_create(scope, rows, None)
        everyone = lists.default_list(scope).uuid
        fields = mailing_schemas.MailingFields.model_validate(
            {"subject": "Hello {{ email }}", "html_part": HTML, "from": "news@example.com"}
        )
        mailing = mailings.save_mailing(scope, fields, None)
        request = mailings.SendRequest(
            sender_email="owner@example.com",
            subscription_list_id=everyone,
            dynamic_list_id=None,
            recipient_emails=[],
            customer_name=None,
            from_email=None,
            from_name=None,
            subject=None,
        )
        jid = mailings.start_send(scope, mailing, request).job_id

    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(settings.data_dir),
        "DRIPSTONE_DATABASE_URL": database_url,
        "DRIPSTONE_QUEUE_URL": queue_url(settings, database_url),
        "DRIPSTONE_SECRET_KEY": SECRET,
        "DRIPSTONE_SMTP_URL": smtp_server.url,
        "DRIPSTONE_SMTP_MAX_PER_SECOND": "500",
        "DRIPSTONE_DELIVERY_BATCH_SIZE": "10",
        "DRIPSTONE_JOB_BATCH_SIZE": "100",
    }
    processes = Processes(env, tmp_path)
    try:
        first = processes.start("worker")
        wait_until(lambda: len(smtp_server.messages) >= 100, "100 messages")
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = smtp_server.messages[:]
        received_at_kill = len(before)
        with database.read_sessions() as session:
            in_doubt = set(
                session.scalars(select(Delivery.email).where(Delivery.status == "sending"))
            )
        assert 100 <= received_at_kill < SUBSCRIBERS
        assert job_state(database, jid) == "running"

        per_second = rate(received_at_kill - 1, before[-1].received_at - before[0].received_at)
        budget = recovery_budget(SUBSCRIBERS - received_at_kill, per_second)
        taken_back = TakenBack(database)
        restarted_at = time.monotonic()
        processes.start("worker")

        def finished() -> bool:
            taken_back.check()
            return job_state(database, jid) == "succeeded"

        wait_until(finished, "the send's end", budget + 30)
    finally:
        processes.stop_all()

    copies: dict[str, list[str]] = defaultdict(list)
    for message in smtp_server.messages:
        (recipient,) = message.rcpt_tos
        copies[recipient].append(str(parsed(message)["Message-ID"]))
    assert set(copies) == {f"s{i}@example.com" for i in range(SUBSCRIBERS)}
    last = max(m.received_at for m in smtp_server.messages) - restarted_at
    assert taken_back.at is not None
    recovered = taken_back.at - restarted_at
    print(f"taken back {recovered:.1f}s, last message {last:.1f}s (budget {budget:.1f}s)")
    assert recovered < RECOVERY_SECONDS
    assert last < budget, f"the last message came {last:.1f}s after the restart (> {budget:.1f}s)"
    twice = {address for address, ids in copies.items() if len(ids) > 1}
    assert twice <= in_doubt, "only deliveries in the window may arrive twice"
    assert all(len(set(copies[address])) == 1 for address in twice)  # same Message-ID
    assert all(len(ids) <= 2 for ids in copies.values())
    with database.read_sessions() as session:
        statuses = set(session.scalars(select(Delivery.status)))
        job = session.get(Job, jid)
        assert job is not None
    assert statuses == {"delivered"}
    assert (job.total, job.done, job.failed) == (SUBSCRIBERS, SUBSCRIBERS, 0)
