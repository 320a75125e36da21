"""A drip campaign survives `dripstone serve` being killed: a real server runs a two-email
campaign for a few thousand subscribers, is SIGKILLed in the middle, and is started again.
With the default leases, the last email arrives within the recovery promise of the restart
(plus the sending itself and the campaign's delay). Every subscriber gets both emails, in
order, with the delay between them honoured; the only copies twice are deliveries in the
documented window, with the same Message-ID."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.delivery.models import Delivery
from dripstone.drips import campaigns, lifecycle
from dripstone.drips.models import DripEnrollment
from dripstone.jobs.queue import configure_queue
from dripstone.mailings import schemas as mailing_schemas
from dripstone.mailings import service as mailings
from dripstone.subscribers import lists, schemas, service
from tests.conftest import SECRET
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, node
from tests.mailings.helpers import parsed
from tests.processes import (
    RECOVERY_SECONDS,
    Processes,
    TakenBack,
    queue_url,
    rate,
    recovery_budget,
    wait_until,
)

SUBSCRIBERS = 1000
DELAY_SECONDS = 3
pytestmark = pytest.mark.slow


def test_a_campaign_killed_mid_way_sends_every_step_once_in_order(
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
        ids = {}
        for subject in ("First", "Second"):
            fields = mailing_schemas.MailingFields.model_validate(
                {"subject": subject, "html_part": "<p>Hi</p>", "from": "news@example.com"}
            )
            ids[subject] = mailings.save_mailing(scope, fields, None).uuid
        nodes = chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=ids["First"]),
            node("d", "delay", amount=DELAY_SECONDS, unit="seconds"),
            node("b", "email", campaign_mailing_id=ids["Second"]),
        )
        campaign = campaigns.create_campaign(
            scope, campaigns.CampaignFields("Welcome", everyone, "existing", nodes)
        )
        lifecycle.start(scope, campaign)

    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(settings.data_dir),
        "DRIPSTONE_DATABASE_URL": database_url,
        "DRIPSTONE_QUEUE_URL": queue_url(settings, database_url),
        "DRIPSTONE_SECRET_KEY": SECRET,
        "DRIPSTONE_SMTP_URL": smtp_server.url,
        "DRIPSTONE_SMTP_MAX_PER_SECOND": "1000",
        "DRIPSTONE_DELIVERY_BATCH_SIZE": "25",
    }
    processes = Processes(env, tmp_path)
    try:
        first = processes.start("serve")
        wait_until(lambda: len(smtp_server.messages) >= SUBSCRIBERS // 2, "half the emails")
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = smtp_server.messages[:]
        received_at_kill = len(before)
        with database.read_sessions() as session:
            in_doubt = set(
                session.execute(
                    select(Delivery.email, Delivery.drip_node_id).where(
                        Delivery.status == "sending"
                    )
                ).all()
            )
        assert received_at_kill < 2 * SUBSCRIBERS

        per_second = rate(received_at_kill - 1, before[-1].received_at - before[0].received_at)
        budget = recovery_budget(2 * SUBSCRIBERS - received_at_kill, per_second, DELAY_SECONDS)
        taken_back = TakenBack(database)
        restarted_at = time.monotonic()
        processes.start("serve")

        def finished() -> bool:
            taken_back.check()
            with database.read_sessions() as session:
                left = session.scalar(
                    select(func.count())
                    .select_from(DripEnrollment)
                    .where(DripEnrollment.state != "completed")
                )
                unsent = session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.status != "delivered")
                )
            return left == 0 and unsent == 0

        wait_until(finished, "the campaign's end", budget + 30)
    finally:
        processes.stop_all()

    copies: dict[tuple[str, str], list[str]] = defaultdict(list)
    for message in smtp_server.messages:
        email = parsed(message)
        copies[(message.rcpt_tos[0], str(email["Subject"]))].append(str(email["Message-ID"]))
    expected = {(f"s{i}@example.com", s) for i in range(SUBSCRIBERS) for s in ("First", "Second")}
    assert set(copies) == expected
    last = max(m.received_at for m in smtp_server.messages) - restarted_at
    assert taken_back.at is not None
    recovered = taken_back.at - restarted_at
    print(f"taken back {recovered:.1f}s, last message {last:.1f}s (budget {budget:.1f}s)")
    assert recovered < RECOVERY_SECONDS
    assert last < budget, f"the last message came {last:.1f}s after the restart (> {budget:.1f}s)"
    twice = {key for key, message_ids in copies.items() if len(message_ids) > 1}
    node_of = {"First": "a", "Second": "b"}
    assert {(email, node_of[subject]) for email, subject in twice} <= in_doubt
    assert all(len(set(copies[key])) == 1 for key in twice)  # the same Message-ID
    arrivals: dict[str, list[str]] = defaultdict(list)
    for message in smtp_server.messages:
        subject = str(parsed(message)["Subject"])
        if subject not in arrivals[message.rcpt_tos[0]]:
            arrivals[message.rcpt_tos[0]].append(subject)
    assert {tuple(order) for order in arrivals.values()} == {("First", "Second")}
    with database.read_sessions() as session:
        steps = session.execute(
            select(Delivery.drip_enrollment_id, Delivery.drip_node_id, Delivery.created_at)
        ).all()
    queued: dict[int | None, dict[str | None, object]] = defaultdict(dict)
    for enrollment_id, node_id, created_at in steps:
        queued[enrollment_id][node_id] = created_at
    assert len(queued) == SUBSCRIBERS
    for per_node in queued.values():
        gap = per_node["b"] - per_node["a"]  # type: ignore[operator]
        assert gap >= timedelta(seconds=DELAY_SECONDS)
