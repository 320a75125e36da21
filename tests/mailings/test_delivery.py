"""A send through the whole pipeline to a real SMTP server: who gets mail, what it looks like,
and what happens on 4xx, 5xx and an SMTP server that is down. Time moves by a manual clock."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.delivery import audience, dispatcher, pipeline, recovery
from dripstone.delivery.models import Delivery, Suppression
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import (
    add_subscribers,
    html_of,
    job,
    make_list,
    make_mailing,
    ok,
    send,
    subscriber_id,
    text_of,
    to,
)

Tick = Callable[[], None]


def settle(run_tick: Tick, manual_clock: clock.ManualClock, rounds: int = 3) -> None:
    """Tick, and let the send's job look at its deliveries again."""
    for _ in range(rounds):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()


def deliveries(database: db.Database) -> list[Delivery]:
    with database.read_sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
def news(api: Api) -> str:
    """A list with three members: alex (with a plan), blake, and casey."""
    list_id = make_list(api, "News")
    add_subscribers(
        api,
        list_id,
        [
            {"email": "alex@example.com", "first_name": "Alex", "custom_fields": [{"plan": "Pro"}]},
            {"email": "blake@example.com"},
            {"email": "casey@example.com", "first_name": "Casey"},
        ],
    )
    return list_id


def test_every_member_gets_one_message_with_merge_tags_tracking_and_unsubscribe_headers(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    started = send(api, make_mailing(api), news)
    settle(run_tick, manual_clock)

    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {
        "alex@example.com": 1,
        "blake@example.com": 1,
        "casey@example.com": 1,
    }
    raw = next(m.data for m in smtp_server.messages if m.rcpt_tos == ["alex@example.com"])
    (alex,) = to(smtp_server.messages, "alex@example.com")
    (blake,) = to(smtp_server.messages, "blake@example.com")
    assert alex["Subject"] == "Hello Alex"
    assert alex["From"] == "news@example.com"
    assert re.fullmatch(r"<[^<>@\s]+@example\.com>", alex["Message-ID"])
    assert alex["Date"] is not None
    assert alex.get_content_type() == "multipart/alternative"
    assert re.search(
        rb"\r\nList-Unsubscribe: <https://mail\.example\.com/t/u/[\w.-]+>,\r?\n? ?"
        rb"<mailto:unsubscribe@example\.com>\r\n",
        raw,
    )
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw

    html = html_of(alex)
    assert "Hi Alex, your plan is Pro." in html
    assert "Hi there, your plan is ." in html_of(blake)
    assert "Hi Alex, your plan is Pro." in text_of(alex)
    assert 'style="color: #333;"' in html  # CSS inlined
    clicks = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', html)
    assert len(clicks) == 3
    assert clicks[0] == clicks[2] != clicks[1]
    assert 'href="mailto:help@example.com"' in html
    assert "shop.example.com" not in html  # every http(s) link goes through the redirect
    assert re.search(r'<img src="https://mail\.example\.com/t/o/[\w.-]+\.gif"', html)

    record = job(api, started["jid"])
    assert (record["state"], record["total"], record["done"], record["failed"]) == (
        "succeeded",
        3,
        3,
        0,
    )


def test_opted_out_unsubscribed_suppressed_and_deleted_addresses_get_nothing(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    add_subscribers(api, news, [{"email": "dana@example.com"}, {"email": "eli@example.com"}])
    alex, blake = subscriber_id(api, "alex@example.com"), subscriber_id(api, "blake@example.com")
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [alex]}))  # globally
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [blake], "subscription_list_ids": [news]},
        )
    )
    with database.transaction() as session:
        account_id = session.scalar(select(Account.id).where(Account.username == "acme"))
        audience.suppress(
            session.connection(),
            [audience.Suppressed(account_id, "dana@example.com", "550 earlier")],
        )
    eli = subscriber_id(api, "eli@example.com")

    started = send(api, make_mailing(api), news)
    assert job(api, started["jid"])["total"] == 2  # casey and eli
    # eli is deleted after the send queued its message, before it went out.
    ok(api.request("DELETE", "/subscribers_bulk_delete", params={"subscriber_ids": eli}))
    settle(run_tick, manual_clock)

    assert [m.rcpt_tos for m in smtp_server.messages] == [["casey@example.com"]]


def test_a_subscriber_who_leaves_after_the_send_started_is_skipped(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    started = send(api, make_mailing(api), news)
    alex = subscriber_id(api, "alex@example.com")
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [alex], "subscription_list_ids": [news]},
        )
    )
    settle(run_tick, manual_clock)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "blake@example.com",
        "casey@example.com",
    ]
    skipped = [d for d in deliveries(database) if d.status == "skipped"]
    assert [(d.email, d.smtp_reply) for d in skipped] == [
        ("alex@example.com", "the subscriber left the list")
    ]
    assert job(api, started["jid"])["done"] == 3


def test_a_4xx_is_retried_after_the_backoff_and_delivered_once(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    smtp_server.replies["blake@example.com"] = "451 4.3.0 Try again later"
    started = send(api, make_mailing(api), news)
    settle(run_tick, manual_clock, rounds=1)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "casey@example.com",
    ]
    record = job(api, started["jid"])
    assert record["state"] == "running"
    assert "1 message(s) deferred" in record["error"]
    assert "451 4.3.0 Try again later" in record["error"]

    del smtp_server.replies["blake@example.com"]
    settle(run_tick, manual_clock, rounds=1)  # 6 s later: the 60 s backoff has not passed
    assert len(smtp_server.messages) == 2
    manual_clock.advance(timedelta(seconds=60))
    settle(run_tick, manual_clock)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "blake@example.com",
        "casey@example.com",
    ]
    blake = next(d for d in deliveries(database) if d.email == "blake@example.com")
    assert (blake.status, blake.attempts) == ("delivered", 2)
    record = job(api, started["jid"])
    assert (record["state"], record["error"], record["done"]) == ("succeeded", None, 3)


def test_a_5xx_is_not_retried_and_suppresses_the_address(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    smtp_server.replies["blake@example.com"] = "550 5.1.1 No such user"
    mailing = make_mailing(api)
    started = send(api, mailing, news)
    settle(run_tick, manual_clock)
    manual_clock.advance(timedelta(days=4))
    settle(run_tick, manual_clock)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "casey@example.com",
    ]
    blake = next(d for d in deliveries(database) if d.email == "blake@example.com")
    assert (blake.status, blake.attempts, blake.smtp_code) == ("hard_bounced", 1, 550)
    assert job(api, started["jid"])["failed"] == 1
    with database.read_sessions() as session:
        assert session.scalars(select(Suppression.email)).all() == ["blake@example.com"]

    # Suppressed for every later path: a new send, and a test email.
    del smtp_server.replies["blake@example.com"]
    send(api, mailing, news)
    settle(run_tick, manual_clock)
    assert [m.rcpt_tos[0] for m in smtp_server.messages].count("blake@example.com") == 0
    refused = api.get(
        f"/campaign_mailings/{mailing}/send_test_email", params={"to_email": "blake@example.com"}
    )
    assert refused.status_code == 422
    assert refused.json()["details"]["field"] == "to_email"


def test_4xx_until_the_retry_horizon_is_a_soft_bounce(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    smtp_server.replies["blake@example.com"] = "452 4.2.2 Mailbox full"
    started = send(api, make_mailing(api), news)
    for _ in range(40):
        settle(run_tick, manual_clock, rounds=1)
        manual_clock.advance(timedelta(hours=2))
    blake = next(d for d in deliveries(database) if d.email == "blake@example.com")
    # 60 s doubling: attempt 12 would wait 61 hours more, past 3 days from the first try.
    assert (blake.status, blake.attempts, blake.smtp_code) == ("soft_bounced", 12, 452)
    assert job(api, started["jid"])["state"] == "succeeded"
    with database.read_sessions() as session:
        assert session.scalars(select(Suppression.email)).all() == []


def test_an_smtp_server_that_is_down_keeps_the_job_retrying_and_the_api_up(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    smtp_server.stop()
    started = send(api, make_mailing(api), news)
    settle(run_tick, manual_clock)

    record = job(api, started["jid"])
    assert record["state"] == "running"
    assert "3 message(s) deferred" in record["error"]
    assert "ConnectionRefusedError" in record["error"]
    # One connection attempt for the batch, not one per message: the rest wait with it.
    assert [d.attempts for d in deliveries(database)] == [1, 0, 0]
    assert all(d.status == "pending" for d in deliveries(database))

    smtp_server.restart()
    manual_clock.advance(timedelta(seconds=61))
    settle(run_tick, manual_clock)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "blake@example.com",
        "casey@example.com",
    ]
    assert job(api, started["jid"])["state"] == "succeeded"


def test_while_the_smtp_server_stays_down_the_batch_backs_off_behind_one_message(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    smtp_server.stop()
    started = send(api, make_mailing(api), news)
    settle(run_tick, manual_clock)
    manual_clock.advance(timedelta(seconds=61))
    settle(run_tick, manual_clock)
    rows = deliveries(database)
    assert [d.attempts for d in rows] == [2, 0, 0]
    # All three wait for the second retry, twice as long as the first.
    assert {d.next_attempt_at for d in rows} == {rows[0].next_attempt_at}
    assert rows[0].next_attempt_at - manual_clock.now() > timedelta(seconds=100)

    for _ in range(40):
        settle(run_tick, manual_clock, rounds=1)
        manual_clock.advance(timedelta(hours=2))
    rows = deliveries(database)
    # Past three days all are soft bounces, the two never tried among them.
    assert [(d.status, d.attempts) for d in rows] == [
        ("soft_bounced", 12),
        ("soft_bounced", 0),
        ("soft_bounced", 0),
    ]
    assert all("ConnectionRefusedError" in (d.smtp_reply or "") for d in rows)
    assert job(api, started["jid"])["state"] == "succeeded"
    assert smtp_server.messages == []


def test_a_slow_batch_renews_its_claim_as_it_hands_each_group_over(
    api: Api,
    database: db.Database,
    smtp_server: SmtpTestServer,
    manual_clock: clock.ManualClock,
) -> None:
    readers = make_list(api, "Readers")
    add_subscribers(api, readers, [{"email": f"r{i}@example.com"} for i in range(30)])
    send(api, make_mailing(api), readers)
    # Each message takes 0.4 s: a group of ten fits in the 5 s claim, the batch of 30 not.
    # Meanwhile another process's sweep takes back whatever claim has run out.
    slow = replace(
        pipeline.pipeline(),
        policy=pipeline.DeliveryPolicy(batch_size=30, claim_seconds=5, record_every=10),
    )

    def a_slow_relay_and_a_sweep_elsewhere() -> None:
        manual_clock.advance(timedelta(seconds=0.4))
        recovery.recover_deliveries(database)

    smtp_server.handler.on_message = a_slow_relay_and_a_sweep_elsewhere
    dispatcher.dispatch_due(database, slow)

    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {
        f"r{i}@example.com": 1 for i in range(30)
    }
    assert {d.status for d in deliveries(database)} == {"delivered"}


def test_test_emails_and_previews_never_reach_an_address_that_opted_out(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    mailing = make_mailing(api)
    add_subscribers(api, None, [{"email": "boss@example.org"}])
    # Queued while Casey may still be mailed; Casey and the boss opt out before they go.
    response = api.get(
        f"/campaign_mailings/{mailing}/send_test_email", params={"to_email": "casey@example.com"}
    )
    assert response.status_code == 204
    for address in ("casey@example.com", "boss@example.org"):
        ok(
            api.post(
                "/subscriptions/unsubscribe", {"subscriber_ids": [subscriber_id(api, address)]}
            )
        )
    send(api, mailing, news, recipient_emails=["boss@example.org", "owner@example.org"])
    settle(run_tick, manual_clock)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "blake@example.com",
        "owner@example.org",
    ]
    skipped = sorted(
        (d.kind, d.email, d.smtp_reply) for d in deliveries(database) if d.status == "skipped"
    )
    assert skipped == [
        ("preview", "boss@example.org", "the address opted out of all mail"),
        ("test", "casey@example.com", "the address opted out of all mail"),
    ]


def test_preview_copies_go_untracked_to_the_extra_recipients(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    send(api, make_mailing(api), news, recipient_emails=["boss@example.org"])
    settle(run_tick, manual_clock)

    (preview,) = to(smtp_server.messages, "boss@example.org")
    assert "https://shop.example.com/sale" in html_of(preview)
    assert "/t/o/" not in html_of(preview)
    assert preview["List-Unsubscribe"] is None
    assert len(smtp_server.messages) == 4
    counts = ok(api.get("/campaign_mailings"))["data"][0]["attributes"]
    assert (counts["sent_count"], counts["delivered_count"]) == (3, 3)


def test_user_data_cannot_inject_headers(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    add_subscribers(
        api, news, [{"email": "mal@example.com", "first_name": "Mal\r\nBcc: victim@example.net"}]
    )
    send(api, make_mailing(api), news)
    settle(run_tick, manual_clock)

    for message in smtp_server.messages:
        assert message.rcpt_tos != ["victim@example.net"]
        head = message.data.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"(?im)^bcc:", head)
    mal = to(smtp_server.messages, "mal@example.com")
    assert len(mal) == 1
    assert mal[0]["Subject"] == "Hello Mal Bcc: victim@example.net"


def test_a_render_past_the_limits_fails_that_delivery_with_the_reason_and_the_rest_go(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    # Passes the save-time check (its sample recipients have no `size`); one subscriber's
    # data would make a 20 MB message.
    add_subscribers(
        api, news, [{"email": "huge@example.com", "custom_fields": [{"size": "20000000"}]}]
    )
    html = "<p>Hi {{ 'a' * (custom.size | default(0) | int) }}</p>"
    started = send(api, make_mailing(api, "Hello", html_part=html), news)
    settle(run_tick, manual_clock)

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "blake@example.com",
        "casey@example.com",
    ]
    huge = next(d for d in deliveries(database) if d.email == "huge@example.com")
    assert huge.status == "failed"
    assert huge.smtp_reply == (
        "html_part line 1: the template builds more than 10,000,000 characters in one render"
    )
    record = job(api, started["jid"])
    assert (record["state"], record["done"], record["failed"]) == ("succeeded", 4, 1)
