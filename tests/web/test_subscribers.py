"""The subscribers pages in-process: search, filters, keyset paging, bulk actions as jobs,
a subscriber's page with edit, unsubscribe and timeline; roles, escaping and tenants."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient

from dripstone import db
from dripstone.subscribers.browse import subscriber_page
from dripstone.subscribers.models import Subscriber
from dripstone.subscribers.selection import Selection
from dripstone.users.models import Role
from tests.conftest import Api
from tests.web.conftest import Team, csrf_of

SignedIn = Callable[[Role], TestClient]
ROW = re.compile(r'<a href="/subscribers/([0-9a-f-]{36})">')


def team_api(client: TestClient, team: Team) -> Api:
    """The team's own account through its API key, to set up data as a user would."""
    return Api(client, team.account, team.api_key, "/v1/marketing")


def add(api: Api, email: str, **fields: Any) -> str:
    answer = api.post("/subscribers", {"subscriber": {"email": email, **fields}})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["id"])


def make_list(api: Api, name: str) -> str:
    answer = api.post("/subscription_lists", {"name": name})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["id"])


def shown(page: httpx.Response) -> list[str]:
    """The subscriber ids listed on a subscribers page, in order."""
    return ROW.findall(page.text)


def detail(api: Api, subscriber_id: str) -> dict[str, Any]:
    return dict(api.get(f"/subscribers/{subscriber_id}").json()["data"]["attributes"])


def test_search_finds_and_a_filter_narrows(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    ann = add(api, "ann@example.com", first_name="Ann", custom_fields=[{"plan": "gold"}])
    bob = add(api, "bob@example.com", first_name="Bob", custom_fields=[{"plan": "free"}])
    cy = add(api, "cy@example.org", first_name="Annabel")

    everyone = client.get("/subscribers")
    assert everyone.status_code == 200
    assert shown(everyone) == [cy, bob, ann]  # newest first

    assert shown(client.get("/subscribers", params={"search": "ann"})) == [cy, ann]
    # Typed as an address, the search looks for its words.
    assert shown(client.get("/subscribers", params={"search": "ann@example.com"})) == [ann]

    gold = client.get(
        "/subscribers", params={"field": "plan", "op": "is", "terms": "gold", "join": "and"}
    )
    assert shown(gold) == [ann]
    either = client.get(
        "/subscribers",
        params=[
            ("field", "plan"),
            ("op", "is"),
            ("terms", "gold"),
            ("join", "and"),
            ("field", "email"),
            ("op", "ends_with"),
            ("terms", ".org"),
            ("join", "or"),
        ],
    )
    assert shown(either) == [cy, ann]


def test_a_list_filter_and_a_bad_filter(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    vip = make_list(api, "VIP")
    ann = add(api, "ann@example.com")
    api.post("/subscribers", {"subscriber": {"email": "bob@example.com"}})
    assert (
        api.post(
            "/subscriptions/subscribe", {"subscriber_ids": [ann], "subscription_list_ids": [vip]}
        ).status_code
        == 200
    )

    assert shown(client.get("/subscribers", params={"list": vip})) == [ann]

    refused = client.get("/subscribers", params={"field": "email", "op": "contains", "terms": ""})
    assert refused.status_code == 422
    assert "Row 1: op &#39;contains&#39; needs at least one term" in refused.text
    unknown = client.get("/subscribers", params={"field": "nonesuch", "op": "is", "terms": "x"})
    assert unknown.status_code == 422
    assert "unknown field" in unknown.text


def test_paging_moves_on_and_back_without_offsets(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    rows = [{"email": f"p{i:03d}@example.com"} for i in range(120)]
    assert api.post("/subscribers_bulk_create", {"subscribers": rows}).status_code == 200

    first = client.get("/subscribers", params={"search": "example"})
    assert len(shown(first)) == 50
    assert "Newer" not in first.text
    older = re.search(r'href="(/subscribers\?[^"]*before=\d+)"', first.text)
    assert older is not None
    second = client.get(older[1].replace("&amp;", "&"))
    assert len(shown(second)) == 50
    assert not set(shown(second)) & set(shown(first))
    assert "search=example" in older[1]

    for forged in ("-1", "9" * 19, "1e9"):
        assert client.get("/subscribers", params={"before": forged}).status_code in (400, 422)
    third_link = re.search(r'href="(/subscribers\?[^"]*before=\d+)"', second.text)
    assert third_link is not None
    third = client.get(third_link[1].replace("&amp;", "&"))
    assert len(shown(third)) == 20
    assert 'rel="next"' not in third.text

    back = re.search(r'href="(/subscribers\?[^"]*after=\d+)"', third.text)
    assert back is not None
    assert shown(client.get(back[1].replace("&amp;", "&"))) == shown(second)


def test_bulk_unsubscribe_of_all_matching_runs_the_job(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    rows = [{"email": f"leave{i}@example.com"} for i in range(120)]
    rows.append({"email": "stay@example.org"})
    assert api.post("/subscribers_bulk_create", {"subscribers": rows}).status_code == 200

    query = {"field": "email", "op": "ends_with", "terms": "example.com", "join": "and"}
    confirm = client.get("/subscribers/bulk", params={**query, "action": "unsubscribe", "all": "1"})
    assert confirm.status_code == 200
    assert 'data-confirm="Unsubscribe 120 subscribers from all mail?"' in confirm.text

    started = client.post(
        "/subscribers/bulk",
        data={**query, "action": "unsubscribe", "all": "1", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    job_page = client.get(started.headers["location"])
    assert "succeeded" in job_page.text
    assert "120 of 120 done" in job_page.text
    progress = client.get(started.headers["location"] + "/progress")
    assert "hx-trigger" not in progress.text  # finished: the polling stops

    everyone = api.get("/subscribers", params={"items": 200}).json()["data"]
    opted_out = {s["attributes"]["email"] for s in everyone if s["attributes"]["unsubscribed"]}
    assert opted_out == {f"leave{i}@example.com" for i in range(120)}


def test_bulk_add_to_list_and_delete(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    vip = make_list(api, "VIP")
    ann, bob = add(api, "ann@example.com"), add(api, "bob@example.com")
    cy = add(api, "cy@example.com")
    token = csrf_of(client)

    ticked = client.post(
        "/subscribers/bulk",
        data={
            "action": "add_to_list",
            "all": "0",
            "ids": [ann, bob],
            "target": vip,
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert ticked.status_code == 303
    assert shown(client.get("/subscribers", params={"list": vip})) == [bob, ann]

    confirm = client.get("/subscribers/bulk", params={"action": "delete", "all": "1", "list": vip})
    assert 'data-confirm="Delete 2 subscribers? This cannot be undone."' in confirm.text
    deleted = client.post(
        "/subscribers/bulk",
        data={"action": "delete", "all": "1", "list": vip, "csrf_token": token},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert "succeeded" in client.get(deleted.headers["location"]).text
    assert shown(client.get("/subscribers")) == [cy]
    # The API's own bulk delete takes the same way out.
    assert api.delete("/subscribers_bulk_delete", params={"subscriber_ids": cy}).status_code == 200
    assert shown(client.get("/subscribers")) == []


def test_a_viewer_sees_no_actions_and_a_forged_post_changes_nothing(
    signed_in: SignedIn, team: Team
) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    ann = add(api, "ann@example.com", first_name="Ann")
    page = client.get("/subscribers")
    assert "Apply to all matching" not in page.text
    assert 'name="ids"' not in page.text
    assert '<button type="submit">Save</button>' not in client.get(f"/subscribers/{ann}").text

    token = csrf_of(client)
    for path, data in [
        ("/subscribers/bulk", {"action": "delete", "all": "1"}),
        (f"/subscribers/{ann}", {"email": "changed@example.com"}),
        (f"/subscribers/{ann}/unsubscribe", {}),
    ]:
        answer = client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, path
    kept = detail(api, ann)
    assert kept["email"] == "ann@example.com"
    assert kept["unsubscribed"] is False


def test_editing_with_a_bad_email_keeps_what_was_typed_and_saves_nothing(
    signed_in: SignedIn, team: Team
) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    ann = add(api, "ann@example.com", first_name="Ann", custom_fields=[{"plan": "gold"}])
    refused = client.post(
        f"/subscribers/{ann}",
        data={
            "email": "not an address",
            "first_name": "Annie",
            "last_name": "Typed",
            "custom_name": "plan",
            "custom_value": "platinum",
            "csrf_token": csrf_of(client),
        },
    )
    assert refused.status_code == 422
    assert 'aria-invalid="true" aria-describedby="f-email-error"' in refused.text
    assert 'value="not an address"' in refused.text
    assert 'value="Annie"' in refused.text
    assert 'value="platinum"' in refused.text
    kept = detail(api, ann)
    assert (kept["email"], kept["first_name"], kept["last_name"]) == ("ann@example.com", "Ann", "")
    assert kept["custom_fields"][0]["custom_field_value"] == "gold"


def test_editing_saves_fields_and_custom_fields(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    ann = add(api, "ann@example.com", custom_fields=[{"plan": "gold"}])
    add(api, "taken@example.com")
    token = csrf_of(client)
    clash = client.post(
        f"/subscribers/{ann}", data={"email": "taken@example.com", "csrf_token": token}
    )
    assert clash.status_code == 422
    assert "already a subscriber" in clash.text

    saved = client.post(
        f"/subscribers/{ann}",
        data={
            "email": "ann.new@example.com",
            "first_name": "Ann",
            "phone_number": "+14155550123",
            "custom_name": "plan",
            "custom_value": "platinum",
            "new_custom_name": "city",
            "new_custom_value": "Lyon",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    changed = detail(api, ann)
    assert changed["email"] == "ann.new@example.com"
    assert changed["phone_number"] == "+14155550123"
    custom = {c["custom_field_name"]: c["custom_field_value"] for c in changed["custom_fields"]}
    assert custom == {"plan": "platinum", "city": "Lyon"}


def test_unsubscribe_from_one_list_then_from_all_mail(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.EDITOR)
    api = team_api(client, team)
    vip = make_list(api, "VIP")
    ann = add(api, "ann@example.com")
    api.post("/subscriptions/subscribe", {"subscriber_ids": [ann], "subscription_list_ids": [vip]})
    page = client.get(f"/subscribers/{ann}")
    assert 'data-confirm="Unsubscribe this subscriber from VIP?"' in page.text
    token = csrf_of(client)

    one = client.post(f"/subscribers/{ann}/unsubscribe", data={"list": vip, "csrf_token": token})
    assert one.status_code == 200
    lists = {m["name"]: m["unsubscribed"] for m in detail(api, ann)["subscription_lists"]}
    assert lists == {"All contacts": False, "VIP": True}

    client.post(f"/subscribers/{ann}/unsubscribe", data={"csrf_token": token})
    assert detail(api, ann)["unsubscribed"] is True
    timeline = client.get(f"/subscribers/{ann}").text.split('id="timeline"')[1]
    assert timeline.index("All mail") < timeline.index("VIP") < timeline.index("to this account")


def test_names_and_custom_fields_are_shown_escaped(signed_in: SignedIn, team: Team) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    ann = add(
        api,
        "ann@example.com",
        first_name="<script>alert(1)</script>",
        custom_fields=[{"<b>note</b>": '<img src=x onerror="alert(2)">'}],
    )
    for page in (client.get("/subscribers"), client.get(f"/subscribers/{ann}")):
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    shown_page = client.get(f"/subscribers/{ann}").text
    assert "<img src=x" not in shown_page
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in shown_page
    assert "&lt;b&gt;note&lt;/b&gt;" in shown_page


def test_another_accounts_subscriber_is_not_found(
    signed_in: SignedIn, other_api: Api, database: db.Database
) -> None:
    client = signed_in(Role.OWNER)
    theirs = add(other_api, "theirs@example.com")
    assert client.get(f"/subscribers/{theirs}").status_code == 404
    token = csrf_of(client)
    edit = client.post(
        f"/subscribers/{theirs}", data={"email": "mine@example.com", "csrf_token": token}
    )
    assert edit.status_code == 404
    ticked = client.post(
        "/subscribers/bulk",
        data={"action": "delete", "all": "0", "ids": [theirs], "csrf_token": token},
    )
    assert ticked.status_code == 422
    everyone = next(
        lst["id"]
        for lst in other_api.get("/subscription_lists").json()["data"]
        if lst["attributes"]["is_default"]
    )
    started = other_api.post(
        "/subscriptions/bulk_global_subscribe", {"from_subscription_list_id": everyone}
    )
    jid = started.json()["data"]["jid"]
    assert client.get(f"/subscribers/jobs/{jid}").status_code == 404
    assert client.get(f"/subscribers/jobs/{jid}/progress").status_code == 404
    with database.transaction() as session:
        kept = session.query(Subscriber).filter_by(uuid=theirs).one()
        assert kept.email == "theirs@example.com"


def test_a_notice_is_chosen_by_code_never_written_by_the_address(
    signed_in: SignedIn, team: Team
) -> None:
    client = signed_in(Role.VIEWER)
    forged = client.get("/subscribers", params={"notice": "Your account is locked: call us"})
    assert "call us" not in forged.text
    counted = client.get("/subscribers", params={"notice": "deleted", "n": "1200"})
    assert "1,200 deleted" in counted.text


def test_a_rare_match_is_found_a_bounded_stretch_at_a_time(
    signed_in: SignedIn, team: Team, database: db.Database
) -> None:
    """Each page reads at most `scan` subscribers; walking on finds every match, once."""
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    rows = [
        {"email": f"{'rare' if i % 17 == 0 else 'common'}{i:03d}@example.com"} for i in range(200)
    ]
    assert api.post("/subscribers_bulk_create", {"subscribers": rows}).status_code == 200
    expected = {f"rare{i:03d}@example.com" for i in range(200) if i % 17 == 0}
    with database.read_sessions() as session:
        account_id = session.query(Subscriber.account_id).first()
        assert account_id is not None
        scope = db.AccountScope(session, account_id[0])
        selection = Selection(search="rare")
        seen: list[str] = []
        pages = []
        before = None
        while True:
            page = subscriber_page(scope, selection, limit=3, before_id=before, scan=30)
            pages.append(page)
            seen += [s.email or "" for s in page.subscribers]
            if page.older_than is None:
                break
            before = page.older_than
        assert sorted(seen) == sorted(expected)
        assert len(seen) == len(set(seen))
        assert any(p.partial and len(p.subscribers) < 3 for p in pages)
        # Back from the last page comes the one before it.
        last = pages[-1]
        assert last.newer_than is not None
        back = subscriber_page(scope, selection, limit=3, after_id=last.newer_than, scan=30)
        assert {s.email for s in back.subscribers} <= expected
