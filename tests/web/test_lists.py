"""The lists pages in-process: counts, create, rename, delete, dynamic lists built from filter
rows and validated as the API validates them; roles, escaping and tenants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from dripstone.users.models import Role
from tests.conftest import Api
from tests.web.conftest import Team, csrf_of
from tests.web.test_subscribers import add, make_list, shown, team_api

SignedIn = Callable[[Role], TestClient]


def lists_of(api: Api) -> dict[str, Any]:
    return {lst["attributes"]["name"]: lst for lst in api.get("/subscription_lists").json()["data"]}


def segments_of(api: Api) -> dict[str, Any]:
    return {d["attributes"]["name"]: d for d in api.get("/dynamic_lists").json()["data"]}


def test_lists_with_counts_link_to_their_subscribers(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    vip = make_list(api, "VIP")
    ann = add(api, "ann@example.com")
    add(api, "bob@example.com")
    api.post("/subscriptions/subscribe", {"subscriber_ids": [ann], "subscription_list_ids": [vip]})

    page = client.get("/lists")
    assert page.status_code == 200
    assert f'<a href="/subscribers?list={vip}">VIP</a>' in page.text
    assert f'hx-get="/lists/{vip}/count"' in page.text
    assert client.get(f"/lists/{vip}/count").text == "1"
    everyone = next(lst["id"] for lst in lists_of(api).values() if lst["attributes"]["is_default"])
    assert client.get(f"/lists/{everyone}/count").text == "2"
    assert "Create list" not in page.text  # a viewer reads only
    assert shown(client.get(f"/subscribers?list={vip}")) == [ann]


def test_create_rename_and_delete_a_list(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    token = csrf_of(client)
    made = client.post(
        "/lists", data={"name": "Newsletter", "csrf_token": token}, follow_redirects=False
    )
    assert made.status_code == 303
    newsletter = lists_of(api)["Newsletter"]["id"]

    clash = client.post("/lists", data={"name": "newsletter", "csrf_token": token})
    assert clash.status_code == 422
    assert "a list named &#39;Newsletter&#39; already exists" in clash.text
    assert 'value="newsletter"' in clash.text
    refused = client.post(
        f"/lists/{newsletter}/rename", data={"name": "default", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert "may not be named &#39;default&#39;" in refused.text
    assert set(lists_of(api)) == {"All contacts", "Newsletter"}

    renamed = client.post(
        f"/lists/{newsletter}/rename", data={"name": "Weekly", "csrf_token": token}
    )
    assert renamed.status_code == 200
    assert set(lists_of(api)) == {"All contacts", "Weekly"}
    page = client.get("/lists")
    assert (
        'data-confirm="Delete the list Weekly? Its subscribers stay in All contacts."' in page.text
    )
    client.post(f"/lists/{newsletter}/delete", data={"csrf_token": token})
    assert set(lists_of(api)) == {"All contacts"}


def test_a_dynamic_list_built_from_rows(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    ann = add(api, "ann@example.com", custom_fields=[{"plan": "gold"}])
    add(api, "bob@example.com", custom_fields=[{"plan": "free"}])
    cy = add(api, "cy@example.org")
    token = csrf_of(client)
    form = {
        "name": "Gold or org",
        "subscription_list_id": "",
        "search": "",
        "join": ["and", "or", "and"],
        "field": ["plan", "email", ""],
        "op": ["is", "ends_with", "is"],
        "terms": ["gold, platinum", ".org", ""],
        "csrf_token": token,
    }
    made = client.post("/lists/segments", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    segment = segments_of(api)["Gold or org"]
    assert segment["attributes"]["filters"] == [
        [{"field": "plan", "op": "is", "terms": ["gold", "platinum"]}],
        [{"field": "email", "op": "ends_with", "terms": [".org"]}],
    ]
    assert segment["attributes"]["subscriber_count"] == 2
    count = client.get(f"/lists/segments/{segment['id']}/count")
    assert count.text == "2"
    assert shown(client.get("/subscribers", params={"segment": segment["id"]})) == [cy, ann]

    edit = client.get(f"/lists/segments/{segment['id']}")
    assert 'value="gold, platinum"' in edit.text
    assert '<option value="or" selected>' in edit.text

    narrowed = client.post(
        f"/lists/segments/{segment['id']}",
        data={"name": "Gold", "field": "plan", "op": "is", "terms": "gold", "csrf_token": token},
        follow_redirects=False,
    )
    assert narrowed.status_code == 303
    assert segments_of(api)["Gold"]["attributes"]["subscriber_count"] == 1
    client.post(f"/lists/segments/{segment['id']}/delete", data={"csrf_token": token})
    assert segments_of(api) == {}


def test_a_bad_row_is_marked_and_nothing_is_saved(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    form = {
        "name": "Broken",
        "join": ["and", "and"],
        "field": ["email", "first_name"],
        "op": ["is_not_empty", "starts_with"],
        "terms": ["", ""],
        "csrf_token": csrf_of(client),
    }
    refused = client.post("/lists/segments", data=form)
    assert refused.status_code == 422
    assert "Row 2: op &#39;starts_with&#39; needs at least one term" in refused.text
    assert 'value="Broken"' in refused.text
    assert segments_of(api) == {}
    unknown = client.post(
        "/lists/segments",
        data={
            "name": "Unknown",
            "field": "shoe_size",
            "op": "is",
            "terms": "9",
            "csrf_token": csrf_of(client),
        },
    )
    assert unknown.status_code == 422
    assert "unknown field" in unknown.text
    assert segments_of(api) == {}


def test_viewer_forged_posts_are_refused(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    vip = make_list(api, "VIP")
    token = csrf_of(client)
    for path, data in [
        ("/lists", {"name": "Mine"}),
        (f"/lists/{vip}/rename", {"name": "Mine"}),
        (f"/lists/{vip}/delete", {}),
        ("/lists/segments", {"name": "Mine"}),
    ]:
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert set(lists_of(api)) == {"All contacts", "VIP"}
    assert segments_of(api) == {}


def test_list_names_are_escaped_and_other_accounts_lists_are_not_found(
    signed_in: SignedIn, team: Team, other_api: Api
) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    make_list(api, "<script>alert(1)</script>")
    page = client.get("/lists")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text

    theirs = make_list(other_api, "Theirs")
    token = csrf_of(client)
    assert client.post(f"/lists/{theirs}/delete", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/subscribers?list={theirs}").status_code == 422
    assert client.get(f"/lists/{theirs}/count").status_code == 404
    assert "Theirs" in lists_of(other_api)
