"""The drip-campaign endpoints as a client sees them: creating and editing campaigns (and
every way a graph is refused), listing, the lifecycle (start, pause, delete), tenant
isolation, and the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from dripstone import clock, db
from dripstone.mailings.models import CampaignMailing
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, create, edge, graph, node, report, start, two_emails
from tests.mailings.helpers import add_subscribers, job, make_list, make_mailing, ok
from tests.subscribers.helpers import assert_error, errors_string

Tick = Callable[[], None]
NODES = "drip_campaign_nodes"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
# What the manual clock says when a test starts.
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LIST_KEYS = {
    "name",
    "subscription_list_id",
    "subscription_list_name",
    "state",
    "created_at",
    "updated_at",
    "start_trigger",
    "subscriber_count",
    "subscriber_completed_count",
}
SINGLE_KEYS = LIST_KEYS | {NODES, "drip_campaign_tree_blob"}


def campaign_body(**fields: Any) -> dict[str, Any]:
    return {"drip_campaign": fields}


def attributes(api: Api, campaign_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get(f"/drip_campaigns/{campaign_id}"))["data"]["attributes"]
    return found


def listed(api: Api, **params: str) -> list[str]:
    """The names of the campaigns GET /drip_campaigns lists, in its order."""
    return [c["attributes"]["name"] for c in ok(api.get("/drip_campaigns", params=params))["data"]]


def listed_ids(api: Api) -> list[str]:
    return [c["id"] for c in ok(api.get("/drip_campaigns"))["data"]]


def subscriber_ids(api: Api) -> dict[str, str]:
    return {s["attributes"]["email"]: s["id"] for s in ok(api.get("/subscribers"))["data"]}


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def mailing(api: Api) -> str:
    return make_mailing(api, subject="Hello {{ first_name | default('friend') }}")


def simple(mailing_id: str) -> str:
    return chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=mailing_id))


# --- create and read ----------------------------------------------------------------------------


def test_create_makes_a_draft_with_its_graph_and_tree_as_json_strings(
    api: Api, news: str, mailing: str
) -> None:
    sent = graph(
        [
            node("t", "trigger"),
            node("member", "condition", check="in_list", list_id=news),
            node("hello", "email", campaign_mailing_id=mailing),
            node("end", "exit"),
        ],
        [
            edge("t", "member"),
            edge("member", "hello", "yes"),
            edge("member", "end", "no"),
        ],
    )
    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="Welcome",
            subscription_list_id=news,
            start_trigger="existing",
            drip_campaign_nodes=sent,
        ),
    )
    created = ok(response)["data"]
    assert created["type"] == "drip_campaign"
    campaign = created["id"]

    body = ok(api.get(f"/drip_campaigns/{campaign}"))
    assert body["data"]["id"] == campaign
    assert body["data"]["type"] == "drip_campaign"
    got = body["data"]["attributes"]
    assert set(got) == SINGLE_KEYS
    assert created["attributes"] == got
    assert {k: got[k] for k in LIST_KEYS - {"created_at", "updated_at"}} == {
        "name": "Welcome",
        "subscription_list_id": news,
        "subscription_list_name": "News",
        "state": "draft",
        "start_trigger": "existing",
        "subscriber_count": 0,
        "subscriber_completed_count": 0,
    }
    assert isinstance(got[NODES], str)
    assert isinstance(got["drip_campaign_tree_blob"], str)
    assert json.loads(got[NODES]) == json.loads(sent)

    def leaf(node_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": node_id, "type": kind, "data": data, "children": []}

    member = leaf("member", "condition", {"check": "in_list", "list_id": news})
    member["children"] = [
        {"handle": "yes", "node": leaf("hello", "email", {"campaign_mailing_id": mailing})},
        {"handle": "no", "node": leaf("end", "exit", {})},
    ]
    root = leaf("t", "trigger", {})
    root["children"] = [{"handle": None, "node": member}]
    assert json.loads(got["drip_campaign_tree_blob"]) == root

    (row,) = ok(api.get("/drip_campaigns"))["data"]
    assert row["id"] == campaign
    assert set(row["attributes"]) == LIST_KEYS  # the list form carries no graph
    assert row["attributes"] == {k: got[k] for k in LIST_KEYS}


def test_the_graph_may_be_sent_as_an_object(api: Api, news: str, mailing: str) -> None:
    sent = json.loads(two_emails(mailing, mailing))
    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="As object", subscription_list_id=news, start_trigger="both", **{NODES: sent}
        ),
    )
    campaign = ok(response)["data"]["id"]
    got = attributes(api, campaign)
    assert isinstance(got[NODES], str)
    assert json.loads(got[NODES]) == sent
    assert got["start_trigger"] == "both"

    edited = json.loads(simple(mailing))
    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(**{NODES: edited})))
    assert json.loads(attributes(api, campaign)[NODES]) == edited


def test_a_campaign_on_all_contacts_names_the_default_list(api: Api, mailing: str) -> None:
    (default,) = [
        lst for lst in ok(api.get("/subscription_lists"))["data"] if lst["attributes"]["is_default"]
    ]
    campaign = create(api, default["id"], simple(mailing), trigger="subscription")
    got = attributes(api, campaign)
    assert (got["subscription_list_id"], got["subscription_list_name"]) == (
        default["id"],
        default["attributes"]["name"],
    )
    assert got["start_trigger"] == "subscription"


@pytest.mark.parametrize(
    "missing", ["name", "subscription_list_id", "start_trigger", "drip_campaign_nodes"]
)
def test_create_without_a_field_is_refused_naming_it(
    api: Api, news: str, mailing: str, missing: str
) -> None:
    fields = {
        "name": "Welcome",
        "subscription_list_id": news,
        "start_trigger": "existing",
        NODES: simple(mailing),
    }
    del fields[missing]
    body = assert_error(
        api.post("/drip_campaigns", campaign_body(**fields)), 422, code="invalid", field=missing
    )
    assert body["error"] == f"{missing}: is required"
    assert listed_ids(api) == []


def test_create_without_the_wrapper_or_with_unknown_keys_is_refused(
    api: Api, news: str, mailing: str
) -> None:
    fields = {
        "name": "Welcome",
        "subscription_list_id": news,
        "start_trigger": "existing",
        NODES: simple(mailing),
    }
    assert_error(api.post("/drip_campaigns", fields), 422, field="drip_campaign")
    assert_error(
        api.post("/drip_campaigns", campaign_body(**fields, state="started")),
        422,
        field="drip_campaign.state",
    )
    assert_error(
        api.post("/drip_campaigns", campaign_body(**{**fields, "name": "   "})),
        422,
        field="drip_campaign.name",
    )
    assert listed_ids(api) == []


def test_an_unknown_list_is_refused_naming_it(api: Api, news: str, mailing: str) -> None:
    body = assert_error(
        api.post(
            "/drip_campaigns",
            campaign_body(
                name="Welcome",
                subscription_list_id=UNKNOWN_ID,
                start_trigger="existing",
                drip_campaign_nodes=simple(mailing),
            ),
        ),
        422,
        code="invalid",
        field="subscription_list_id",
    )
    assert UNKNOWN_ID in body["error"]
    assert_error(
        api.post(
            "/drip_campaigns",
            campaign_body(
                name="Welcome",
                subscription_list_id="not-a-uuid",
                start_trigger="existing",
                drip_campaign_nodes=simple(mailing),
            ),
        ),
        422,
        field="drip_campaign.subscription_list_id",
    )
    assert listed_ids(api) == []


@pytest.mark.parametrize("trigger", ["sometimes", "", "Existing", None])
def test_an_unknown_trigger_is_refused(
    api: Api, news: str, mailing: str, trigger: str | None
) -> None:
    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="Welcome",
            subscription_list_id=news,
            start_trigger=trigger,
            drip_campaign_nodes=simple(mailing),
        ),
    )
    # null is "not sent": required on create.
    assert_error(
        response, 422, field="start_trigger" if trigger is None else "drip_campaign.start_trigger"
    )
    assert listed_ids(api) == []


def test_get_put_start_pause_delete_and_report_of_an_unknown_campaign_are_404(api: Api) -> None:
    for bad in (UNKNOWN_ID, "not-a-uuid"):
        base = f"/drip_campaigns/{bad}"
        assert_error(api.get(base), 404, code="not_found", field="id")
        assert_error(api.put(base, campaign_body(name="x")), 404, code="not_found", field="id")
        assert_error(api.post(f"{base}/start"), 404, code="not_found", field="id")
        assert_error(api.post(f"{base}/pause"), 404, code="not_found", field="id")
        assert_error(api.delete(base), 404, code="not_found", field="id")
        assert_error(api.get(f"{base}/report"), 404, code="not_found", field="id")


# --- graphs that are refused ----------------------------------------------------------------------

# Each case: the graph (given a real mailing id and the list's id), then the expected
# details.path (None: the service names the node only), details.node and a part of the message.
GraphCase = tuple[Callable[[str, str], str], str | None, str | None, str]

GRAPH_PROBLEMS: dict[str, GraphCase] = {
    "not JSON": (lambda m, lst: "{", "$", None, "not valid JSON"),
    "not an object": (lambda m, lst: "[1, 2]", "$", None, "must be a JSON object"),
    "nodes not a list": (
        lambda m, lst: json.dumps({"nodes": {}, "edges": []}),
        "nodes",
        None,
        "must be a list",
    ),
    "no trigger": (
        lambda m, lst: chain(node("a", "email", campaign_mailing_id=m)),
        "nodes",
        None,
        "exactly one trigger",
    ),
    "two triggers": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("a", "email", campaign_mailing_id=m),
                node("t2", "trigger"),
            ],
            [edge("t", "a"), edge("t2", "a")],
        ),
        "nodes[2]",
        "t2",
        "second trigger",
    ),
    "unreachable node": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("a", "email", campaign_mailing_id=m),
                node("lost", "exit"),
            ],
            [edge("t", "a")],
        ),
        "nodes[2]",
        "lost",
        "not reachable from the trigger",
    ),
    "cycle": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("a", "email", campaign_mailing_id=m),
                node("d1", "delay", amount=1, unit="days"),
                node("d2", "delay", amount=1, unit="days"),
            ],
            [edge("t", "a"), edge("a", "d1"), edge("d1", "d2"), edge("d2", "d1")],
        ),
        "nodes[2]",
        "d1",
        "cycle: d1 -> d2 -> d1",
    ),
    "condition without no": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("a", "email", campaign_mailing_id=m),
                node("c", "condition", check="opened", node="a"),
                node("end", "exit"),
            ],
            [edge("t", "a"), edge("a", "c"), edge("c", "end", "yes")],
        ),
        "nodes[2]",
        "c",
        "has no 'no' edge",
    ),
    "split without b": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("s", "split", weights={"a": 50, "b": 50}),
                node("a", "email", campaign_mailing_id=m),
            ],
            [edge("t", "s"), edge("s", "a", "a")],
        ),
        "nodes[1]",
        "s",
        "has no 'b' edge",
    ),
    "edge to an unknown node": (
        lambda m, lst: graph(
            [node("t", "trigger"), node("a", "email", campaign_mailing_id=m)],
            [edge("t", "ghost")],
        ),
        "edges[0].target",
        None,
        "unknown node 'ghost'",
    ),
    "delay of 0": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("d", "delay", amount=0, unit="days"),
            node("a", "email", campaign_mailing_id=m),
        ),
        "nodes[1].data.amount",
        "d",
        "greater than 0",
    ),
    "unknown node type": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("x", "sms"),
            node("a", "email", campaign_mailing_id=m),
        ),
        "nodes[1].type",
        "x",
        "unknown kind 'sms'",
    ),
    "unknown mailing": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=m),
            node("b", "email", campaign_mailing_id=UNKNOWN_ID),
        ),
        None,
        "b",
        f"no campaign mailing {UNKNOWN_ID}",
    ),
    # Mailings are checked when saved, so a stored mailing always renders; the node's own
    # subject override is the one way to name a mailing that would not.
    "mailing does not render": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=m, subject="Hi {{ first_name"),
        ),
        None,
        "a",
        "its mailing does not render",
    ),
    "unknown list in a condition": (
        lambda m, lst: graph(
            [
                node("t", "trigger"),
                node("c", "condition", check="in_list", list_id=UNKNOWN_ID),
                node("a", "email", campaign_mailing_id=m),
                node("end", "exit"),
            ],
            [edge("t", "c"), edge("c", "a", "yes"), edge("c", "end", "no")],
        ),
        None,
        "c",
        f"no subscription list {UNKNOWN_ID}",
    ),
    "unknown list in an action": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("add", "action", do="add_to_list", list_id=UNKNOWN_ID),
            node("a", "email", campaign_mailing_id=m),
        ),
        None,
        "add",
        f"no subscription list {UNKNOWN_ID}",
    ),
    "a sender name that would break its header": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=m, from_name="Shop\r\nBcc: all@example.net"),
        ),
        None,
        "a",
        "from_name: must not contain line breaks",
    ),
    "a sender address that is not one": (
        lambda m, lst: chain(
            node("t", "trigger"),
            node("a", "email", campaign_mailing_id=m, from_email="shop at example.com"),
        ),
        None,
        "a",
        "from_email: not a valid email address",
    ),
}


def assert_graph_refused(response: Any, case: GraphCase) -> None:
    _, path, node_id, words = case
    body = assert_error(response, 422, code="invalid", field=NODES)
    expected: dict[str, Any] = {"field": NODES, "node": node_id}
    if path is not None:
        expected["path"] = path
    assert body["details"] == expected
    assert body["error"].startswith(f"{NODES}: ")
    assert words in body["error"]
    if path is not None:
        assert path in body["error"]


@pytest.mark.parametrize("problem", list(GRAPH_PROBLEMS))
def test_a_bad_graph_is_refused_on_create_and_on_put_naming_the_problem(
    api: Api, news: str, mailing: str, problem: str
) -> None:
    case = GRAPH_PROBLEMS[problem]
    bad = case[0](mailing, news)
    good = simple(mailing)
    campaign = create(api, news, good)
    before = attributes(api, campaign)

    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="Broken", subscription_list_id=news, start_trigger="existing", **{NODES: bad}
        ),
    )
    assert_graph_refused(response, case)
    assert listed_ids(api) == [campaign]

    response = api.put(f"/drip_campaigns/{campaign}", campaign_body(name="Renamed", **{NODES: bad}))
    assert_graph_refused(response, case)
    assert attributes(api, campaign) == before  # neither the graph nor the name changed


def test_a_graph_naming_another_accounts_mailing_or_list_is_refused(
    api: Api, other_api: Api, news: str, mailing: str
) -> None:
    theirs = make_list(other_api, "Theirs")
    their_mailing = make_mailing(other_api, subject="Theirs")
    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="Welcome",
            subscription_list_id=news,
            start_trigger="existing",
            drip_campaign_nodes=simple(their_mailing),
        ),
    )
    body = assert_error(response, 422, code="invalid", field=NODES)
    assert body["details"] == {"field": NODES, "node": "a"}

    response = api.post(
        "/drip_campaigns",
        campaign_body(
            name="Welcome",
            subscription_list_id=theirs,
            start_trigger="existing",
            drip_campaign_nodes=simple(mailing),
        ),
    )
    assert_error(response, 422, code="invalid", field="subscription_list_id")
    assert listed_ids(api) == []
    assert listed_ids(other_api) == []


# --- update -------------------------------------------------------------------------------------


def test_put_changes_only_the_fields_sent(
    api: Api, news: str, mailing: str, manual_clock: clock.ManualClock
) -> None:
    other_list = make_list(api, "Other")
    campaign = create(api, news, two_emails(mailing, mailing))
    before = attributes(api, campaign)
    manual_clock.advance(timedelta(minutes=1))

    renamed = ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(name="Renamed")))["data"]
    assert renamed["id"] == campaign
    assert renamed["attributes"] == attributes(api, campaign)
    after = attributes(api, campaign)
    assert after["name"] == "Renamed"
    assert when(after["updated_at"]) == START + timedelta(minutes=1)
    unchanged = {"name", "updated_at"}
    assert {k: v for k, v in after.items() if k not in unchanged} == {
        k: v for k, v in before.items() if k not in unchanged
    }

    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(start_trigger="subscription")))
    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(subscription_list_id=other_list)))
    after = attributes(api, campaign)
    assert (after["start_trigger"], after["subscription_list_id"]) == (
        "subscription",
        other_list,
    )
    assert after["subscription_list_name"] == "Other"
    assert (after["name"], after[NODES]) == ("Renamed", before[NODES])

    edited = simple(mailing)
    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(**{NODES: edited})))
    after = attributes(api, campaign)
    assert json.loads(after[NODES]) == json.loads(edited)
    assert json.loads(after["drip_campaign_tree_blob"])["children"][0]["node"]["id"] == "a"
    assert (after["name"], after["start_trigger"]) == ("Renamed", "subscription")

    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body()))  # nothing sent: nothing changes
    assert {k: v for k, v in attributes(api, campaign).items() if k != "updated_at"} == {
        k: v for k, v in after.items() if k != "updated_at"
    }


def test_put_refuses_bad_fields_and_changes_nothing(api: Api, news: str, mailing: str) -> None:
    campaign = create(api, news, simple(mailing))
    before = attributes(api, campaign)
    assert_error(
        api.put(
            f"/drip_campaigns/{campaign}",
            campaign_body(name="Renamed", subscription_list_id=UNKNOWN_ID),
        ),
        422,
        code="invalid",
        field="subscription_list_id",
    )
    assert_error(
        api.put(
            f"/drip_campaigns/{campaign}", campaign_body(name="Renamed", start_trigger="never")
        ),
        422,
        field="drip_campaign.start_trigger",
    )
    assert_error(
        api.put(f"/drip_campaigns/{campaign}", {"name": "Renamed"}), 422, field="drip_campaign"
    )
    assert attributes(api, campaign) == before


def test_the_list_of_a_started_campaign_cannot_change(api: Api, news: str, mailing: str) -> None:
    other_list = make_list(api, "Other")
    campaign = create(api, news, simple(mailing))
    start(api, campaign)
    before = attributes(api, campaign)
    assert_error(
        api.put(
            f"/drip_campaigns/{campaign}",
            campaign_body(name="Renamed", subscription_list_id=other_list),
        ),
        422,
        code="invalid",
        field="subscription_list_id",
    )
    assert attributes(api, campaign) == before
    # Naming the list it already has is no change.
    ok(api.put(f"/drip_campaigns/{campaign}", campaign_body(subscription_list_id=news)))


# --- listing ------------------------------------------------------------------------------------


def test_list_orders_by_creation_newest_first_by_default_and_by_name_on_request(
    api: Api, news: str, mailing: str, manual_clock: clock.ManualClock
) -> None:
    for name in ("Bravo", "Charlie", "Alpha"):
        create(api, news, simple(mailing), name=name)
        manual_clock.advance(timedelta(minutes=1))
    assert listed(api) == ["Alpha", "Charlie", "Bravo"]
    assert listed(api, order="asc") == ["Bravo", "Charlie", "Alpha"]
    assert listed(api, order_by="created_at", order="desc") == ["Alpha", "Charlie", "Bravo"]
    assert listed(api, order_by="name") == ["Charlie", "Bravo", "Alpha"]  # order: desc
    assert listed(api, order_by="name", order="asc") == ["Alpha", "Bravo", "Charlie"]
    assert listed(api, order_by="name", order="desc") == ["Charlie", "Bravo", "Alpha"]

    assert_error(
        api.get("/drip_campaigns", params={"order_by": "subscriber_count"}),
        400,
        code="invalid_parameter",
        field="order_by",
    )
    assert_error(
        api.get("/drip_campaigns", params={"order": "sideways"}),
        400,
        code="invalid_parameter",
        field="order",
    )


def test_list_search_is_a_regex_on_name(
    api: Api, news: str, mailing: str, manual_clock: clock.ManualClock
) -> None:
    for name in ("Welcome series", "Win-back", "Été promo", "Re-engage 2024"):
        create(api, news, simple(mailing), name=name)
        manual_clock.advance(timedelta(minutes=1))
    assert listed(api, search="^W", order_by="name", order="asc") == ["Welcome series", "Win-back"]
    assert listed(api, search="back$|promo") == ["Été promo", "Win-back"]
    assert listed(api, search=r"\d{4}") == ["Re-engage 2024"]
    assert listed(api, search="e") == ["Re-engage 2024", "Welcome series"]  # É is not e
    assert listed(api, search="-") == ["Re-engage 2024", "Win-back"]
    assert listed(api, search="nothing like it") == []


def test_list_search_ignores_case(
    api: Api,
    news: str,
    mailing: str,
    manual_clock: clock.ManualClock,
) -> None:
    for name in ("Welcome series", "Win-back", "Été promo", "Re-engage 2024"):
        create(api, news, simple(mailing), name=name)
        manual_clock.advance(timedelta(minutes=1))
    assert listed(api, search="SERIES") == ["Welcome series"]
    assert listed(api, search="ÉTÉ") == ["Été promo"]
    assert listed(api, search="^w", order_by="name", order="asc") == ["Welcome series", "Win-back"]
    assert listed(api, search="E") == ["Re-engage 2024", "Welcome series"]


@pytest.mark.parametrize("pattern", ["(", "[a-", "*x", "a{2,1}", "(W)\\1", "W(?=in)"])
def test_a_bad_search_regex_is_400_naming_search(
    api: Api, news: str, mailing: str, pattern: str
) -> None:
    create(api, news, simple(mailing))
    body = assert_error(
        api.get("/drip_campaigns", params={"search": pattern}),
        400,
        code="bad_request",
        field="search",
    )
    assert body["error"].startswith("search: ")


def test_deleted_campaigns_are_not_listed(api: Api, news: str, mailing: str) -> None:
    kept = create(api, news, simple(mailing), name="Kept")
    gone = create(api, news, simple(mailing), name="Gone")
    assert ok(api.delete(f"/drip_campaigns/{gone}")) == {}
    assert listed_ids(api) == [kept]
    assert listed(api, search="Gone") == []


# --- lifecycle ----------------------------------------------------------------------------------


def test_start_with_the_existing_trigger_queues_one_job_enrolling_the_list(
    api: Api, news: str, mailing: str
) -> None:
    add_subscribers(api, news, [{"email": "casey@example.com"}])
    add_subscribers(api, None, [{"email": "outsider@example.com"}])  # not on the list
    campaign = create(api, news, simple(mailing))
    response = api.post(f"/drip_campaigns/{campaign}/start")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data"}
    assert set(body["data"]) == {"jids"}
    (jid,) = body["data"]["jids"]
    found = job(api, jid)
    assert (found["state"], found["total"], found["failed"]) == ("succeeded", 3, 0)
    got = attributes(api, campaign)
    assert (got["state"], got["subscriber_count"]) == ("started", 3)
    assert {e["email"] for e in report(api, campaign)["enrollments"]} == {
        "alex@example.com",
        "blake@example.com",
        "casey@example.com",
    }


def test_the_enrollment_job_counts_the_members_it_enrolled(
    api: Api, news: str, mailing: str
) -> None:
    add_subscribers(api, news, [{"email": "casey@example.com"}])
    campaign = create(api, news, simple(mailing))
    (jid,) = start(api, campaign)
    found = job(api, jid)
    assert (found["state"], found["total"], found["done"], found["failed"]) == (
        "succeeded",
        3,
        3,
        0,
    )


def test_start_with_the_subscription_trigger_queues_nothing(
    api: Api, news: str, mailing: str
) -> None:
    campaign = create(api, news, simple(mailing), trigger="subscription")
    assert ok(api.post(f"/drip_campaigns/{campaign}/start")) == {"data": {"jids": []}}
    got = attributes(api, campaign)
    assert (got["state"], got["subscriber_count"]) == ("started", 0)
    assert report(api, campaign)["enrollments"] == []


def test_start_refuses_a_started_campaign(api: Api, news: str, mailing: str) -> None:
    campaign = create(api, news, simple(mailing))
    start(api, campaign)
    assert_error(api.post(f"/drip_campaigns/{campaign}/start"), 422, code="invalid", field="state")
    assert attributes(api, campaign)["state"] == "started"


def test_start_refuses_a_graph_without_an_email(api: Api, news: str) -> None:
    campaign = create(
        api,
        news,
        chain(node("t", "trigger"), node("d", "delay", amount=1, unit="hours"), node("x", "exit")),
    )
    body = assert_error(
        api.post(f"/drip_campaigns/{campaign}/start"), 422, code="invalid", field=NODES
    )
    assert "email" in body["error"]
    got = attributes(api, campaign)
    assert (got["state"], got["subscriber_count"]) == ("draft", 0)


def test_start_checks_the_graph_again_a_deleted_mailing_is_named(
    api: Api, news: str, mailing: str, database: db.Database
) -> None:
    campaign = create(api, news, simple(mailing))
    # The API refuses this deletion; a delete racing the save could still let it happen.
    with database.transaction() as session:
        session.execute(delete(CampaignMailing).where(CampaignMailing.uuid == mailing))
    body = assert_error(
        api.post(f"/drip_campaigns/{campaign}/start"), 422, code="invalid", field=NODES
    )
    assert body["details"] == {"field": NODES, "node": "a"}
    assert attributes(api, campaign)["state"] == "draft"


def test_pause_and_resume(api: Api, news: str, mailing: str) -> None:
    campaign = create(api, news, simple(mailing))
    pause = f"/drip_campaigns/{campaign}/pause"
    assert_error(api.post(pause), 422, code="invalid", field="state")  # a draft
    assert attributes(api, campaign)["state"] == "draft"

    start(api, campaign)
    response = api.post(pause)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"drip_campaign_id": campaign, "status": "paused"}}
    assert attributes(api, campaign)["state"] == "paused"
    assert_error(api.post(pause), 422, code="invalid", field="state")  # already paused
    assert attributes(api, campaign)["state"] == "paused"

    # Resuming enrolls no one again: the members were enrolled at the first start.
    assert ok(api.post(f"/drip_campaigns/{campaign}/start")) == {"data": {"jids": []}}
    got = attributes(api, campaign)
    assert (got["state"], got["subscriber_count"]) == ("started", 2)
    assert len(report(api, campaign)["enrollments"]) == 2


@pytest.mark.parametrize("state", ["draft", "started", "paused"])
def test_a_mailing_a_campaign_sends_cannot_be_deleted_until_the_campaign_is(
    api: Api, news: str, mailing: str, state: str
) -> None:
    other = make_mailing(api, subject="Also sent")
    campaign = create(
        api,
        news,
        chain(
            node("t", "trigger"),
            node("first", "email", campaign_mailing_id=other),
            node("hello", "email", campaign_mailing_id=mailing),
        ),
        name="Welcome",
    )
    if state != "draft":
        start(api, campaign)
    if state == "paused":
        ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    unused = make_mailing(api, subject="Really unused")
    response = api.request(
        "DELETE",
        "/campaign_mailings_bulk_delete",
        json={"campaign_mailing_ids": [unused, mailing]},
    )
    # Paubox documents only 200 here: the refusal is its `errors` string, with the reason.
    error = errors_string(response)
    assert error.startswith("campaign_mailing_ids[1]: ")
    assert "Welcome" in error
    assert campaign in error
    assert "'hello'" in error
    subjects = {m["attributes"]["subject"] for m in ok(api.get("/campaign_mailings"))["data"]}
    assert len(subjects) == 3  # nothing deleted

    if state == "started":
        ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    ok(api.delete(f"/drip_campaigns/{campaign}"))
    body = {"campaign_mailing_ids": [unused, mailing]}
    assert ok(api.request("DELETE", "/campaign_mailings_bulk_delete", json=body)) == {}
    subjects = {m["attributes"]["subject"] for m in ok(api.get("/campaign_mailings"))["data"]}
    assert subjects == {"Also sent"}


def test_the_list_of_a_campaign_cannot_be_deleted_until_the_campaign_is(
    api: Api, news: str, mailing: str
) -> None:
    campaign = create(api, news, simple(mailing), name="Welcome")
    start(api, campaign)
    response = api.delete(f"/subscription_lists/{news}")
    assert_error(response, 422, code="invalid", field="id")
    assert "Welcome" in response.json()["error"]
    assert attributes(api, campaign)["subscriber_count"] == 2
    assert len(report(api, campaign)["enrollments"]) == 2

    ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    ok(api.delete(f"/drip_campaigns/{campaign}"))
    assert ok(api.delete(f"/subscription_lists/{news}")) == {}


def test_delete_refuses_a_started_campaign(api: Api, news: str, mailing: str) -> None:
    campaign = create(api, news, simple(mailing))
    start(api, campaign)
    before = attributes(api, campaign)
    assert_error(api.delete(f"/drip_campaigns/{campaign}"), 422, code="invalid", field="state")
    assert attributes(api, campaign) == before
    assert listed_ids(api) == [campaign]


@pytest.mark.parametrize("state", ["draft", "paused"])
def test_delete_a_draft_or_paused_campaign(api: Api, news: str, mailing: str, state: str) -> None:
    campaign = create(api, news, simple(mailing))
    if state == "paused":
        start(api, campaign)
        ok(api.post(f"/drip_campaigns/{campaign}/pause"))
    response = api.delete(f"/drip_campaigns/{campaign}")
    assert response.status_code == 200, response.text
    assert response.json() == {}

    base = f"/drip_campaigns/{campaign}"
    assert_error(api.get(base), 404, code="not_found", field="id")
    assert_error(api.post(f"{base}/start"), 404, code="not_found", field="id")
    assert_error(api.post(f"{base}/pause"), 404, code="not_found", field="id")
    assert_error(api.put(base, campaign_body(name="Back")), 404, code="not_found", field="id")
    assert_error(api.get(f"{base}/report"), 404, code="not_found", field="id")
    assert_error(api.delete(base), 404, code="not_found", field="id")
    assert listed_ids(api) == []


# --- tenant isolation ---------------------------------------------------------------------------


def test_another_account_cannot_see_or_touch_the_campaign(
    api: Api, other_api: Api, news: str, mailing: str
) -> None:
    campaign = create(api, news, simple(mailing))
    before = attributes(api, campaign)
    base = f"/drip_campaigns/{campaign}"

    assert_error(other_api.get(base), 404, code="not_found", field="id")
    assert_error(other_api.put(base, campaign_body(name="Mine")), 404, code="not_found")
    assert_error(other_api.post(f"{base}/start"), 404, code="not_found")
    assert_error(other_api.post(f"{base}/pause"), 404, code="not_found")
    assert_error(other_api.delete(base), 404, code="not_found")
    assert_error(other_api.get(f"{base}/report"), 404, code="not_found")
    assert listed_ids(other_api) == []
    assert attributes(api, campaign) == before

    start(api, campaign)  # started: pause and report are the other's first chance to act
    assert_error(other_api.post(f"{base}/pause"), 404, code="not_found")
    assert_error(other_api.get(f"{base}/report"), 404, code="not_found")
    assert attributes(api, campaign)["state"] == "started"

    theirs = create(other_api, make_list(other_api, "Theirs"), simple(make_mailing(other_api)))
    assert listed_ids(other_api) == [theirs]
    assert listed_ids(api) == [campaign]
    assert_error(api.get(f"/drip_campaigns/{theirs}"), 404, code="not_found")


# --- the report and live counts ------------------------------------------------------------------


def test_the_report_shows_each_node_and_each_enrollment(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(api, news, two_emails(first, second))
    (jid,) = start(api, campaign)
    assert job(api, jid)["state"] == "succeeded"
    run_tick()  # advances the enrollments: trigger, email (queued), delay
    run_tick()  # dispatches the queued emails
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "alex@example.com",
        "blake@example.com",
    ]

    data = report(api, campaign)
    assert set(data) == {"nodes", "enrollments"}
    assert [n["id"] for n in data["nodes"]] == ["t", "a", "d", "b"]
    counters = ("entered", "waiting", "completed", "exited", "emails_sent")
    nodes = {n["id"]: (n["type"], *(n[c] for c in counters)) for n in data["nodes"]}
    assert nodes == {
        "t": ("trigger", 2, 0, 2, 0, 0),
        "a": ("email", 2, 0, 2, 0, 2),
        "d": ("delay", 2, 2, 0, 0, 0),
        "b": ("email", 0, 0, 0, 0, 0),
    }
    assert all(n["emails_opened"] == n["emails_clicked"] == 0 for n in data["nodes"])

    ids = subscriber_ids(api)
    enrollments = sorted(data["enrollments"], key=lambda e: e["email"])
    assert [e["email"] for e in enrollments] == ["alex@example.com", "blake@example.com"]
    for enrollment in enrollments:
        assert enrollment["subscriber_id"] == ids[enrollment["email"]]
        assert (enrollment["state"], enrollment["node_id"]) == ("active", "d")
        assert when(enrollment["next_run_at"]) == START + timedelta(days=1)
        assert when(enrollment["enrolled_at"]) == START
        assert (enrollment["finished_at"], enrollment["exit_reason"]) == (None, None)

    got = attributes(api, campaign)
    assert (got["subscriber_count"], got["subscriber_completed_count"]) == (2, 0)


def test_the_report_pages_its_enrollments(api: Api, news: str, mailing: str) -> None:
    add_subscribers(api, news, [{"email": "casey@example.com"}])
    campaign = create(api, news, simple(mailing))
    start(api, campaign)
    path = f"/drip_campaigns/{campaign}/report"
    everyone = ok(api.get(path))["data"]["enrollments"]
    assert len(everyone) == 3

    pages = [
        ok(api.get(path, params={"items": 2, "page": page}))["data"]["enrollments"]
        for page in (1, 2, 3)
    ]
    assert [len(p) for p in pages] == [2, 1, 0]
    assert [e["email"] for p in pages for e in p] == [e["email"] for e in everyone]
    one = ok(api.get(path, params={"items": 1, "page": 2}))["data"]
    assert [e["email"] for e in one["enrollments"]] == [everyone[1]["email"]]
    assert len(one["nodes"]) == 2  # the nodes are not paged

    for params in ({"items": 0}, {"items": 1001}, {"page": 0}, {"items": "many"}):
        name = next(iter(params))
        assert_error(api.get(path, params=params), 400, code="invalid_parameter", field=name)


def test_subscriber_count_drops_at_once_when_a_subscriber_opts_out(
    api: Api,
    news: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(api, news, two_emails(first, second))
    start(api, campaign)
    run_tick()
    run_tick()
    assert attributes(api, campaign)["subscriber_count"] == 2

    alex = subscriber_ids(api)["alex@example.com"]
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [alex]}))  # global opt-out
    assert attributes(api, campaign)["subscriber_count"] == 1
    (row,) = ok(api.get("/drip_campaigns"))["data"]
    assert row["attributes"]["subscriber_count"] == 1
    # The step's kept count holds them until the runner takes them out, at their next step.
    delay = next(n for n in report(api, campaign)["nodes"] if n["id"] == "d")
    assert delay["waiting"] == 2
    manual_clock.advance(timedelta(days=1, minutes=1))
    run_tick()
    delay = next(n for n in report(api, campaign)["nodes"] if n["id"] == "d")
    assert (delay["waiting"], delay["exited"]) == (0, 1)


def test_create_and_start_with_an_idempotency_key_happen_once(
    api: Api, news: str, mailing: str
) -> None:
    body = campaign_body(
        name="Welcome",
        subscription_list_id=news,
        start_trigger="existing",
        drip_campaign_nodes=simple(mailing),
    )
    first = ok(api.post("/drip_campaigns", body, headers={"Idempotency-Key": "create-1"}))
    again = ok(api.post("/drip_campaigns", body, headers={"Idempotency-Key": "create-1"}))
    assert again == first
    campaign = first["data"]["id"]
    assert listed_ids(api) == [campaign]

    path = f"/drip_campaigns/{campaign}/start"
    started = ok(api.post(path, headers={"Idempotency-Key": "start-1"}))
    assert ok(api.post(path, headers={"Idempotency-Key": "start-1"})) == started
    assert_error(api.post(path, headers={"Idempotency-Key": "start-2"}), 422, field="state")
    assert len(report(api, campaign)["enrollments"]) == 2


def test_a_graph_too_long_is_refused_in_characters(api: Api, news: str) -> None:
    text = json.dumps({"nodes": [], "edges": [], "pad": "x" * 1_000_000})
    body = {
        "drip_campaign": {
            "name": "Huge",
            "subscription_list_id": news,
            "drip_campaign_nodes": text,
        }
    }
    answer = api.post("/drip_campaigns", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == (
        "drip_campaign.drip_campaign_nodes: must be at most 1,000,000 characters, "
        f"got {len(text):,}"
    )


def test_line_breaks_in_a_campaign_name_become_spaces(api: Api, news: str, mailing: str) -> None:
    create(api, news, simple(mailing), name="Welcome\r\nseries")
    assert listed(api) == ["Welcome series"]
