"""The sends pages after real sends through the test SMTP server: the progress and the
analytics a user reads, the CSV files (byte for byte the API's), the relay's answer to a
deferred message, polling that stops once a send is finished, cancelling a scheduled send,
and nothing of another account's sends."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlalchemy import select

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.analytics import tables
from dripstone.config import Settings
from dripstone.db import AccountScope
from dripstone.delivery.pipeline import close_pipeline
from dripstone.mailings.models import CampaignMailingSend
from dripstone.users.models import Role
from tests.analytics.campaign import POST, SALE, sent_campaign
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.conftest import run_tick, smtp_server, smtp_settings
from tests.mailings.helpers import add_subscribers, make_list, make_mailing, ok, send
from tests.web.conftest import Team

__all__ = ["run_tick", "smtp_server"]

Tick = Callable[[], None]
SignedIn = Callable[[Role], TestClient]
CSV = {"accept": "text/csv"}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(database_url, tmp_path, smtp_server)
    close_pipeline()


@pytest.fixture
def team_api(client: TestClient, team: Team) -> Api:
    """The team's own account through the API, as a user's script would call it."""
    return Api(client, team.account, team.api_key, "/v1/marketing")


def text(html: str, selector: str | None = None) -> str:
    """What a reader sees of the page (or of one element), whitespace folded."""
    soup = BeautifulSoup(html, "html.parser")
    found = soup.select_one(selector) if selector else soup
    assert found is not None, f"{selector} not on the page"
    return " ".join(found.get_text(" ").split())


def finish(manual_clock: clock.ManualClock, run_tick: Tick) -> None:
    """Deliver what is due, then let the send's job see that every delivery is final."""
    run_tick()
    run_tick()
    manual_clock.advance(timedelta(seconds=3))
    run_tick()


def small_send(api: Api, people: list[str], subject: str = "Spring news") -> str:
    list_id = make_list(api, f"List for {subject}")
    add_subscribers(api, list_id, [{"email": address} for address in people])
    mailing_id = make_mailing(api, subject=subject)
    return str(send(api, mailing_id, list_id)["campaign_mailing_send_id"])


def test_a_finished_send_shows_every_message_delivered_and_100_percent(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock, run_tick: Tick
) -> None:
    people = [f"reader{n}@example.com" for n in range(3)]
    send_id = small_send(team_api, people)
    finish(manual_clock, run_tick)
    client = signed_in(Role.VIEWER)

    page = client.get(f"/sends/{send_id}")
    assert page.status_code == 200
    progress = text(page.text, "#send-progress")
    assert "3 of 3 (100 %)" in progress
    assert "sent" in progress
    assert re.search(r"Delivered 3\b", progress)
    assert "100.0 % of 3 sent" in text(page.text, ".sends-totals")
    deliveries = text(page.text, "section[aria-labelledby=deliveries-heading]")
    for address in people:
        assert f"{address} delivered" in deliveries

    listed = client.get("/sends")
    assert listed.status_code == 200
    row = text(listed.text, "tbody tr")
    assert row.startswith("Spring news List for Spring news sent")
    assert "3 100.0 %" in row  # sent, then the delivered rate
    assert f'href="/sends/{send_id}"' in listed.text


def test_a_click_shows_in_the_links_table_and_among_who_clicked(
    signed_in: SignedIn,
    team_api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = sent_campaign(team_api, client, smtp_server, run_tick, manual_clock)
    client = signed_in(Role.VIEWER)

    page = client.get(f"/sends/{campaign.send_id}")
    links = page_rows(page.text, "links-heading")
    # html_id, URL, recipients who clicked, people among them, clicks, who clicked
    assert links[0][:2] == ["1", SALE]
    assert links[0][2] == "1"
    assert links[0][4] == "2"
    assert links[1][:3] == ["2", POST, "2"]
    totals = text(page.text, ".sends-totals")
    assert "Clicked 2 50.0 % of delivered" in totals
    assert "Bounced 1 20.0 % of sent" in totals

    sale = client.get(f"/sends/{campaign.send_id}/links/1")
    assert sale.status_code == 200
    assert [row[0] for row in page_rows(sale.text)] == ["alex@example.com"]
    post = client.get(f"/sends/{campaign.send_id}/links/2")
    assert sorted(row[0] for row in page_rows(post.text)) == [
        "alex@example.com",
        "blake@example.com",
    ]
    assert client.get(f"/sends/{campaign.send_id}/links/9").status_code == 404


def page_rows(html: str, heading: str | None = None) -> list[list[str]]:
    """The cells of a table's body rows (the table under the heading with this id)."""
    soup = BeautifulSoup(html, "html.parser")
    scope = soup.select_one(f"section[aria-labelledby={heading}]") if heading else soup
    assert scope is not None
    return [
        [" ".join(cell.get_text(" ").split()) for cell in row.find_all(["th", "td"])]
        for row in scope.select("tbody tr")
    ]


def test_the_csv_downloads_are_the_apis_csv_files(
    signed_in: SignedIn,
    team_api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = sent_campaign(team_api, client, smtp_server, run_tick, manual_clock)
    send_id = campaign.send_id
    api_files = {
        "deliveries.csv": team_api.get(
            "/analytics/campaign_mailing_deliveries_table",
            params={"campaign_mailing_send_id": send_id},
            headers=CSV,
        ),
        "links.csv": team_api.get(
            "/analytics/tracking_links_by_unique_link",
            params={"campaign_mailing_send_id": send_id},
            headers=CSV,
        ),
        "links/2/clickers.csv": team_api.get(
            "/analytics/subscribers_by_tracking_link",
            params={"campaign_mailing_send_id": send_id, "html_id": 2},
            headers=CSV,
        ),
    }
    client = signed_in(Role.VIEWER)
    for name, from_api in api_files.items():
        assert from_api.status_code == 200, from_api.text
        download = client.get(f"/sends/{send_id}/{name}")
        assert download.status_code == 200, name
        assert download.headers["content-type"].startswith("text/csv")
        assert download.headers["content-disposition"].startswith("attachment")
        assert download.content == from_api.content, name

    deliveries = client.get(f"/sends/{send_id}/deliveries.csv").text.splitlines()
    assert deliveries[0].startswith("recipient,created_at,delivered")
    assert len(deliveries) == 1 + 5
    clickers = client.get(f"/sends/{send_id}/links/2/clickers.csv").text
    assert "alex@example.com" in clickers
    assert "blake@example.com" in clickers
    # A formula in a custom field is written as text, as in the API's file.
    assert "'=HYPERLINK" in clickers
    links = client.get(f"/sends/{send_id}/links.csv").text.splitlines()
    assert links[0] == "html_id,target_url,clicked,human_clicked,clicks"
    assert len(links) == 1 + 2


def test_a_deferred_message_shows_the_relays_answer(
    signed_in: SignedIn,
    team_api: Api,
    smtp_server: SmtpTestServer,
    manual_clock: clock.ManualClock,
    run_tick: Tick,
) -> None:
    smtp_server.replies["later@example.com"] = "451 4.3.0 try later"
    send_id = small_send(team_api, ["now@example.com", "later@example.com"])
    finish(manual_clock, run_tick)
    client = signed_in(Role.VIEWER)

    page = client.get(f"/sends/{send_id}")
    progress = text(page.text, "#send-progress")
    assert "1 of 2 (50 %)" in progress
    assert re.search(r"Deferred 1\b", progress)
    assert "451 4.3.0 try later" in progress
    rows = {row[0]: row for row in page_rows(page.text, "deliveries-heading")}
    assert rows["later@example.com"][1].startswith("deferred")
    assert rows["later@example.com"][2] == "451 4.3.0 try later"
    assert rows["now@example.com"][1] == "delivered"
    # Still waiting for the retry: the progress keeps refreshing itself.
    fragment = client.get(f"/sends/{send_id}/progress")
    assert 'hx-trigger="every 2s"' in fragment.text


def test_the_progress_polls_while_the_send_runs_and_stops_when_it_is_finished(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock, run_tick: Tick
) -> None:
    send_id = small_send(team_api, ["one@example.com", "two@example.com"])
    client = signed_in(Role.VIEWER)
    running = client.get(f"/sends/{send_id}/progress")
    assert running.status_code == 200
    assert 'hx-trigger="every 2s"' in running.text
    assert f'hx-get="/sends/{send_id}/progress"' in running.text
    assert "2 of 2" not in text(running.text)
    # The page itself carries the same polling fragment.
    assert 'hx-trigger="every 2s"' in client.get(f"/sends/{send_id}").text

    finish(manual_clock, run_tick)
    finished = client.get(f"/sends/{send_id}/progress")
    assert "hx-trigger" not in finished.text
    assert "hx-get" not in finished.text
    assert "2 of 2 (100 %)" in text(finished.text)


def test_another_accounts_send_is_not_found_anywhere(
    signed_in: SignedIn, team_api: Api, other_api: Api
) -> None:
    theirs = small_send(other_api, ["secret@example.com"], subject="Their news")
    mine = small_send(team_api, ["mine@example.com"], subject="My news")
    client = signed_in(Role.OWNER)
    for path in (
        "",
        "/progress",
        "/deliveries.csv",
        "/links.csv",
        "/links/1",
        "/links/1/clickers.csv",
    ):
        answer = client.get(f"/sends/{theirs}{path}")
        assert answer.status_code == 404, path
        assert "secret@example.com" not in answer.text
    assert client.get("/sends/not-a-uuid").status_code == 404
    listed = client.get("/sends").text
    assert "My news" in listed
    assert mine in listed
    assert "Their news" not in listed
    assert theirs not in listed
    token = csrf_token(client)
    refused = client.post(f"/sends/{theirs}/cancel", data={"csrf_token": token})
    assert refused.status_code == 404


def csrf_token(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sends").text)
    assert found is not None
    return found[1]


def test_an_editor_cancels_a_scheduled_send_and_a_viewer_may_not(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock, database: db.Database
) -> None:
    list_id = make_list(team_api, "Later")
    add_subscribers(team_api, list_id, [{"email": "later@example.com"}])
    mailing_id = make_mailing(team_api, subject="Next week")
    when = (manual_clock.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "send_at": when,
        "sender_email": "owner@example.com",
        "subscription_list_id": list_id,
        "campaign_mailing_id": mailing_id,
    }
    send_id = ok(team_api.post("/campaign_mailing_schedules", body))["data"][
        "campaign_mailing_send_id"
    ]

    viewer = signed_in(Role.VIEWER)
    page = viewer.get(f"/sends/{send_id}")
    assert "Cancel this send" not in page.text
    # A scheduled send a week away is not polled for.
    assert "hx-trigger" not in text_of_progress(page.text)
    forged = viewer.post(f"/sends/{send_id}/cancel", data={"csrf_token": csrf_token(viewer)})
    assert forged.status_code == 403

    editor = signed_in(Role.EDITOR)
    assert "Cancel this send" in editor.get(f"/sends/{send_id}").text
    done = editor.post(
        f"/sends/{send_id}/cancel", data={"csrf_token": csrf_token(editor)}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/sends/{send_id}"
    after = editor.get(f"/sends/{send_id}")
    assert "cancelled" in text(after.text, "#send-progress")
    assert "Cancel this send" not in after.text
    state = ok(team_api.get(f"/campaign_mailing_sends/{send_id}"))["data"]["attributes"]["state"]
    assert state == "cancelled"
    # Cancelling again is refused on the page, with the reason.
    again = editor.post(f"/sends/{send_id}/cancel", data={"csrf_token": csrf_token(editor)})
    assert again.status_code == 422
    assert "cannot be cancelled" in text(again.text, "[role=alert]")


def text_of_progress(html: str) -> str:
    found = BeautifulSoup(html, "html.parser").select_one("#send-progress")
    assert found is not None
    return str(found).split(">", 1)[0]


def test_subjects_and_addresses_are_escaped(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock, run_tick: Tick
) -> None:
    send_id = small_send(team_api, ["x@example.com"], subject="<script>alert(1)</script>")
    finish(manual_clock, run_tick)
    client = signed_in(Role.VIEWER)
    for path in ("/sends", f"/sends/{send_id}"):
        page = client.get(path).text
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_deliveries_and_sends_page_by_keyset_without_gaps_or_repeats(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock, run_tick: Tick
) -> None:
    people = [f"p{n:02}@example.com" for n in range(30)]
    list_id = make_list(team_api, "Thirty")
    add_subscribers(team_api, list_id, [{"email": address} for address in people])
    mailing_id = make_mailing(team_api, subject="Paged")
    send_ids = [
        str(send(team_api, mailing_id, list_id)["campaign_mailing_send_id"]) for _ in range(27)
    ]
    client = signed_in(Role.VIEWER)

    first = client.get(f"/sends/{send_ids[0]}")
    seen = [row[0] for row in page_rows(first.text, "deliveries-heading")]
    following = BeautifulSoup(first.text, "html.parser").find("a", string="Next deliveries")
    assert following is not None
    second = client.get(str(following["href"]))
    seen += [row[0] for row in page_rows(second.text, "deliveries-heading")]
    assert sorted(seen) == people
    assert "Next deliveries" not in second.text

    newest = client.get("/sends")
    listed = [a["href"] for a in BeautifulSoup(newest.text, "html.parser").select("tbody th a")]
    older = BeautifulSoup(newest.text, "html.parser").find("a", string="Older sends")
    assert older is not None
    rest = client.get(str(older["href"]))
    listed += [a["href"] for a in BeautifulSoup(rest.text, "html.parser").select("tbody th a")]
    assert listed == [f"/sends/{s}" for s in reversed(send_ids)]
    assert "Older sends" not in rest.text


def test_who_clicked_pages_one_subscriber_at_a_time(
    team_api: Api,
    team: Team,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    database: db.Database,
) -> None:
    campaign = sent_campaign(team_api, client, smtp_server, run_tick, manual_clock)
    with database.read_sessions() as session:
        account_id = session.scalar(select(Account.id).where(Account.username == team.account))
        assert account_id is not None
        scope = AccountScope(session, account_id)
        send_row = scope.by_uuid(CampaignMailingSend, campaign.send_id)
        assert send_row is not None
        emails = []
        after = None
        for _ in range(3):
            found, after = tables.clickers_after(scope, send_row.id, 2, after, 1)
            emails += [c.email for c in found]
            if after is None:
                break
    assert emails == ["alex@example.com", "blake@example.com"]
    assert after is None
