"""The drip builder's routes: the page embeds what the editor needs, a saved graph is the one
the API then reads, a refused graph names its node and saves nothing, and only editors with
the page's CSRF token save; a new campaign from the list page opens in the builder."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.audit import service as audit
from dripstone.db import AccountScope
from dripstone.users.models import Role
from dripstone.web.templating import vendor_url
from tests.drips.helpers import create, edge, node
from tests.mailings.helpers import make_list, make_mailing, ok
from tests.web.conftest import Team, csrf_of
from tests.web.test_drips import team_api


def embedded(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="builder-data">(.*?)</script>', page)
    assert found is not None
    loaded: dict[str, Any] = json.loads(found[1])
    return loaded


def stored_graph(client: TestClient, team: Team, campaign_id: str) -> dict[str, Any]:
    found = ok(team_api(client, team).get(f"/drip_campaigns/{campaign_id}"))["data"]
    loaded: dict[str, Any] = json.loads(found["attributes"]["drip_campaign_nodes"])
    return loaded


def welcome_series(client: TestClient, team: Team) -> tuple[str, dict[str, Any]]:
    """A draft (trigger → welcome) on News, and the graph an editor would save next: welcome →
    2 days → clicked welcome? yes: tips, no: nudge."""
    api = team_api(client, team)
    news = make_list(api, "News")
    welcome = make_mailing(api, subject="Welcome")
    tips = make_mailing(api, subject="Tips")
    nudge = make_mailing(api, subject="Did you see?")
    start = [node("t", "trigger"), node("welcome", "email", campaign_mailing_id=welcome)]
    campaign_id = create(api, news, json.dumps({"nodes": start, "edges": [edge("t", "welcome")]}))
    built = {
        "nodes": [
            *start,
            node("wait", "delay", amount=2, unit="days"),
            node("clicked", "condition", check="clicked", node="welcome"),
            node("tips", "email", campaign_mailing_id=tips, subject="Our tips"),
            node("nudge", "email", campaign_mailing_id=nudge),
        ],
        "edges": [
            edge("t", "welcome"),
            edge("welcome", "wait"),
            edge("wait", "clicked"),
            edge("clicked", "tips", "yes"),
            edge("clicked", "nudge", "no"),
        ],
    }
    return campaign_id, built


def put_graph(client: TestClient, campaign_id: str, graph: object, token: str | None) -> Any:
    headers = {} if token is None else {"X-CSRF-Token": token}
    return client.put(f"/drips/{campaign_id}/graph", json=graph, headers=headers)


def test_the_page_embeds_the_graph_mailings_lists_and_time_zones(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    campaign_id, _ = welcome_series(client, team)
    editor = signed_in(Role.EDITOR)
    page = editor.get(f"/drips/{campaign_id}").text
    data = embedded(page)
    assert data["graph"] == stored_graph(client, team, campaign_id)
    assert sorted(m["subject"] for m in data["mailings"]) == ["Did you see?", "Tips", "Welcome"]
    assert all(m["url"] == f"/mailings/{m['id']}" for m in data["mailings"])
    assert "News" in [lst["name"] for lst in data["lists"]]
    assert "Europe/Berlin" in data["time_zones"]
    assert data["time_zones"] == sorted(data["time_zones"])
    assert data["state"] == "draft"
    assert data["editable"] is True
    assert data["csrf_token"] == csrf_of(editor)
    assert vendor_url("@dagrejs/dagre") in page
    assert 'data-add="email"' in page
    # A viewer gets the same steps to look at, without the palette or a save button.
    viewer_page = signed_in(Role.VIEWER).get(f"/drips/{campaign_id}").text
    assert embedded(viewer_page)["editable"] is False
    assert "data-add=" not in viewer_page
    assert 'data-command="save"' not in viewer_page


def test_a_saved_graph_is_the_one_the_api_reads_and_the_save_is_audited(
    client: TestClient,
    team: Team,
    database: db.Database,
    signed_in: Callable[[Role], TestClient],
) -> None:
    campaign_id, built = welcome_series(client, team)
    editor = signed_in(Role.EDITOR)
    built["nodes"][0]["data"]["note"] = "kept by the editor, dropped by the service"
    answer = put_graph(editor, campaign_id, built, csrf_of(editor))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["saved"] is True
    stored = stored_graph(client, team, campaign_id)
    assert body["graph"] == stored
    assert [n["id"] for n in stored["nodes"]] == [n["id"] for n in built["nodes"]]
    assert stored["nodes"][4]["data"]["subject"] == "Our tips"
    assert stored["nodes"][2]["data"] == {"amount": 2, "unit": "days"}
    pairs = [(e["source"], e["target"], e["sourceHandle"]) for e in stored["edges"]]
    assert ("clicked", "nudge", "no") in pairs
    assert all(n["position"] == {"x": 0, "y": 0} for n in stored["nodes"])
    # The page now starts from the saved graph.
    assert embedded(editor.get(f"/drips/{campaign_id}").text)["graph"] == stored
    with database.read_sessions() as session:
        account = accounts.get_account(session, team.account)
        events = audit.list_events(AccountScope(session, account.id), items=10, page=1)
    saves = [e for e in events if e.action == "PUT /drips/{campaign_id}/graph"]
    assert len(saves) == 1
    assert saves[0].actor == "editor"
    assert saves[0].object_ids == {"campaign_id": campaign_id}


def test_a_refused_graph_names_its_node_and_saves_nothing(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    campaign_id, built = welcome_series(client, team)
    before = stored_graph(client, team, campaign_id)
    editor = signed_in(Role.EDITOR)
    without_no = {**built, "edges": built["edges"][:-1]}
    answer = put_graph(editor, campaign_id, without_no, csrf_of(editor))
    assert answer.status_code == 422
    assert answer.json() == {
        "errors": [
            {
                "node_id": "clicked",
                "field": "nodes[3]",
                "message": "condition node 'clicked' has no 'no' edge",
            }
        ]
    }
    # An email step with no mailing chosen, and one whose mailing is not the account's.
    built["nodes"][5]["data"] = {}
    answer = put_graph(editor, campaign_id, built, csrf_of(editor))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["node_id"] == "nudge"
    assert answer.json()["errors"][0]["field"] == "nodes[5].data.campaign_mailing_id"
    built["nodes"][5]["data"] = {"campaign_mailing_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12}
    answer = put_graph(editor, campaign_id, built, csrf_of(editor))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["node_id"] == "nudge"
    assert "no campaign mailing" in answer.json()["errors"][0]["message"]
    # Not an object at all: refused as malformed, as the API refuses it.
    assert put_graph(editor, campaign_id, ["nodes"], csrf_of(editor)).status_code == 400
    assert stored_graph(client, team, campaign_id) == before


def test_only_an_editor_with_the_pages_token_saves(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    campaign_id, built = welcome_series(client, team)
    before = stored_graph(client, team, campaign_id)
    viewer = signed_in(Role.VIEWER)
    assert put_graph(viewer, campaign_id, built, csrf_of(viewer)).status_code == 403
    editor = signed_in(Role.EDITOR)
    assert put_graph(editor, campaign_id, built, None).status_code == 403
    assert put_graph(editor, campaign_id, built, "not-the-token").status_code == 403
    assert stored_graph(client, team, campaign_id) == before


def test_a_new_campaign_opens_in_the_builder_with_only_its_trigger(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    news = make_list(team_api(client, team), "News")
    editor = signed_in(Role.EDITOR)
    page = editor.get("/drips").text
    assert 'action="/drips"' in page
    assert f'<option value="{news}">News</option>' in page
    refused = editor.post(
        "/drips",
        data={"csrf_token": csrf_of(editor), "name": " ", "subscription_list_id": news},
    )
    assert refused.status_code == 422
    assert 'id="f-name-error"' in refused.text
    answer = editor.post(
        "/drips",
        data={
            "csrf_token": csrf_of(editor),
            "name": "Onboarding",
            "subscription_list_id": news,
            "start_trigger": "both",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    campaign_id = answer.headers["location"].removeprefix("/drips/")
    found = ok(team_api(client, team).get(f"/drip_campaigns/{campaign_id}"))["data"]
    assert found["attributes"]["name"] == "Onboarding"
    assert found["attributes"]["state"] == "draft"
    assert found["attributes"]["start_trigger"] == "both"
    assert found["attributes"]["subscription_list_id"] == news
    assert json.loads(found["attributes"]["drip_campaign_nodes"]) == {
        "nodes": [{"id": "trigger", "type": "trigger", "data": {}}],
        "edges": [],
    }
    assert embedded(editor.get(answer.headers["location"]).text)["graph"]["edges"] == []
    # Nothing to send yet: it cannot start.
    started = editor.post(f"/drips/{campaign_id}/start", data={"csrf_token": csrf_of(editor)})
    assert started.status_code == 422
    assert "the campaign has no email step" in started.text
    # A viewer may not create one.
    viewer = signed_in(Role.VIEWER)
    assert 'action="/drips"' not in viewer.get("/drips").text
    forged = viewer.post(
        "/drips",
        data={"csrf_token": csrf_of(viewer), "name": "X", "subscription_list_id": news},
    )
    assert forged.status_code == 403
