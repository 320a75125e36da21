"""Drip campaigns end to end: the API, the runner, the delivery pipeline and a real SMTP
server, with time moved by a manual clock."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from dripstone import clock, db
from dripstone.delivery.models import Delivery
from dripstone.drips import runner
from dripstone.mailings.models import CampaignMailing
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, create, edge, graph, node, report, start, two_emails
from tests.mailings.helpers import (
    add_subscribers,
    html_of,
    job,
    make_list,
    make_mailing,
    ok,
    parsed,
    send,
    subscriber_id,
)
from tests.subscribers.helpers import internal_id

Tick = Callable[[], None]
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}


def subjects_by_recipient(server: SmtpTestServer) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in server.messages:
        found.setdefault(message.rcpt_tos[0], []).append(str(parsed(message)["Subject"]))
    return found


def run_for(
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    delta: timedelta,
    step: timedelta = timedelta(minutes=5),
) -> None:
    """Let `delta` pass, ticking as the server would (every `step` here, twice each time:
    one tick advances enrollments, the next dispatches the emails they queued)."""
    end = manual_clock.now() + delta
    while manual_clock.now() < end:
        run_tick()
        run_tick()
        manual_clock.advance(min(step, end - manual_clock.now()))
    run_tick()
    run_tick()


def welcome_series(api: Api) -> str:
    """Welcome; a day later, a thank-you to those who clicked and a nudge to the others;
    two days after that, the tips."""
    welcome = make_mailing(api, subject="Welcome {{ first_name | default('friend') }}")
    thanks = make_mailing(api, subject="Thanks for looking")
    nudge = make_mailing(api, subject="Did you see this?")
    tips = make_mailing(api, subject="Tips")
    return graph(
        [
            node("t", "trigger"),
            node("welcome", "email", campaign_mailing_id=welcome),
            node("day", "delay", amount=1, unit="days"),
            node("clicked", "condition", check="clicked", node="welcome"),
            node("thanks", "email", campaign_mailing_id=thanks),
            node("nudge", "email", campaign_mailing_id=nudge),
            node("wait", "delay", amount=2, unit="days"),
            node("tips", "email", campaign_mailing_id=tips),
            node("end", "exit"),
        ],
        [
            edge("t", "welcome"),
            edge("welcome", "day"),
            edge("day", "clicked"),
            edge("clicked", "thanks", "yes"),
            edge("clicked", "nudge", "no"),
            edge("thanks", "wait"),
            edge("nudge", "wait"),
            edge("wait", "tips"),
            edge("tips", "end"),
        ],
    )


def test_a_welcome_series_branches_on_a_click_and_honours_its_delays(
    api: Api,
    client: TestClient,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = create(api, news, welcome_series(api))
    (jid,) = start(api, campaign)
    assert job(api, jid)["state"] == "succeeded"
    run_for(run_tick, manual_clock, timedelta(minutes=2))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Welcome Alex"],
        "blake@example.com": ["Welcome friend"],
    }

    (welcome_alex,) = [m for m in smtp_server.messages if m.rcpt_tos == ["alex@example.com"]]
    link = re.findall(
        r'href="(https://mail\.example\.com/t/c/[^"]+)"', html_of(parsed(welcome_alex))
    )[0]
    # A person: a browser, minutes after the message arrived.
    assert (
        client.get(urlsplit(link).path, headers=BROWSER, follow_redirects=False).status_code == 302
    )

    run_for(run_tick, manual_clock, timedelta(hours=23, minutes=50))
    assert len(smtp_server.messages) == 2  # the day has not passed
    run_for(run_tick, manual_clock, timedelta(minutes=20))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Welcome Alex", "Thanks for looking"],
        "blake@example.com": ["Welcome friend", "Did you see this?"],
    }
    run_for(run_tick, manual_clock, timedelta(days=2, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Welcome Alex", "Thanks for looking", "Tips"],
        "blake@example.com": ["Welcome friend", "Did you see this?", "Tips"],
    }
    run_for(run_tick, manual_clock, timedelta(days=10), step=timedelta(hours=6))
    assert len(smtp_server.messages) == 6

    attributes = ok(api.get(f"/drip_campaigns/{campaign}"))["data"]["attributes"]
    assert (attributes["subscriber_count"], attributes["subscriber_completed_count"]) == (0, 2)
    nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (nodes["welcome"]["entered"], nodes["welcome"]["emails_sent"]) == (2, 2)
    assert nodes["welcome"]["emails_clicked"] == 1
    assert (nodes["thanks"]["entered"], nodes["nudge"]["entered"]) == (1, 1)
    assert nodes["end"]["completed"] == 2


def test_an_image_proxys_prefetch_is_not_an_open_but_a_person_reading_is(
    api: Api,
    client: TestClient,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    hello = make_mailing(api, subject="Hello")
    nodes = chain(
        node("t", "trigger"),
        node("hello", "email", campaign_mailing_id=hello),
        node("day", "delay", amount=1, unit="days"),
    )
    condition = graph(
        [
            *json.loads(nodes)["nodes"],
            node("opened", "condition", check="opened", node="hello"),
            node("thanks", "email", campaign_mailing_id=make_mailing(api, subject="Thanks")),
            node("nudge", "email", campaign_mailing_id=make_mailing(api, subject="Nudge")),
        ],
        [
            *json.loads(nodes)["edges"],
            edge("day", "opened"),
            edge("opened", "thanks", "yes"),
            edge("opened", "nudge", "no"),
        ],
    )
    campaign = create(api, news, condition)
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=2))
    pixels = {
        m.rcpt_tos[0]: re.findall(
            r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', html_of(parsed(m))
        )[0]
        for m in smtp_server.messages
    }
    # Apple Mail Privacy Protection fetches Alex's images from Apple's network; Blake reads.
    apple = TestClient(client.app, client=("17.58.63.4", 50000))
    prefetch = {"user-agent": "Mozilla/5.0"}
    assert apple.get(urlsplit(pixels["alex@example.com"]).path, headers=prefetch).status_code == 200
    assert (
        client.get(urlsplit(pixels["blake@example.com"]).path, headers=BROWSER).status_code == 200
    )

    run_for(run_tick, manual_clock, timedelta(days=1, minutes=10))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Hello", "Nudge"],
        "blake@example.com": ["Hello", "Thanks"],
    }
    report_nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (report_nodes["hello"]["emails_sent"], report_nodes["hello"]["emails_opened"]) == (2, 1)


@pytest.mark.parametrize(
    "scanner",
    [
        {"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"},
        {"user-agent": "python-requests/2.31.0"},
        {"user-agent": ""},
        BROWSER,  # but at once: nobody reads and clicks within seconds of delivery
    ],
)
def test_a_link_scanners_click_does_not_take_the_yes_branch(
    api: Api,
    client: TestClient,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    scanner: dict[str, str],
) -> None:
    campaign = create(api, news, welcome_series(api))
    start(api, campaign)
    run_tick()
    run_tick()
    (welcome_alex,) = [m for m in smtp_server.messages if m.rcpt_tos == ["alex@example.com"]]
    links = re.findall(
        r'href="(https://mail\.example\.com/t/c/[^"]+)"', html_of(parsed(welcome_alex))
    )
    if scanner is not BROWSER:
        manual_clock.advance(timedelta(minutes=2))
    for link in links:  # scanners follow every link
        response = client.get(urlsplit(link).path, headers=scanner, follow_redirects=False)
        assert response.status_code == 302  # the scanner still gets the page

    run_for(run_tick, manual_clock, timedelta(days=1, minutes=10))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Welcome Alex", "Did you see this?"],
        "blake@example.com": ["Welcome friend", "Did you see this?"],
    }
    nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (nodes["welcome"]["emails_sent"], nodes["welcome"]["emails_clicked"]) == (2, 0)
    assert nodes["thanks"]["entered"] == 0


def test_pause_holds_everyone_and_resume_runs_what_fell_due_once(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        two_emails(first, second, 1, "hours"),
    )
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert len(smtp_server.messages) == 2

    paused = ok(api.post(f"/drip_campaigns/{campaign}/pause"))["data"]
    assert paused == {"drip_campaign_id": campaign, "status": "paused"}
    add_subscribers(api, news, [{"email": "casey@example.com"}])  # joins; existing trigger only
    run_for(run_tick, manual_clock, timedelta(hours=3))
    assert len(smtp_server.messages) == 2  # nothing while paused
    waiting = ok(api.get(f"/drip_campaigns/{campaign}"))["data"]["attributes"]
    assert (waiting["state"], waiting["subscriber_count"]) == ("paused", 2)

    assert start(api, campaign) == []
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First", "Second"],
        "blake@example.com": ["First", "Second"],
    }


def test_a_retried_email_still_arrives_before_the_next_one(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        two_emails(first, second, 10, "seconds"),
    )
    smtp_server.replies["alex@example.com"] = "451 4.3.0 Try again later"
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(seconds=5), step=timedelta(seconds=1))
    del smtp_server.replies["alex@example.com"]
    # The second step falls due while the first email waits out its 60 s backoff.
    run_for(run_tick, manual_clock, timedelta(seconds=40), step=timedelta(seconds=1))
    assert subjects_by_recipient(smtp_server) == {"blake@example.com": ["First", "Second"]}

    run_for(run_tick, manual_clock, timedelta(seconds=30), step=timedelta(seconds=1))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First", "Second"],
        "blake@example.com": ["First", "Second"],
    }


def hello_queued_then_paused(api: Api, news: str, run_tick: Tick) -> str:
    """A one-email campaign, started and paused right after its step was taken: its
    messages are queued, not yet sent."""
    hello = make_mailing(api, subject="Hello")
    campaign = create(
        api, news, chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=hello))
    )
    start(api, campaign)
    run_tick()
    ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    return campaign


def test_an_email_step_taken_just_before_a_pause_waits_for_the_resume(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = hello_queued_then_paused(api, news, run_tick)
    run_for(run_tick, manual_clock, timedelta(hours=1))
    assert smtp_server.messages == []

    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(seconds=10), step=timedelta(seconds=1))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Hello"],
        "blake@example.com": ["Hello"],
    }


def test_deleting_a_paused_campaign_drops_the_emails_it_held(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = hello_queued_then_paused(api, news, run_tick)
    run_tick()
    assert api.delete(f"/drip_campaigns/{campaign}").status_code == 200
    run_for(run_tick, manual_clock, timedelta(hours=1))
    assert smtp_server.messages == []
    with database.read_sessions() as session:
        outcomes = session.execute(select(Delivery.status, Delivery.smtp_reply)).all()
    assert [tuple(row) for row in outcomes] == [("skipped", "the drip campaign was deleted")] * 2


def test_new_members_are_enrolled_by_the_subscription_trigger_even_while_paused(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    hello = make_mailing(api, subject="Hello")
    campaign = create(
        api,
        news,
        chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=hello)),
        "subscription",
    )
    assert start(api, campaign) == []
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert smtp_server.messages == []  # the members before the start are not enrolled

    ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    add_subscribers(api, news, [{"email": "casey@example.com"}])
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert smtp_server.messages == []
    assert [e["node_id"] for e in report(api, campaign)["enrollments"]] == ["t"]  # at the trigger

    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert subjects_by_recipient(smtp_server) == {"casey@example.com": ["Hello"]}
    add_subscribers(api, news, [{"email": "casey@example.com"}])  # already enrolled once
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert len(smtp_server.messages) == 1


def join_by_create(api: Api, database: db.Database, news: str) -> str:
    ok(
        api.post(
            "/subscribers",
            {"subscriber": {"email": "dana@example.com"}, "subscription_list_id": news},
        )
    )
    return "dana@example.com"


def join_by_subscription(api: Api, database: db.Database, news: str) -> str:
    dana = ok(api.post("/subscribers", {"subscriber": {"email": "dana@example.com"}}))["data"]
    record = {"subscription_list_id": news, "subscriber_id": internal_id(database, dana["id"])}
    ok(api.post("/subscriptions", {"subscription": record}))
    return "dana@example.com"


def join_by_subscribe(api: Api, database: db.Database, news: str) -> str:
    dana = ok(api.post("/subscribers", {"subscriber": {"email": "dana@example.com"}}))["data"]
    body = {"subscriber_ids": [dana["id"]], "subscription_list_ids": [news]}
    ok(api.post("/subscriptions/subscribe", body))
    return "dana@example.com"


def join_again(api: Api, database: db.Database, news: str) -> str:
    """Alex, a member since before the start, leaves the list and subscribes again."""
    body = {
        "subscriber_ids": [subscriber_id(api, "alex@example.com")],
        "subscription_list_ids": [news],
    }
    ok(api.post("/subscriptions/unsubscribe", body))
    ok(api.post("/subscriptions/subscribe", body))
    return "alex@example.com"


@pytest.mark.parametrize(
    "join", [join_by_create, join_by_subscription, join_by_subscribe, join_again]
)
def test_every_way_of_joining_the_list_enrolls_by_the_subscription_trigger(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    join: Callable[[Api, db.Database, str], str],
) -> None:
    hello = make_mailing(api, subject="Hello")
    campaign = create(
        api,
        news,
        chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=hello)),
        "subscription",
    )
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    joiner = join(api, database, news)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert subjects_by_recipient(smtp_server) == {joiner: ["Hello"]}


@pytest.mark.parametrize(
    ("from_the_list", "reason"),
    [
        (True, "the subscriber left the campaign's list"),
        (False, "the subscriber opted out of all mail"),
    ],
)
def test_unsubscribing_mid_sequence_leaves_the_campaign(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    from_the_list: bool,
    reason: str,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        two_emails(first, second),
    )
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    alex = next(
        s["id"]
        for s in ok(api.get("/subscribers"))["data"]
        if s["attributes"]["email"] == "alex@example.com"
    )
    lists = {"subscription_list_ids": [news]} if from_the_list else {}
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [alex], **lists}))
    assert ok(api.get(f"/drip_campaigns/{campaign}"))["data"]["attributes"]["subscriber_count"] == 1

    run_for(run_tick, manual_clock, timedelta(days=1, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First"],
        "blake@example.com": ["First", "Second"],
    }
    states = {
        e["email"]: (e["state"], e["exit_reason"]) for e in report(api, campaign)["enrollments"]
    }
    assert states == {
        "alex@example.com": ("exited", reason),
        "blake@example.com": ("completed", None),
    }


def test_a_live_edit_keeps_enrollments_on_kept_nodes_and_moves_those_on_removed_ones(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=first),
            node("week", "delay", amount=1, unit="weeks"),
            node("b", "email", campaign_mailing_id=second),
        ),
    )
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert {e["node_id"] for e in report(api, campaign)["enrollments"]} == {"week"}

    # The week becomes an hour: the waiting step is replaced by a new one in its place.
    edited = chain(
        node("t", "trigger"),
        node("a", "email", campaign_mailing_id=first),
        node("hour", "delay", amount=1, unit="hours"),
        node("b", "email", campaign_mailing_id=second),
    )
    ok(api.put(f"/drip_campaigns/{campaign}", {"drip_campaign": {"drip_campaign_nodes": edited}}))
    assert {e["node_id"] for e in report(api, campaign)["enrollments"]} == {"hour"}
    run_for(run_tick, manual_clock, timedelta(minutes=50))
    assert len(smtp_server.messages) == 2
    run_for(run_tick, manual_clock, timedelta(minutes=15))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First", "Second"],
        "blake@example.com": ["First", "Second"],
    }


def test_a_campaign_that_opens_with_a_delay_enrolls_everyone_straight_at_the_delay(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    later = make_mailing(api, subject="An hour later")
    campaign = create(
        api,
        news,
        chain(
            node("t", "trigger"),
            node("hour", "delay", amount=1, unit="hours"),
            node("a", "email", campaign_mailing_id=later),
        ),
    )
    started_at = manual_clock.now()
    start(api, campaign)

    # No runner step yet: the enrollment itself placed them, with the visits recorded.
    enrollments = report(api, campaign)["enrollments"]
    assert {(e["node_id"], e["next_run_at"]) for e in enrollments} == {
        ("hour", (started_at + timedelta(hours=1)).isoformat().replace("+00:00", "Z"))
    }
    nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (nodes["t"]["entered"], nodes["hour"]["entered"], nodes["hour"]["waiting"]) == (2, 2, 2)

    run_for(run_tick, manual_clock, timedelta(minutes=55))
    assert smtp_server.messages == []
    run_for(run_tick, manual_clock, timedelta(minutes=10))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["An hour later"],
        "blake@example.com": ["An hour later"],
    }


def test_a_hard_bounce_or_a_deletion_takes_the_subscriber_out(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    add_subscribers(api, news, [{"email": "casey@example.com"}])
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        two_emails(first, second),
    )
    smtp_server.replies["blake@example.com"] = "550 5.1.1 No such user"
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    casey = next(
        s["id"]
        for s in ok(api.get("/subscribers"))["data"]
        if s["attributes"]["email"] == "casey@example.com"
    )
    ok(api.request("DELETE", "/subscribers_bulk_delete", params={"subscriber_ids": casey}))
    assert ok(api.get(f"/drip_campaigns/{campaign}"))["data"]["attributes"]["subscriber_count"] == 1

    run_for(run_tick, manual_clock, timedelta(days=1, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First", "Second"],
        "casey@example.com": ["First"],
    }
    reasons = {e["email"]: e["exit_reason"] for e in report(api, campaign)["enrollments"]}
    assert reasons == {
        "alex@example.com": None,
        "blake@example.com": "the address hard-bounced and is suppressed",
        None: "the subscriber was deleted",
    }


def test_an_address_another_account_suppressed_still_gets_this_accounts_drip(
    api: Api,
    other_api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    """The other account's drip runs in the same batches, so the runner meets both
    accounts' subscribers, and that account's suppression of Blake, at once."""
    theirs = make_list(other_api, "Theirs")
    add_subscribers(other_api, theirs, [{"email": "blake@example.com"}, {"email": "casey@x.org"}])
    smtp_server.replies["blake@example.com"] = "550 5.1.1 No such user"
    send(other_api, make_mailing(other_api, subject="Their news"), theirs)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    del smtp_server.replies["blake@example.com"]
    smtp_server.messages.clear()

    their_first = make_mailing(other_api, subject="Their first")
    their_second = make_mailing(other_api, subject="Their second")
    start(other_api, create(other_api, theirs, two_emails(their_first, their_second)))
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(api, news, two_emails(first, second))
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(days=1, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First", "Second"],
        "blake@example.com": ["First", "Second"],
        "casey@x.org": ["Their first", "Their second"],
    }
    states = {
        e["email"]: (e["state"], e["exit_reason"]) for e in report(api, campaign)["enrollments"]
    }
    assert states == {
        "alex@example.com": ("completed", None),
        "blake@example.com": ("completed", None),
    }


def test_an_enrollment_that_cannot_advance_is_set_aside_and_the_others_go_on(
    api: Api,
    other_api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    """The second mailing of this account's campaign disappears after the first step, as
    when a delete races the save that referenced it (the API refuses the delete itself).
    The runner takes both accounts' enrollments in the same batches."""
    theirs = make_list(other_api, "Theirs")
    add_subscribers(other_api, theirs, [{"email": "casey@x.org"}])
    their_first = make_mailing(other_api, subject="Their first")
    their_second = make_mailing(other_api, subject="Their second")
    start(other_api, create(other_api, theirs, two_emails(their_first, their_second)))
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(api, news, two_emails(first, second))
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert len(smtp_server.messages) == 3

    with database.transaction() as session:
        session.execute(delete(CampaignMailing).where(CampaignMailing.uuid == second))
    run_for(run_tick, manual_clock, timedelta(days=1, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["First"],
        "blake@example.com": ["First"],
        "casey@x.org": ["Their first", "Their second"],
    }
    reason = f"its email step 'b' sends the campaign mailing {second}, which was deleted"
    enrollments = report(api, campaign)["enrollments"]
    assert {(e["email"], e["state"], e["node_id"], e["exit_reason"]) for e in enrollments} == {
        ("alex@example.com", "exited", "d", reason),
        ("blake@example.com", "exited", "d", reason),
    }
    nodes = {n["id"]: n for n in report(api, campaign)["nodes"]}
    assert (nodes["d"]["exited"], nodes["d"]["waiting"], nodes["b"]["entered"]) == (2, 0, 0)
    assert not runner.has_due_steps(database)  # never picked up again


@pytest.mark.parametrize("name", ["custom.stage", "stage"])
def test_a_condition_after_set_field_sees_the_new_value_in_the_same_and_a_later_step(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    name: str,
) -> None:
    """`set_field` names a custom field as a field condition does (`custom.stage`); the
    bare name is the same field."""
    mail = {
        subject: make_mailing(api, subject=subject)
        for subject in ("Warm at once", "Cold at once", "Still warm", "Cold later")
    }
    is_warm = {"check": "field", "name": "custom.stage", "op": "eq", "value": "warm"}
    campaign = create(
        api,
        news,
        graph(
            [
                node("t", "trigger"),
                node("set", "action", do="set_field", name=name, value="warm"),
                node("now", "condition", **is_warm),
                node("warm1", "email", campaign_mailing_id=mail["Warm at once"]),
                node("cold1", "email", campaign_mailing_id=mail["Cold at once"]),
                node("hour", "delay", amount=1, unit="hours"),
                node("later", "condition", **is_warm),
                node("warm2", "email", campaign_mailing_id=mail["Still warm"]),
                node("cold2", "email", campaign_mailing_id=mail["Cold later"]),
            ],
            [
                edge("t", "set"),
                edge("set", "now"),
                edge("now", "warm1", "yes"),
                edge("now", "cold1", "no"),
                edge("warm1", "hour"),
                edge("cold1", "hour"),
                edge("hour", "later"),
                edge("later", "warm2", "yes"),
                edge("later", "cold2", "no"),
            ],
        ),
    )
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(hours=1, minutes=5))
    assert subjects_by_recipient(smtp_server) == {
        "alex@example.com": ["Warm at once", "Still warm"],
        "blake@example.com": ["Warm at once", "Still warm"],
    }
    alex = ok(api.get(f"/subscribers/{subscriber_id(api, 'alex@example.com')}"))["data"]
    fields = alex["attributes"]["custom_fields"]
    assert [(f["custom_field_name"], f["custom_field_value"]) for f in fields] == [
        ("stage", "warm")
    ]
