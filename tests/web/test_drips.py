"""Drip campaign pages: the drawing has every step with its counts, pausing through the page
pauses the campaign the API reads, and a viewer's forged pause is refused and recorded."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from dripstone import clock, db
from dripstone.accounts import service as accounts
from dripstone.audit import service as audit
from dripstone.db import AccountScope
from dripstone.users.models import Role
from dripstone.web import drips as drip_pages
from tests.conftest import Api
from tests.drips.conftest import run_tick, settings, smtp_server
from tests.drips.helpers import create, edge, graph, node, start
from tests.mailings.helpers import add_subscribers, make_list, make_mailing, ok, subscriber_id
from tests.web.conftest import Team, csrf_of, make_team

__all__ = ["run_tick", "settings", "smtp_server"]

NODES = ("t", "welcome", "wait", "opened", "tips", "bye")


def branching_campaign(api: Api) -> str:
    """News (two subscribers): trigger → welcome email → 1 day → opened welcome? yes: the tips
    email, no: exit. Started, so both are enrolled."""
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": "alex@example.com"}, {"email": "blake@example.com"}])
    welcome = make_mailing(api, subject="Welcome <aboard>")
    tips = make_mailing(api, subject="Three tips")
    nodes = graph(
        [
            node("t", "trigger"),
            node("welcome", "email", campaign_mailing_id=welcome),
            node("wait", "delay", amount=1, unit="days"),
            node("opened", "condition", check="opened", node="welcome"),
            node("tips", "email", campaign_mailing_id=tips),
            node("bye", "exit"),
        ],
        [
            edge("t", "welcome"),
            edge("welcome", "wait"),
            edge("wait", "opened"),
            edge("opened", "tips", "yes"),
            edge("opened", "bye", "no"),
        ],
    )
    campaign_id = create(api, news, nodes, name="Onboarding")
    start(api, campaign_id)
    return campaign_id


def team_api(client: TestClient, team: Team) -> Api:
    return Api(client, team.account, team.api_key, "/v1/marketing")


def test_the_drawing_has_every_step_with_its_counts(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Callable[[], None],
    manual_clock: clock.ManualClock,
) -> None:
    campaign_id = branching_campaign(team_api(client, team))
    for _ in range(3):  # both are enrolled and sent the welcome email; they wait a day
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    page = signed_in(Role.VIEWER).get(f"/drips/{campaign_id}")
    assert page.status_code == 200
    svg = re.search(r'<svg class="graph".*?</svg>', page.text, re.S)
    assert svg is not None
    drawn = re.findall(r'<g class="node" data-node="([^"]+)">', svg[0])
    assert sorted(drawn) == sorted(NODES)
    assert "Welcome &lt;aboard&gt;" in svg[0]  # the mailing's subject, escaped
    assert "sent 2 · opened 0 · clicked 0" in svg[0]
    assert "in 2 · waiting 2 · done 0" in svg[0]  # both wait at the delay
    assert "wait 1 day" in svg[0]
    assert "opened welcome" in svg[0]
    labels = re.findall(r'<text class="handle"[^>]*>([^<]+)</text>', svg[0])
    assert sorted(labels) == ["no", "yes"]
    # The same steps and counts, as a table for whoever cannot see the drawing.
    for step in NODES:
        assert f'id="step-{step}"' in page.text
    welcome = re.search(r'<tr id="step-welcome">(.*?)</tr>', page.text, re.S)
    assert welcome is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", welcome[1], re.S)
    ]
    assert cells == ["Welcome &lt;aboard&gt;", "wait", "2", "0", "2", "2", "0", "0"]
    enrollments = re.search(r'<table id="enrollments">(.*?)</table>', page.text, re.S)
    assert enrollments is not None
    assert "alex@example.com" in enrollments[1]
    assert "blake@example.com" in enrollments[1]
    # A viewer sees no buttons that change the campaign.
    assert "/pause" not in page.text
    assert "/start" not in page.text


def test_pausing_through_the_page_pauses_the_campaign(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    editor = signed_in(Role.EDITOR)
    page = editor.get(f"/drips/{campaign_id}")
    assert f'action="/drips/{campaign_id}/pause"' in page.text
    assert "data-confirm=" in page.text
    answer = editor.post(
        f"/drips/{campaign_id}/pause",
        data={"csrf_token": csrf_of(editor)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/drips/{campaign_id}"
    state = ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]["state"]
    assert state == "paused"
    paused = editor.get(f"/drips/{campaign_id}").text
    assert f'action="/drips/{campaign_id}/start"' in paused  # now it can be resumed
    # Pausing again is refused with the reason, and nothing changes.
    again = editor.post(f"/drips/{campaign_id}/pause", data={"csrf_token": csrf_of(editor)})
    assert again.status_code == 422
    assert "the campaign is paused, not started" in again.text


def test_a_viewers_forged_pause_is_refused_and_recorded(
    client: TestClient,
    team: Team,
    database: db.Database,
    signed_in: Callable[[Role], TestClient],
) -> None:
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    viewer = signed_in(Role.VIEWER)
    answer = viewer.post(f"/drips/{campaign_id}/pause", data={"csrf_token": csrf_of(viewer)})
    assert answer.status_code == 403
    assert ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]["state"] == "started"
    with database.read_sessions() as session:
        account = accounts.get_account(session, team.account)
        events = audit.list_events(AccountScope(session, account.id), items=10, page=1)
    refused = [e for e in events if e.status == 403]
    assert len(refused) == 1
    assert refused[0].action == "POST /drips/{campaign_id}/pause"
    assert refused[0].actor == "viewer"
    assert refused[0].object_ids == {"campaign_id": campaign_id}
    # The owner sees it in the audit log page.
    log = signed_in(Role.OWNER).get("/settings/audit").text
    assert "POST /drips/{campaign_id}/pause" in log
    assert '<span class="badge danger">403</span>' in log


def test_the_list_shows_each_campaign_with_its_state_and_counts(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Callable[[], None],
) -> None:
    campaign_id = branching_campaign(team_api(client, team))
    run_tick()
    page = signed_in(Role.VIEWER).get("/drips").text
    row = re.search(rf'<a href="/drips/{campaign_id}">Onboarding</a>(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]
    assert cells[:5] == ["started", "News", "existing", "2", "0"]


def test_the_list_counts_waiting_as_the_drawing_does_and_the_api_counts_at_once(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Callable[[], None],
    manual_clock: clock.ManualClock,
) -> None:
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    run_tick()
    alex = subscriber_id(api, "alex@example.com")
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [alex]}))  # global opt-out
    viewer = signed_in(Role.VIEWER)

    def listed() -> list[str]:
        page = viewer.get("/drips").text
        row = re.search(rf'<a href="/drips/{campaign_id}">Onboarding</a>(.*?)</tr>', page, re.S)
        assert row is not None, page
        found = re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
        return [re.sub(r"<[^>]+>", "", c).strip() for c in found][3:5]

    # Alex waits at the delay until the runner takes them out, at their next step: the list
    # says what the drawing says; the API's subscriber_count leaves them out at once.
    assert listed() == ["2", "0"]
    assert "in 2 · waiting 2 · done 0" in viewer.get(f"/drips/{campaign_id}").text
    assert (
        ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]["subscriber_count"] == 1
    )
    manual_clock.advance(timedelta(days=1, minutes=1))
    run_tick()
    run_tick()
    viewer = signed_in(Role.VIEWER)  # a day without a request ended the session
    # Blake did not open the welcome: out at "bye", completed; Alex left, not completed.
    assert listed() == ["0", "1"]


def test_enrollments_are_paged_by_subscriber_and_every_one_is_shown_once(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drip_pages, "ENROLLMENTS_PER_PAGE", 1)
    campaign_id = branching_campaign(team_api(client, team))
    viewer = signed_in(Role.VIEWER)
    seen = []
    path = f"/drips/{campaign_id}"
    for _ in range(3):
        page = viewer.get(path).text
        seen += re.findall(r'<a href="/subscribers/[^"]+">([^<]+)</a>', page)
        following = re.search(
            r'href="(/drips/[^"]+\?after=\d+)#enrollments-heading">Next page', page
        )
        if following is None:
            break
        path = following[1]
    assert seen == ["alex@example.com", "blake@example.com"]


def test_another_accounts_campaign_is_not_found_and_cannot_be_paused(
    client: TestClient,
    team: Team,
    database: db.Database,
    signed_in: Callable[[Role], TestClient],
) -> None:
    other = make_team(database)
    campaign_id = branching_campaign(team_api(client, other))
    editor = signed_in(Role.EDITOR)
    assert editor.get(f"/drips/{campaign_id}").status_code == 404
    answer = editor.post(f"/drips/{campaign_id}/pause", data={"csrf_token": csrf_of(editor)})
    assert answer.status_code == 404
    state = ok(team_api(client, other).get(f"/drip_campaigns/{campaign_id}"))["data"]
    assert state["attributes"]["state"] == "started"
    assert campaign_id not in editor.get("/drips").text
