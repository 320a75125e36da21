"""The JSON a drip campaign's page reads: the edit preview says what the save then does, the
node counts, who waits at a node, one subscriber's path; refusals name the node and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dripstone import clock
from dripstone.drips import builder
from dripstone.users.models import Role
from dripstone.web import drip_insights
from tests.conftest import Api
from tests.drips.conftest import run_tick, settings, smtp_server
from tests.drips.helpers import edge, node, report
from tests.mailings.helpers import make_list, ok, subscriber_id
from tests.web.conftest import Team, csrf_of, make_team
from tests.web.test_drips import branching_campaign, team_api

__all__ = ["run_tick", "settings", "smtp_server"]

Tick = Callable[[], None]


def waiting_at_the_delay(
    client: TestClient, team: Team, run_tick: Tick, manual_clock: clock.ManualClock
) -> tuple[Api, str]:
    """The branching campaign with both subscribers sent the welcome and waiting a day."""
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    return api, campaign_id


def edited_graph(api: Api, campaign_id: str) -> dict[str, Any]:
    """The campaign's graph with the day's delay replaced by a 09:00 wait and the tips email
    replaced by an exit."""
    nodes = json.loads(
        ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]["drip_campaign_nodes"]
    )["nodes"]
    kept = [n for n in nodes if n["id"] not in ("wait", "tips")]
    return {
        "nodes": [*kept, node("nine", "wait_until", time="09:00"), node("end", "exit")],
        "edges": [
            edge("t", "welcome"),
            edge("welcome", "nine"),
            edge("nine", "opened"),
            edge("opened", "end", "yes"),
            edge("opened", "bye", "no"),
        ],
    }


def json_post(client: TestClient, path: str, body: object) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})


def test_the_edit_preview_says_what_saving_the_edit_then_does(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    edited = edited_graph(api, campaign_id)
    editor = signed_in(Role.EDITOR)

    answer = json_post(editor, f"/drips/{campaign_id}/edit-preview", edited)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "changes": [{"node_id": "wait", "count": 2, "outcome": "moves", "to": "nine"}]
    }
    # Nothing moved yet; saving the same graph moves them where the preview said.
    assert {e["node_id"] for e in report(api, campaign_id)["enrollments"]} == {"wait"}
    body = {"drip_campaign": {"drip_campaign_nodes": json.dumps(edited)}}
    ok(api.put(f"/drip_campaigns/{campaign_id}", body))
    assert [e["node_id"] for e in report(api, campaign_id)["enrollments"]] == ["nine", "nine"]


def test_the_edit_preview_counts_who_leaves_when_their_step_is_removed(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    ended = {"nodes": edited_graph(api, campaign_id)["nodes"][:2], "edges": [edge("t", "welcome")]}

    answer = json_post(signed_in(Role.EDITOR), f"/drips/{campaign_id}/edit-preview", ended)

    assert answer.json() == {
        "changes": [{"node_id": "wait", "count": 2, "outcome": "leaves", "to": None}]
    }


def test_an_edit_preview_of_a_broken_graph_names_the_node_as_the_save_would(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    broken = edited_graph(api, campaign_id)
    opened = next(n for n in broken["nodes"] if n["id"] == "opened")
    opened["data"]["node"] = "nine"  # not an email node
    editor = signed_in(Role.EDITOR)

    answer = json_post(editor, f"/drips/{campaign_id}/edit-preview", broken)

    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["node_id"] == "opened"
    assert error["field"].endswith(".data.node")
    assert "'nine' is not an email node" in error["message"]
    saved = api.put(
        f"/drip_campaigns/{campaign_id}",
        {"drip_campaign": {"drip_campaign_nodes": json.dumps(broken)}},
    )
    assert saved.status_code == 422
    assert saved.json()["error"].endswith(error["message"])

    # A mailing of no one in this account: refused naming the email node.
    stranger = edited_graph(api, campaign_id)
    welcome = next(n for n in stranger["nodes"] if n["id"] == "welcome")
    welcome["data"]["campaign_mailing_id"] = "11111111-1111-4111-8111-111111111111"
    answer = json_post(editor, f"/drips/{campaign_id}/edit-preview", stranger)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["node_id"] == "welcome"
    # Not a graph at all.
    answer = json_post(editor, f"/drips/{campaign_id}/edit-preview", {"nodes": "none"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "nodes"
    assert json_post(editor, f"/drips/{campaign_id}/edit-preview", [1, 2]).status_code == 400


def test_a_viewer_may_not_preview_edits_nor_anyone_without_the_csrf_token(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    edited = edited_graph(api, campaign_id)
    viewer = signed_in(Role.VIEWER)
    assert json_post(viewer, f"/drips/{campaign_id}/edit-preview", edited).status_code == 403
    editor = signed_in(Role.EDITOR)
    forged = editor.post(f"/drips/{campaign_id}/edit-preview", json=edited)
    assert forged.status_code == 403


def test_node_counts_show_each_step_and_its_emails(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    _, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)

    answer = signed_in(Role.VIEWER).get(f"/drips/{campaign_id}/node-counts")

    assert answer.status_code == 200
    found = answer.json()
    assert found["state"] == "started"
    assert set(found["nodes"]) == {"t", "welcome", "wait", "opened", "tips", "bye"}
    assert found["nodes"]["welcome"] == {
        "entered": 2,
        "waiting": 0,
        "completed": 2,
        "sent": 2,
        "opened": 0,
        "clicked": 0,
    }
    assert found["nodes"]["wait"]["waiting"] == 2
    assert found["nodes"]["tips"]["entered"] == 0


def test_another_accounts_campaign_has_no_counts_here(
    client: TestClient, database: Any, signed_in: Callable[[Role], TestClient]
) -> None:
    campaign_id = branching_campaign(team_api(client, make_team(database)))
    viewer = signed_in(Role.VIEWER)
    answer = viewer.get(f"/drips/{campaign_id}/node-counts")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["field"] == "id"
    assert viewer.get(f"/drips/{campaign_id}/nodes/wait/waiting").status_code == 404


def test_the_people_waiting_at_a_node_come_a_page_at_a_time(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drip_insights, "WAITING_PER_PAGE", 1)
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    viewer = signed_in(Role.VIEWER)

    first = viewer.get(f"/drips/{campaign_id}/nodes/wait/waiting").json()
    second = viewer.get(f"/drips/{campaign_id}/nodes/wait/waiting?after={first['next']}").json()

    people = first["subscribers"] + second["subscribers"]
    assert [p["email"] for p in people] == ["alex@example.com", "blake@example.com"]
    assert people[0]["id"] == subscriber_id(api, "alex@example.com")
    due = {e["email"]: e["next_run_at"] for e in report(api, campaign_id)["enrollments"]}
    for person in people:
        assert person["next_run_at"].replace("+00:00", "Z") == due[person["email"]]
    assert second["next"] is None
    assert viewer.get(f"/drips/{campaign_id}/nodes/tips/waiting").json()["subscribers"] == []
    assert viewer.get(f"/drips/{campaign_id}/nodes/wait/waiting?after=-1").status_code == 400
    unknown = viewer.get(f"/drips/{campaign_id}/nodes/nowhere%00/waiting")
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "node_id"


def test_a_subscribers_path_lists_the_steps_they_entered_in_order(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    api, campaign_id = waiting_at_the_delay(client, team, run_tick, manual_clock)
    alex = subscriber_id(api, "alex@example.com")
    viewer = signed_in(Role.VIEWER)

    path = viewer.get(f"/drips/{campaign_id}/subscribers/{alex}/path").json()

    assert [v["node_id"] for v in path["visits"]] == ["t", "welcome", "wait"]
    assert (path["current"], path["state"]) == ("wait", "active")
    manual_clock.advance(timedelta(days=1, minutes=1))
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    viewer = signed_in(Role.VIEWER)  # the session idled out over the day
    path = viewer.get(f"/drips/{campaign_id}/subscribers/{alex}/path").json()
    assert [v["node_id"] for v in path["visits"]] == ["t", "welcome", "wait", "opened", "bye"]
    assert (path["current"], path["state"]) == (None, "completed")
    stranger = "11111111-1111-4111-8111-111111111111"
    missing = viewer.get(f"/drips/{campaign_id}/subscribers/{stranger}/path")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["field"] == "subscriber_id"


def test_the_page_simulates_as_the_api_does_and_a_viewer_may_not(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
) -> None:
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    body = {"facts": {"opened": ["welcome"]}, "start_at": "2026-05-01T08:00:00Z"}
    editor = signed_in(Role.EDITOR)

    answer = json_post(editor, f"/drips/{campaign_id}/simulate", body)

    assert answer.status_code == 200, answer.text
    assert answer.json() == ok(api.post(f"/drip_campaigns/{campaign_id}/simulate", body))
    steps = answer.json()["data"]["steps"]
    assert [(s["node_id"], s["branch"]) for s in steps][3:] == [("opened", "yes"), ("tips", None)]
    refused = json_post(editor, f"/drips/{campaign_id}/simulate", {"facts": {"opened": ["t"]}})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "facts.opened"
    malformed = json_post(editor, f"/drips/{campaign_id}/simulate", {"facts": 1})
    assert malformed.status_code == 400
    assert malformed.json()["errors"][0]["field"] == "facts"
    zone = {"facts": {"timezone": "Mars/Base"}}
    unknown = json_post(editor, f"/drips/{campaign_id}/simulate", zone)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "facts.timezone"
    viewer = signed_in(Role.VIEWER)
    assert json_post(viewer, f"/drips/{campaign_id}/simulate", body).status_code == 403


def test_the_page_simulates_for_a_subscriber_named_by_address(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    api = team_api(client, team)
    campaign_id = branching_campaign(api)
    editor = signed_in(Role.EDITOR)
    at = {"facts": {}, "start_at": "2026-05-01T08:00:00Z"}
    by_id = {"subscriber_id": subscriber_id(api, "alex@example.com"), **at}
    expected = ok(api.post(f"/drip_campaigns/{campaign_id}/simulate", by_id))
    typed = {"subscriber_email": " Alex@Example.com ", **at}
    answer = json_post(editor, f"/drips/{campaign_id}/simulate", typed)
    assert answer.status_code == 200, answer.text
    assert answer.json() == expected
    unknown = {"subscriber_email": "nobody@example.com", "facts": {}}
    refused = json_post(editor, f"/drips/{campaign_id}/simulate", unknown)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "subscriber_email"
    assert "nobody@example.com" in refused.json()["errors"][0]["message"]


@pytest.mark.parametrize("template", sorted(builder.TEMPLATES))
def test_a_template_makes_a_draft_with_placeholder_mailings_that_can_start(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient], template: str
) -> None:
    api = team_api(client, team)
    news = make_list(api, "News")
    editor = signed_in(Role.EDITOR)
    page = editor.get("/drips").text
    assert 'action="/drips/from-template"' in page
    assert f'value="{template}"' in page

    form = {"csrf_token": csrf_of(editor), "template": template, "list": news, "name": ""}
    answer = editor.post("/drips/from-template", data=form, follow_redirects=False)

    assert answer.status_code == 303
    campaign_id = answer.headers["location"].removeprefix("/drips/")
    made = ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]
    assert (made["state"], made["name"]) == ("draft", builder.TEMPLATES[template].title)
    assert made["subscription_list_id"] == news
    nodes = json.loads(made["drip_campaign_nodes"])["nodes"]
    assert all("position" in n for n in nodes)
    mailing_ids = {n["data"]["campaign_mailing_id"] for n in nodes if n["type"] == "email"}
    assert len(mailing_ids) == len(builder.TEMPLATES[template].emails)
    for mailing_id in mailing_ids:
        mailing = ok(api.get(f"/campaign_mailings/{mailing_id}"))["data"]["attributes"]
        assert "edit me" in mailing["subject"]
        assert "Edit me" in mailing["html_part"]
    # A second one from the same template gets mailings of its own.
    again = editor.post("/drips/from-template", data=form, follow_redirects=False)
    assert again.status_code == 303
    assert ok(api.post(f"/drip_campaigns/{campaign_id}/start"))["data"]["jids"] is not None


def test_a_template_is_refused_for_a_viewer_and_for_bad_input(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    api = team_api(client, team)
    news = make_list(api, "News")
    viewer = signed_in(Role.VIEWER)
    assert 'action="/drips/from-template"' not in viewer.get("/drips").text
    form = {"csrf_token": csrf_of(viewer), "template": "welcome_series", "list": news}
    assert viewer.post("/drips/from-template", data=form).status_code == 403
    editor = signed_in(Role.EDITOR)
    for bad, field in (({"template": "newsletter"}, "template"), ({"list": "nope"}, "list")):
        typed = {**form, "csrf_token": csrf_of(editor), **bad}
        answer = editor.post("/drips/from-template", data=typed)
        assert answer.status_code == 422
        assert "field-error" in answer.text, field
    assert ok(api.get("/drip_campaigns"))["data"] == []
    subjects = [m["attributes"]["subject"] for m in ok(api.get("/campaign_mailings"))["data"]]
    assert subjects == []  # nothing half-written
