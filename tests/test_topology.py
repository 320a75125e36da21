"""The scaled-out topology, run rather than described: two `dripstone serve` and two
`dripstone worker` processes share one PostgreSQL database and one queue (Redis, and again
PostgreSQL). A 10,000-message send and a 2,000-subscriber two-email drip, started through the
two servers, run through all four while one worker is SIGKILLed and another started.

Every message arrives once; the only second copies are deliveries that were in the
documented window at the kill (handed to the relay, reply not recorded), sent again with the
same Message-ID. Each subscriber's drip emails arrive in the order of their steps. And the
last message arrives within the recovery time of the kill plus the work that was left (see
`budget`): what the dead worker had claimed was picked up again in time."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.delivery.models import Delivery, DeliveryStatus
from dripstone.drips import campaigns, enrollment
from dripstone.drips.models import DripEnrollment, EnrollmentState
from dripstone.jobs.models import Job, JobState
from dripstone.mailings import schemas as mailing_schemas
from dripstone.mailings import service as mailings
from dripstone.subscribers import lists, schemas, service
from tests.conftest import POSTGRES_URL, SECRET
from tests.delivery.smtp_server import ReceivedMessage, SmtpTestServer, smtp_server
from tests.drips.helpers import two_emails
from tests.processes import Processes, flush_queue, queue_url, wait_until

SUBSCRIBERS = 10_000
DRIP_SUBSCRIBERS = 2_000  # the first of them, on the list the drip runs on
DELAY_SECONDS = 3  # between the drip's two emails
SEND, FIRST, SECOND = "Hello", "First", "Second"
STEPS = (FIRST, SECOND)
EXPECTED = SUBSCRIBERS + len(STEPS) * DRIP_SUBSCRIBERS
KILL_AFTER = EXPECTED // 4  # messages received when the worker is killed
# With default settings, work a SIGKILLed process had claimed (delivery rows, jobs) is taken
# up again within this.
RECOVERY_SECONDS = 30
TICK_SECONDS = 1  # due work is noticed once a second
pytestmark = pytest.mark.slow
__all__ = ["smtp_server"]


@dataclass(frozen=True)
class Queue:
    url: str
    name: str


@pytest.fixture
def pg_database(database: db.Database) -> db.Database:
    if not POSTGRES_URL:
        pytest.skip("the scaled-out topology runs on PostgreSQL: set DRIPSTONE_TEST_POSTGRES_URL")
    if database.is_sqlite:
        pytest.skip("the scaled-out topology runs on PostgreSQL; SQLite is the embedded mode")
    return database


@pytest.fixture(params=["redis", "postgresql"])
def queue(
    request: pytest.FixtureRequest, pg_database: db.Database, settings: Settings
) -> Iterator[Queue]:
    """The shared queue, under a name of this test run's own, emptied afterwards."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = queue_url(settings, settings.resolved_database_url)
    shared = Queue(url, f"topology_{uuid.uuid4().hex[:12]}")
    yield shared
    flush_queue(shared.url, shared.name)
    if request.param == "redis":
        assert list(redis.Redis.from_url(url).scan_iter(f"*{shared.name}*")) == []


@dataclass(frozen=True)
class Work:
    key: str
    send_body: dict[str, Any]
    drip_id: str


def create_work(database: db.Database) -> Work:
    """The account, its subscribers, the mailing to send and the drip (a draft): everything
    but the two starts, which go through the servers."""
    with database.transaction() as session:
        account, key = accounts.create_account(session, "acme")
        scope = AccountScope(session, account.id)
        rows = [schemas.BulkSubscriberRow(email=f"s{i}@example.com") for i in range(SUBSCRIBERS)]
        service.bulk_create(scope, rows, None)
        welcome = lists.create_list(scope, "Welcome").uuid
        service.bulk_create(scope, rows[:DRIP_SUBSCRIBERS], welcome)
        ids = {}
        for subject in (SEND, *STEPS):
            fields = mailing_schemas.MailingFields.model_validate(
                {"subject": subject, "html_part": "<p>Hi</p>", "from": "news@example.com"}
            )
            ids[subject] = mailings.save_mailing(scope, fields, None).uuid
        nodes = two_emails(ids[FIRST], ids[SECOND], amount=DELAY_SECONDS, unit="seconds")
        campaign = campaigns.create_campaign(
            scope, campaigns.CampaignFields("Welcome", welcome, "existing", nodes)
        )
        send_body = {
            "campaign_mailing_id": ids[SEND],
            "campaign_mailing_send": {
                "sender_email": "owner@example.com",
                "subscription_list_id": lists.default_list(scope).uuid,
            },
        }
        return Work(key.secret, send_body, campaign.uuid)


def post(base: str, key: str, path: str, body: Any = None) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/orca/acme{path}",
        json=body,
        headers={"authorization": f"Token token={key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def headers(message: ReceivedMessage) -> EmailMessage:
    found = BytesHeaderParser(policy=default_policy).parsebytes(message.data)
    assert isinstance(found, EmailMessage)
    return found


def budget(remaining: int, rate: float) -> float:
    """How long after the kill the last message may arrive: the recovery time, plus the work
    itself: the messages not yet received at the kill at the pace the topology had kept until
    then, the drip's delay (a second email waits that long after a first that may be among
    the last) and one tick to notice what fell due."""
    return RECOVERY_SECONDS + remaining / rate + DELAY_SECONDS + TICK_SECONDS


def test_two_servers_and_two_workers_deliver_every_message_once_through_a_worker_kill(
    pg_database: db.Database,
    queue: Queue,
    settings: Settings,
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    database = pg_database
    began = time.monotonic()
    work = create_work(database)
    arrived: list[float] = []  # arrived[i]: when smtp_server.messages[i] came in
    smtp_server.handler.on_message = lambda: arrived.append(time.monotonic())
    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(settings.data_dir),
        "DRIPSTONE_DATABASE_URL": settings.resolved_database_url,
        "DRIPSTONE_QUEUE_URL": queue.url,
        "DRIPSTONE_QUEUE_NAME": queue.name,
        "DRIPSTONE_SECRET_KEY": SECRET,
        "DRIPSTONE_SMTP_URL": smtp_server.url,
    }
    processes = Processes(env, tmp_path)
    job_kinds = (mailings.SEND_JOB, enrollment.ENROLL_JOB)

    def counts(column: Any, *group: Any) -> dict[str, int]:
        with database.read_sessions() as session:
            found = session.execute(select(column, func.count()).group_by(*(group or (column,))))
            return {str(value): count for value, count in found.all()}

    most_held = [0]  # the most deliveries ever held by dispatchers (claimed or sending)
    sampled = [0.0]

    def holding(condition: bool) -> bool:
        """`condition`, and twice a second, how many deliveries dispatchers hold."""
        if time.monotonic() - sampled[0] > 0.5:
            sampled[0] = time.monotonic()
            by_status = counts(Delivery.status)
            held = sum(
                by_status.get(status, 0)
                for status in (DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)
            )
            most_held[0] = max(most_held[0], held)
        return condition

    def unfinished() -> dict[str, int]:
        """The deliveries and enrollments not done yet, by state: what a failure reports."""
        deliveries = counts(Delivery.status)
        left = {f"delivery {s}": n for s, n in deliveries.items() if s != DeliveryStatus.DELIVERED}
        enrollments = counts(DripEnrollment.state)
        left |= {
            f"enrollment {s}": n for s, n in enrollments.items() if s != EnrollmentState.COMPLETED
        }
        if sum(deliveries.values()) < EXPECTED:
            left["deliveries not created yet"] = EXPECTED - sum(deliveries.values())
        return left

    def jobs() -> dict[str, int]:
        return counts(Job.kind + " " + Job.state, Job.kind, Job.state)

    created = time.monotonic()
    try:
        servers = [processes.serve(), processes.serve()]
        doomed = processes.start("worker")
        processes.start("worker")
        for base in servers:
            processes.wait_answering(base)
        send_jid = post(servers[0], work.key, "/campaign_mailing_sends", work.send_body)["jid"]
        drip_jids = post(servers[1], work.key, f"/drip_campaigns/{work.drip_id}/start")["jids"]
        started = time.monotonic()
        wait_until(
            lambda: holding(len(smtp_server.messages) >= KILL_AFTER), f"{KILL_AFTER} messages"
        )
        # Each consumer thread of the four processes dispatches one batch at a time.
        their = Settings()  # what the processes read from the same environment
        assert most_held[0] <= 4 * their.queue_workers * their.delivery_batch_size

        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        processes.start("worker")
        received_at_kill = len(smtp_server.messages)
        rate = received_at_kill / (killed_at - arrived[0])
        allowed = budget(EXPECTED - received_at_kill, rate)
        with database.read_sessions() as session:
            in_doubt = set(
                session.execute(
                    select(Delivery.email, Delivery.drip_node_id).where(
                        Delivery.status == DeliveryStatus.SENDING
                    )
                ).all()
            )
        assert received_at_kill < EXPECTED

        wait_until(
            lambda: len(smtp_server.messages) >= EXPECTED and not unfinished(),
            "every message sent and every enrollment completed",
            timeout=killed_at + allowed - time.monotonic(),
            state=lambda: (
                f"killed at {received_at_kill} messages ({rate:.0f}/s until then); "
                f"received {len(smtp_server.messages)} of {EXPECTED}; unfinished {unfinished()}"
            ),
        )
        recovered_in = arrived[-1] - killed_at
        # A job the dead worker held is taken up again within the recovery time as well.
        wait_until(
            lambda: set(jobs()) <= {f"{kind} {JobState.SUCCEEDED}" for kind in job_kinds},
            "every job succeeded",
            timeout=RECOVERY_SECONDS,
            state=lambda: f"jobs {jobs()}",
        )
    finally:
        processes.stop_all()

    copies: dict[tuple[str, str], list[str]] = defaultdict(list)
    order: dict[str, list[str]] = defaultdict(list)
    for message in smtp_server.messages:
        found = headers(message)
        (recipient,) = message.rcpt_tos
        subject = str(found["Subject"])
        copies[(recipient, subject)].append(str(found["Message-ID"]))
        if subject in STEPS:
            order[recipient].append(subject)
    expected = {(f"s{i}@example.com", SEND) for i in range(SUBSCRIBERS)} | {
        (f"s{i}@example.com", step) for i in range(DRIP_SUBSCRIBERS) for step in STEPS
    }
    assert set(copies) == expected
    twice = {key for key, message_ids in copies.items() if len(message_ids) > 1}
    node_of = {SEND: None, FIRST: "a", SECOND: "b"}
    assert {(email, node_of[subject]) for email, subject in twice} <= in_doubt, (
        "only deliveries in the window may arrive twice"
    )
    assert all(len(set(copies[key])) == 1 for key in twice)  # the same Message-ID
    assert all(len(message_ids) <= 2 for message_ids in copies.values())
    assert all(steps == sorted(steps, key=STEPS.index) for steps in order.values())
    assert recovered_in < allowed
    with database.read_sessions() as session:
        records = {job.id: job for job in session.scalars(select(Job))}
    assert (records[send_jid].state, records[send_jid].done) == (
        JobState.SUCCEEDED,
        SUBSCRIBERS,
    )
    assert {records[jid].state for jid in drip_jids} == {JobState.SUCCEEDED}
    print(  # the figures, for `pytest -s`
        f"\n{queue.url.split(':')[0]} queue: data {created - began:.1f}s, processes up "
        f"{started - created:.1f}s, first message {arrived[0] - started:.1f}s after the starts; "
        f"killed at {received_at_kill} of {EXPECTED} messages ({rate:.0f}/s until then, at "
        f"most {most_held[0]} deliveries held); in the window {len(in_doubt)}, received twice "
        f"{len(twice)} {dict(Counter(subject for _, subject in twice))}; last message "
        f"{recovered_in:.1f}s after the kill (allowed {allowed:.1f}s); whole test "
        f"{time.monotonic() - began:.1f}s"
    )
