"""The counters, kept as messages are answered and recipients open, click and unsubscribe,
against what a rebuild from the rows says, and every number of the API that reads them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from dripstone import clock, db
from dripstone.analytics import counters
from dripstone.analytics.models import DripEmailCounter, SendCounter, SubscriberCounter
from dripstone.delivery.models import Delivery
from dripstone.mailings.models import CampaignMailingSend
from dripstone.tracking import service as tracking
from dripstone.tracking.models import TrackingEvent
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, create, node, report, start
from tests.mailings.helpers import (
    add_subscribers,
    html_of,
    make_list,
    make_mailing,
    ok,
    send,
    subscriber_id,
    to,
)

Tick = Callable[[], None]

BROWSER = {
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0 Safari/537.36"
}
APPLE_PREFETCH = {"user-agent": "Mozilla/5.0"}
GMAIL_PROXY = {
    "user-agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
    "(via ggpht.com GoogleImageProxy)"
}
SCANNER = {"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}
NO_AGENT = {"user-agent": ""}


def run_for(run_tick: Tick, manual_clock: clock.ManualClock, delta: timedelta) -> None:
    end = manual_clock.now() + delta
    while manual_clock.now() < end:
        run_tick()
        run_tick()
        manual_clock.advance(timedelta(seconds=5))
    run_tick()


class Inbox:
    """The tracking URLs of the messages the SMTP server received, by recipient."""

    def __init__(self, server: SmtpTestServer, client: TestClient) -> None:
        self.server = server
        self.client = client
        self.apple = TestClient(client.app, client=("17.58.63.4", 50000))

    def html(self, address: str, subject: str) -> str:
        # The tracked copy: a preview of the same send is not tracked.
        (html,) = [
            html
            for m in to(self.server.messages, address)
            if m["Subject"] == subject and "/t/o/" in (html := html_of(m))
        ]
        return html

    def open(
        self, address: str, subject: str, headers: dict[str, str], apple: bool = False
    ) -> None:
        pixel = re.findall(
            r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', self.html(address, subject)
        )[0]
        client = self.apple if apple else self.client
        assert client.get(urlsplit(pixel).path, headers=headers).status_code == 200

    def click(self, address: str, subject: str, headers: dict[str, str], *links: int) -> None:
        found = re.findall(
            r'href="(https://mail\.example\.com/t/c/[^"]+)"', self.html(address, subject)
        )
        for index in links:
            response = self.client.get(
                urlsplit(found[index]).path, headers=headers, follow_redirects=False
            )
            assert response.status_code == 302

    def unsubscribe(self, address: str, subject: str) -> None:
        link = re.findall(
            r'href="(https://mail\.example\.com/t/u/[^"]+)"', self.html(address, subject)
        )[0]
        assert self.client.post(urlsplit(link).path).status_code == 200


def snapshot(database: db.Database) -> dict[str, Any]:
    """Every counter of every account, as the reads return them."""
    with database.read_sessions() as session:
        sends = session.execute(select(SendCounter.account_id, SendCounter.send_id)).all()
        drips = session.execute(
            select(DripEmailCounter.account_id, DripEmailCounter.drip_campaign_id).distinct()
        ).all()
        people = session.execute(
            select(SubscriberCounter.account_id, SubscriberCounter.subscriber_id)
        ).all()
        return {
            "subscribers": {
                subscriber: counters.subscriber_counts(session, account_id, [subscriber])
                for account_id, subscriber in people
            },
            "sends": {
                send_id: (
                    asdict(counters.send_totals(session, account_id, send_id)),
                    [asdict(c) for c in counters.link_clicks(session, account_id, send_id)],
                )
                for account_id, send_id in sends
            },
            "accounts": {
                account_id: asdict(counters.send_totals(session, account_id, None))
                for account_id, _ in sends
            },
            "drips": {
                campaign_id: {
                    node_id: asdict(totals)
                    for node_id, totals in counters.drip_email_totals(
                        session, account_id, campaign_id
                    ).items()
                }
                for account_id, campaign_id in drips
            },
            "days": {
                account_id: [
                    asdict(day)
                    for day in counters.daily_totals(session, account_id, 30, clock.now().date())
                ]
                for account_id, _ in sends
            },
        }


def rebuilt(database: db.Database) -> dict[str, Any]:
    with database.transaction() as session:
        counters.rebuild(session)
    return snapshot(database)


def totals(database: db.Database, send_uuid: str) -> dict[str, int]:
    with database.read_sessions() as session:
        send = session.scalars(
            select(CampaignMailingSend).where(CampaignMailingSend.uuid == send_uuid)
        ).one()
        return asdict(counters.send_totals(session, send.account_id, send.id))


def statistics(api: Api, address: str) -> dict[str, Any]:
    detail = ok(api.get(f"/subscribers/{subscriber_id(api, address)}", params={"with_stats": 1}))
    found: dict[str, Any] = detail["data"]["attributes"]["statistics"]
    return found


PEOPLE = [
    "alex@example.com",
    "blake@example.com",
    "casey@example.com",
    "dana@example.com",
    "erin@example.com",
    "gone@example.com",
    "full@example.com",
]


def test_counters_kept_as_things_happen_equal_a_rebuild_and_every_number_agrees(
    api: Api,
    other_api: Api,
    client: TestClient,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": address} for address in PEOPLE])
    smtp_server.replies["gone@example.com"] = "550 5.1.1 No such user"
    smtp_server.replies["full@example.com"] = "452 4.2.2 Mailbox full"
    mailing = make_mailing(api, subject="Spring")
    blast = send(api, mailing, news, recipient_emails=["alex@example.com"])[
        "campaign_mailing_send_id"
    ]
    inbox = Inbox(smtp_server, client)
    # Machines come at once: Apple's prefetch, a scanner following every link.
    run_tick()
    inbox.open("blake@example.com", "Spring", APPLE_PREFETCH, apple=True)
    inbox.click("casey@example.com", "Spring", SCANNER, 0, 1, 2)
    run_for(run_tick, manual_clock, timedelta(minutes=3))
    # People later: they open, open again, click one link or two.
    inbox.open("alex@example.com", "Spring", BROWSER)
    inbox.open("alex@example.com", "Spring", BROWSER)
    inbox.click("alex@example.com", "Spring", BROWSER, 0)
    manual_clock.advance(timedelta(minutes=1))
    inbox.click("alex@example.com", "Spring", BROWSER, 0, 1)
    inbox.click("casey@example.com", "Spring", BROWSER, 1)
    inbox.open("dana@example.com", "Spring", GMAIL_PROXY)
    inbox.click("erin@example.com", "Spring", NO_AGENT, 2)
    inbox.unsubscribe("dana@example.com", "Spring")
    inbox.unsubscribe("dana@example.com", "Spring")  # the same message, twice: one
    # A test email and a preview (the send's copy to Alex) are never counted.
    ok_test = api.get(
        f"/campaign_mailings/{mailing}/send_test_email", params={"to_email": "alex@example.com"}
    )
    assert ok_test.status_code == 204
    run_for(run_tick, manual_clock, timedelta(minutes=1))

    expected = {
        "sent": 7,
        "delivered": 5,
        "viewed": 5,  # everyone delivered; a click counts as an open
        "clicked": 3,
        "bounced": 2,
        "soft_bounced": 1,
        "hard_bounced": 1,
        "unsubscribed": 1,
        "global_unsubscribed": 0,
        "human_viewed": 3,  # alex, casey (who clicked later), dana (through Gmail's proxy)
        "machine_viewed": 2,  # blake (Apple's prefetch), erin (a click with no user agent)
        "human_clicked": 2,  # alex, casey
        "bot_clicked": 1,  # erin
    }
    assert totals(database, blast) == expected
    with database.read_sessions() as session:
        send_id = session.scalars(
            select(CampaignMailingSend.id).where(CampaignMailingSend.uuid == blast)
        ).one()
        account_id = session.scalars(
            select(CampaignMailingSend.account_id).where(CampaignMailingSend.id == send_id)
        ).one()
        links = counters.link_clicks(session, account_id, send_id)
    assert [(c.html_id, c.target_url, c.clicked, c.human_clicked, c.clicks) for c in links] == [
        # The same address twice in the HTML is one link. Casey's scanner followed both,
        # Alex clicked it twice, Erin's bot once.
        (1, "https://shop.example.com/sale", 3, 1, 5),
        (2, "https://blog.example.com/post?id=1", 2, 2, 3),  # the scanner, then casey; alex
    ]

    # The mailing list, the send resource and with_stats say the same.
    (listed,) = ok(api.get("/campaign_mailings"))["data"]
    attributes = listed["attributes"]
    assert {k: v for k, v in attributes.items() if k.endswith("_count")} == {
        "sent_count": 7,
        "delivered_count": 5,
        "viewed_count": 5,
        "clicked_count": 3,
        "bounced_count": 2,
        "unsubscribed_count": 1,
    }
    counts = ok(api.get(f"/campaign_mailing_sends/{blast}"))["data"]["attributes"]["counts"]
    assert (
        counts["delivered"],
        counts["soft_bounced"],
        counts["hard_bounced"],
        counts["opened"],
        counts["clicked"],
        counts["unsubscribed"],
        counts["recipients"],
        counts["pending"],
    ) == (5, 1, 1, 5, 3, 1, 7, 0)
    stats = [statistics(api, address) for address in PEOPLE]
    assert sum(s["deliveries"] for s in stats) == expected["sent"]
    assert sum(s["delivered"] for s in stats) == expected["delivered"]
    assert sum(s["opened"] for s in stats) == expected["viewed"]
    assert sum(s["clicked"] for s in stats) == expected["clicked"]
    assert sum(s["soft_bounced"] for s in stats) == expected["soft_bounced"]
    assert sum(s["hard_bounced"] for s in stats) == expected["hard_bounced"]

    # A second send, to All contacts: leaving it leaves all mail. And a drip.
    everyone = next(
        lst["id"]
        for lst in ok(api.get("/subscription_lists"))["data"]
        if lst["attributes"]["is_default"]
    )
    second = send(api, make_mailing(api, subject="Summer"), everyone)["campaign_mailing_send_id"]
    drip_list = make_list(api, "Drip")
    add_subscribers(api, drip_list, [{"email": "alex@example.com"}, {"email": "blake@example.com"}])
    campaign = create(
        api,
        drip_list,
        chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=make_mailing(api, subject="Drip")),
        ),
    )
    start(api, campaign)
    theirs = make_list(other_api, "Theirs")
    add_subscribers(other_api, theirs, [{"email": "alex@example.com"}])
    send(other_api, make_mailing(other_api, subject="Theirs"), theirs)
    run_for(run_tick, manual_clock, timedelta(minutes=2))
    inbox.unsubscribe("erin@example.com", "Summer")
    inbox.click("alex@example.com", "Drip", BROWSER, 1)
    inbox.open("blake@example.com", "Drip", SCANNER)
    inbox.click("alex@example.com", "Theirs", BROWSER, 0)
    run_for(run_tick, manual_clock, timedelta(minutes=1))

    summer = totals(database, second)
    assert (summer["unsubscribed"], summer["global_unsubscribed"]) == (1, 1)
    nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (
        nodes["a"]["emails_sent"],
        nodes["a"]["emails_opened"],
        nodes["a"]["emails_clicked"],
    ) == (2, 1, 1)  # blake's open was a scanner's

    incremental = snapshot(database)
    assert len(incremental["sends"]) == 3
    assert len(incremental["subscribers"]) == len(PEOPLE) + 1  # and the other account's alex
    assert incremental["sends"][send_id][0] == expected
    assert rebuilt(database) == incremental


def test_the_raw_address_of_a_hit_is_not_stored_only_what_it_revealed(
    api: Api,
    client: TestClient,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": "blake@example.com"}])
    send(api, make_mailing(api, subject="Spring"), news)
    run_for(run_tick, manual_clock, timedelta(minutes=1))

    Inbox(smtp_server, client).open("blake@example.com", "Spring", APPLE_PREFETCH, apple=True)

    with database.read_sessions() as session:
        (event,) = session.scalars(select(TrackingEvent)).all()
    stored = [getattr(event, c.key) for c in TrackingEvent.__table__.columns]
    assert not any("17.58" in str(value) for value in stored)
    assert (event.proxy, event.machine, event.machine_reason) == ("apple", True, "apple_privacy")
    assert event.user_agent == "Mozilla/5.0"
    assert event.seconds_after_send is not None
    assert event.seconds_after_send >= 0


@pytest.mark.parametrize("what", ["click", "unsubscribe"])
def test_an_event_whose_transaction_rolls_back_leaves_the_counters_unchanged(
    api: Api,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    what: str,
) -> None:
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": "alex@example.com"}])
    blast = send(api, make_mailing(api, subject="Spring"), news)["campaign_mailing_send_id"]
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    before = snapshot(database)
    assert totals(database, blast)["delivered"] == 1

    class Failed(Exception):
        pass

    def fail_after_recording() -> None:
        with database.transaction() as session:
            delivery = session.scalars(select(Delivery)).one()
            if what == "click":
                hit = tracking.Hit(
                    tracking.CLICK,
                    delivery.id,
                    clock.now(),
                    BROWSER["user-agent"],
                    "192.0.2.7",
                    1,
                    "https://shop.example.com/sale",
                )
                assert tracking.record_hits(session, [hit]) == {delivery.id}
            else:
                tracking.unsubscribe(session, tracking.UnsubscribeTarget(delivery, "News"))
            moved = totals_in(session, blast)
            assert moved != totals(database, blast), "the event moved no counter"
            raise Failed

    with pytest.raises(Failed):
        fail_after_recording()

    assert snapshot(database) == before
    with database.read_sessions() as session:
        assert session.scalars(select(TrackingEvent)).all() == []


def totals_in(session: Any, send_uuid: str) -> dict[str, int]:
    send = session.scalars(
        select(CampaignMailingSend).where(CampaignMailingSend.uuid == send_uuid)
    ).one()
    return asdict(counters.send_totals(session, send.account_id, send.id))


def wait_for_a_lock_wait(database: db.Database) -> bool:
    """Whether a session of the database comes to wait for a row lock (within 30 s)."""
    deadline = threading.Event()
    for _ in range(3000):
        with database.reader.connect() as connection:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query LIKE '%deliveries%'"
                )
            ).scalar_one()
        if waiting:
            return True
        deadline.wait(0.01)
    return False


def test_two_writers_recording_the_same_recipients_clicks_at_once_count_them_once(
    api: Api,
    postgres: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": "alex@example.com"}])
    blast = send(api, make_mailing(api, subject="Spring"), news)["campaign_mailing_send_id"]
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    with postgres.read_sessions() as session:
        delivery_id = session.scalars(select(Delivery.id)).one()

    def click() -> tracking.Hit:
        return tracking.Hit(
            tracking.CLICK,
            delivery_id,
            clock.now(),
            BROWSER["user-agent"],
            "192.0.2.7",
            1,
            "https://shop.example.com/sale",
        )

    # The first writer has recorded its click but not committed when the second records.
    second_done = threading.Event()
    with postgres.transaction() as first:
        tracking.record_hits(first, [click()])

        def second() -> None:
            with postgres.transaction() as session:
                tracking.record_hits(session, [click()])
            second_done.set()

        worker = threading.Thread(target=second)
        worker.start()
        assert wait_for_a_lock_wait(postgres), "the second writer never waited for the first"
    worker.join(timeout=30)
    assert second_done.is_set()

    found = totals(postgres, blast)
    assert (found["viewed"], found["clicked"], found["human_clicked"]) == (1, 1, 1)
    with postgres.read_sessions() as session:
        send_row = session.scalars(select(CampaignMailingSend)).one()
        (link,) = counters.link_clicks(session, send_row.account_id, send_row.id)
    assert (link.clicked, link.human_clicked, link.clicks) == (1, 1, 2)
    assert rebuilt(postgres) == snapshot(postgres)
