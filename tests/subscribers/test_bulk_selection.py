"""bulk_global_subscribe/unsubscribe and dynamic_bulk_*: explicit ids, and select-all jobs
narrowed by list, search, filter groups and exceptions. The test settings run jobs in
batches of 50, so the selections here span several batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from dripstone import db
from dripstone.jobs.models import Job
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    all_subscribers,
    assert_error,
    count_rows,
    default_list_id,
    detail,
    errors_string,
    ok,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
FIRST_NAMES = ["Ann", "Bob", "Cara"]
LAST_NAMES = [None, "Lee", "Smith", "O'Neil", "Annson"]
PLANS = ["gold", "silver", "Gold Plus", None]
MEMBERS = 100  # the first 100 people are on the "Members" list


@dataclass
class Person:
    email: str | None
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    plan: str | None
    member: bool
    id: str = ""

    @property
    def key(self) -> str:
        key = self.email or self.phone_number
        assert key is not None
        return key

    def value(self, field: str) -> str:
        found: str | None = self.plan if field == "plan" else getattr(self, field)
        return (found or "").lower()


def people_rows() -> list[Person]:
    people = []
    for i in range(130):
        people.append(
            Person(
                email=f"user{i:03}@{'acme.io' if i % 2 else 'globex.com'}",
                first_name=FIRST_NAMES[i % 3],
                last_name=LAST_NAMES[i % 5],
                phone_number=None,
                plan=PLANS[i % 4],
                member=i < MEMBERS,
            )
        )
    people.append(Person("odd_one@acme.io", "Zed", "Zoe", None, None, member=False))
    for n, phone in enumerate(["+14155550100", "+14155550101", "+442071838750"]):
        people.append(Person(None, f"Phone{n}", None, phone, "gold", member=False))
    return people


@dataclass
class World:
    people: list[Person]
    members_list: str

    def keys(self, predicate: Callable[[Person], bool]) -> set[str]:
        return {p.key for p in self.people if predicate(p)}

    def id_of(self, key: str) -> str:
        return next(p.id for p in self.people if p.key == key)


@pytest.fixture
def world(api: Api) -> World:
    members_list = add_list(api, "Members")
    people = people_rows()
    for on_list in (True, False):
        rows = []
        for p in people:
            if p.email is None or p.member is not on_list:
                continue
            row: dict[str, Any] = {"email": p.email, "first_name": p.first_name}
            if p.last_name is not None:
                row["last_name"] = p.last_name
            if p.plan is not None:
                row["custom_fields"] = [{"plan": p.plan}]
            rows.append(row)
        body: dict[str, Any] = {"subscribers": rows}
        if on_list:
            body["subscription_list_id"] = members_list
        ok(api.post("/subscribers_bulk_create", body))
    for p in people:
        if p.email is None:
            add_subscriber(
                api,
                phone_number=p.phone_number,
                first_name=p.first_name,
                custom_fields=[{"plan": p.plan}],
            )
    ids = {
        (s["attributes"]["email"] or s["attributes"]["phone_number"]): s["id"]
        for s in all_subscribers(api)
    }
    for p in people:
        p.id = ids[p.key]
    return World(people, members_list)


def opted_out(api: Api) -> set[str]:
    return {
        s["attributes"]["email"] or s["attributes"]["phone_number"]
        for s in all_subscribers(api)
        if s["attributes"]["unsubscribed"]
    }


def finished_job(api: Api, response: Any) -> dict[str, Any]:
    """The job a select-all request started, after it ran."""
    data = ok(response)
    assert set(data) == {"jid"}, data
    job = ok(api.get(f"/jobs/{data['jid']}"))
    assert job["id"] == data["jid"]
    assert job["type"] == "job"
    attributes: dict[str, Any] = job["attributes"]
    assert attributes["kind"] == "bulk_subscription"
    assert attributes["state"] == "succeeded", attributes
    assert attributes["failed"] == 0
    assert attributes["error"] is None
    assert attributes["finished_at"] is not None
    return attributes


def select_all(api: Api, endpoint: str, list_id: str, **selection: Any) -> dict[str, Any]:
    response = api.post(
        f"/subscriptions/{endpoint}", {"from_subscription_list_id": list_id, **selection}
    )
    return finished_job(api, response)


# --- explicit ids ------------------------------------------------------------------------------


def test_explicit_ids_answer_detailed_subscribers(api: Api, world: World) -> None:
    chosen = [world.people[0], world.people[131]]
    answered = ok(
        api.post(
            "/subscriptions/bulk_global_unsubscribe", {"subscriber_ids": [p.id for p in chosen]}
        )
    )
    assert [s["id"] for s in answered] == [p.id for p in chosen]
    assert all(s["attributes"]["unsubscribed"] for s in answered)
    assert all("subscription_lists" in s["attributes"] for s in answered)
    assert opted_out(api) == {p.key for p in chosen}
    answered = ok(
        api.post("/subscriptions/bulk_global_subscribe", {"subscriber_ids": [chosen[0].id]})
    )
    assert answered[0]["attributes"]["unsubscribed"] is False
    assert opted_out(api) == {chosen[1].key}


def test_explicit_unknown_id_answers_errors_and_changes_nothing(api: Api, world: World) -> None:
    response = api.post(
        "/subscriptions/bulk_global_unsubscribe",
        {"subscriber_ids": [world.people[0].id, UNKNOWN_ID]},
    )
    assert UNKNOWN_ID in errors_string(response)
    assert opted_out(api) == set()


BULK_ENDPOINTS = [
    "bulk_global_subscribe",
    "bulk_global_unsubscribe",
    "dynamic_bulk_subscribe",
    "dynamic_bulk_unsubscribe",
]


@pytest.mark.parametrize("endpoint", BULK_ENDPOINTS)
def test_every_bulk_change_answers_a_refused_body_with_errors_naming_the_field(
    api: Api, world: World, database: db.Database, endpoint: str
) -> None:
    """Paubox documents only 200 (with `errors`) for the four: no body, an empty or a
    malformed id list are refused in that form, and nothing changes."""
    path = f"/subscriptions/{endpoint}"
    assert errors_string(api.post(path)).startswith("body: ")
    assert errors_string(api.post(path, {"subscriber_ids": []})).startswith("subscriber_ids: ")
    bad_id = {"subscriber_ids": [world.people[0].id, "nope"]}
    assert errors_string(api.post(path, bad_id)).startswith("subscriber_ids[1]: ")
    unknown = {"subscriber_ids": [world.people[0].id, UNKNOWN_ID]}
    assert UNKNOWN_ID in errors_string(api.post(path, unknown))
    assert count_rows(database, Job) == 0
    assert opted_out(api) == set()


# --- select-all --------------------------------------------------------------------------------


def test_select_all_opts_out_everyone_in_batches(
    api: Api, world: World, database: db.Database
) -> None:
    job = select_all(api, "bulk_global_unsubscribe", default_list_id(api))
    assert job["total"] == job["done"] == len(world.people)
    assert opted_out(api) == world.keys(lambda p: True)
    assert count_rows(database, Job) == 1


def test_select_all_from_a_list_takes_only_its_members(api: Api, world: World) -> None:
    job = select_all(api, "bulk_global_unsubscribe", world.members_list)
    assert job["total"] == job["done"] == MEMBERS
    assert opted_out(api) == world.keys(lambda p: p.member)


def test_select_all_skips_members_who_left_the_list(api: Api, world: World) -> None:
    leaver = world.people[0]
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [leaver.id], "subscription_list_ids": [world.members_list]},
        )
    )
    job = select_all(api, "bulk_global_unsubscribe", world.members_list)
    assert job["total"] == job["done"] == MEMBERS - 1
    assert opted_out(api) == world.keys(lambda p: p.member and p is not leaver)


def test_search_narrows_the_selection(api: Api, world: World) -> None:
    job = select_all(api, "bulk_global_unsubscribe", world.members_list, search="acme ann")
    expected = world.keys(
        lambda p: (
            p.member
            and "acme" in p.value("email")
            and any("ann" in p.value(f) for f in ("email", "first_name", "last_name"))
        )
    )
    assert 0 < len(expected) < MEMBERS
    assert job["total"] == job["done"] == len(expected)
    assert opted_out(api) == expected


def test_except_ids_are_left_alone(api: Api, world: World) -> None:
    spared = [world.people[1], world.people[2], world.people[130]]
    job = select_all(
        api, "bulk_global_unsubscribe", default_list_id(api), except_ids=[p.id for p in spared]
    )
    assert job["total"] == job["done"] == len(world.people) - 3
    assert opted_out(api) == world.keys(lambda p: p not in spared)


def test_select_all_subscribe_lifts_the_opt_out_of_the_selected_only(
    api: Api, world: World
) -> None:
    select_all(api, "bulk_global_unsubscribe", default_list_id(api))
    filters = [[{"field": "first_name", "op": "is", "terms": ["bob"]}]]
    job = select_all(api, "bulk_global_subscribe", world.members_list, filters=filters)
    lifted = world.keys(lambda p: p.member and p.first_name == "Bob")
    assert job["total"] == job["done"] == len(lifted)
    assert opted_out(api) == world.keys(lambda p: True) - lifted


def test_selecting_nobody_finishes_at_once(api: Api, world: World) -> None:
    job = select_all(api, "bulk_global_unsubscribe", default_list_id(api), search="nobody")
    assert job["total"] == job["done"] == 0
    assert opted_out(api) == set()


# --- filters -----------------------------------------------------------------------------------


def condition(field: str, op: str, *terms: str) -> dict[str, Any]:
    return {"field": field, "op": op, "terms": list(terms)}


def holds(person: Person, cond: dict[str, Any]) -> bool:
    value = person.value(cond["field"])
    terms = [t.lower() for t in cond["terms"]]
    op = cond["op"]
    tests: dict[str, Callable[[], bool]] = {
        "is": lambda: value in terms,
        "is_not": lambda: value not in terms,
        "contains": lambda: any(t in value for t in terms),
        "does_not_contain": lambda: not any(t in value for t in terms),
        "starts_with": lambda: any(value.startswith(t) for t in terms),
        "ends_with": lambda: any(value.endswith(t) for t in terms),
        "is_empty": lambda: value == "",
        "is_not_empty": lambda: value != "",
    }
    return tests[op]()


def selected_by(person: Person, groups: list[list[dict[str, Any]]]) -> bool:
    return any(all(holds(person, c) for c in group) for group in groups)


FILTER_CASES: dict[str, list[list[dict[str, Any]]]] = {
    "email is": [[condition("email", "is", "USER003@acme.io", "user004@globex.com")]],
    "email is_not": [[condition("email", "is_not", "user003@acme.io")]],
    "email contains": [[condition("email", "contains", "acme")]],
    "email contains underscore": [[condition("email", "contains", "_")]],
    "email contains percent": [[condition("email", "contains", "%")]],
    "email does_not_contain": [[condition("email", "does_not_contain", "globex", "user1")]],
    "email starts_with": [[condition("email", "starts_with", "user01", "user12")]],
    "email ends_with": [[condition("email", "ends_with", ".io")]],
    "email is_empty": [[condition("email", "is_empty")]],
    "first_name is": [[condition("first_name", "is", "ann")]],
    "first_name is_not": [[condition("first_name", "is_not", "Ann", "Bob")]],
    "first_name starts_with": [[condition("first_name", "starts_with", "phone")]],
    "last_name contains quote": [[condition("last_name", "contains", "o'n")]],
    "last_name is_empty": [[condition("last_name", "is_empty")]],
    "last_name is_not_empty": [[condition("last_name", "is_not_empty")]],
    "last_name ends_with": [[condition("last_name", "ends_with", "son", "ee")]],
    "phone_number starts_with": [[condition("phone_number", "starts_with", "+1415")]],
    "phone_number is_not_empty": [[condition("phone_number", "is_not_empty")]],
    "custom is": [[condition("plan", "is", "GOLD")]],
    "custom is_not": [[condition("plan", "is_not", "gold")]],
    "custom contains": [[condition("plan", "contains", "gold")]],
    "custom does_not_contain": [[condition("plan", "does_not_contain", "gold")]],
    "custom starts_with": [[condition("plan", "starts_with", "sil")]],
    "custom ends_with": [[condition("plan", "ends_with", "plus")]],
    "custom is_empty": [[condition("plan", "is_empty")]],
    "custom is_not_empty": [[condition("plan", "is_not_empty")]],
    "and within a group": [
        [condition("first_name", "is", "bob"), condition("email", "ends_with", "acme.io")]
    ],
    "or across groups": [
        [condition("first_name", "is", "cara"), condition("plan", "is", "silver")],
        [condition("last_name", "is", "lee")],
    ],
}


@pytest.mark.parametrize("encoding", ["url-encoded string", "json array"])
@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_filters_select_the_matching_subscribers(
    api: Api, world: World, case: str, encoding: str
) -> None:
    groups = FILTER_CASES[case]
    filters: Any = quote(json.dumps(groups)) if encoding == "url-encoded string" else groups
    job = select_all(api, "bulk_global_unsubscribe", default_list_id(api), filters=filters)
    expected = world.keys(lambda p: selected_by(p, groups))
    if case != "email contains percent":
        assert 0 < len(expected) < len(world.people), "the case must tell people apart"
    assert opted_out(api) == expected
    assert job["total"] == job["done"] == len(expected)


def test_filters_combine_with_list_search_and_exceptions(api: Api, world: World) -> None:
    groups = [[condition("plan", "is_not_empty")], [condition("last_name", "is", "smith")]]
    spared = next(p for p in world.people if p.member and p.plan == "gold")
    job = select_all(
        api,
        "bulk_global_unsubscribe",
        world.members_list,
        search="globex",
        filters=quote(json.dumps(groups)),
        except_ids=[spared.id],
    )
    expected = world.keys(
        lambda p: p.member and "globex" in p.value("email") and selected_by(p, groups)
    ) - {spared.key}
    assert 0 < len(expected) < MEMBERS
    assert job["total"] == job["done"] == len(expected)
    assert opted_out(api) == expected


def test_an_unknown_filter_field_answers_errors_and_starts_no_job(
    api: Api, world: World, database: db.Database
) -> None:
    filters = [[condition("shoe_size", "is", "42")]]
    response = api.post(
        "/subscriptions/bulk_global_unsubscribe",
        {"from_subscription_list_id": default_list_id(api), "filters": filters},
    )
    assert "shoe_size" in errors_string(response)
    assert count_rows(database, Job) == 0
    assert opted_out(api) == set()


@pytest.mark.parametrize(
    ("selection", "mentions"),
    [
        ({"from_subscription_list_id": UNKNOWN_ID}, "from_subscription_list_id"),
        ({"from_subscription_list_id": "ALL", "except_ids": [UNKNOWN_ID]}, "except_ids"),
    ],
)
def test_unknown_ids_in_a_selection_answer_errors(
    api: Api, world: World, database: db.Database, selection: dict[str, Any], mentions: str
) -> None:
    if selection["from_subscription_list_id"] == "ALL":
        selection = {**selection, "from_subscription_list_id": default_list_id(api)}
    for endpoint in ("bulk_global_unsubscribe", "bulk_global_subscribe"):
        response = api.post(f"/subscriptions/{endpoint}", selection)
        assert mentions in errors_string(response)
    assert count_rows(database, Job) == 0
    assert opted_out(api) == set()


@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"search": "ann"},
        {"from_subscription_list_id": "ALL", "filters": "not json"},
        {"from_subscription_list_id": "ALL", "filters": "[[]]"},
        {"from_subscription_list_id": "ALL", "filters": [[{"field": "email", "op": "like"}]]},
        {"from_subscription_list_id": "ALL", "filters": [[{"field": "email", "op": "is"}]]},
        {"from_subscription_list_id": "ALL", "search": "a@b"},
        {"from_subscription_list_id": "ALL", "except_ids": ["nope"]},
        {"subscriber_ids": []},
    ],
)
def test_malformed_selections_answer_errors_and_start_nothing(
    api: Api, world: World, database: db.Database, selection: dict[str, Any]
) -> None:
    """Paubox documents only 200 (with `errors`) for the bulk changes: a refused body too."""
    if selection.get("from_subscription_list_id") == "ALL":
        selection = {**selection, "from_subscription_list_id": default_list_id(api)}
    response = api.post("/subscriptions/bulk_global_unsubscribe", selection)
    assert errors_string(response)
    assert count_rows(database, Job) == 0
    assert opted_out(api) == set()


# --- dynamic lists -----------------------------------------------------------------------------


def make_dynamic_list(api: Api, world: World) -> str:
    body = {
        "dynamic_list": {
            "name": "Paying members",
            "subscription_list_id": world.members_list,
            "filters": [[condition("plan", "is_not_empty")]],
        }
    }
    data = ok(api.post("/dynamic_lists", body))
    found: str = data["id"]
    return found


@pytest.mark.parametrize("action", ["unsubscribe", "subscribe"])
def test_dynamic_bulk_selects_the_dynamic_lists_members(
    api: Api, world: World, action: str
) -> None:
    segment = make_dynamic_list(api, world)
    paying = world.keys(lambda p: p.member and p.plan is not None)
    if action == "subscribe":
        select_all(api, "bulk_global_unsubscribe", default_list_id(api))
    ignored = [[condition("first_name", "is", "ann")]]
    job = select_all(
        api, f"dynamic_bulk_{action}", segment, filters=ignored, search="nothingmatches"
    )
    assert job["total"] == job["done"] == len(paying) > 50
    if action == "unsubscribe":
        assert opted_out(api) == paying
    else:
        assert opted_out(api) == world.keys(lambda p: True) - paying


def test_dynamic_bulk_honours_except_ids(api: Api, world: World) -> None:
    segment = make_dynamic_list(api, world)
    spared = next(p for p in world.people if p.member and p.plan == "gold")
    job = select_all(api, "dynamic_bulk_unsubscribe", segment, except_ids=[spared.id])
    expected = world.keys(lambda p: p.member and p.plan is not None) - {spared.key}
    assert job["total"] == job["done"] == len(expected)
    assert opted_out(api) == expected


@pytest.mark.parametrize("endpoint", ["dynamic_bulk_subscribe", "dynamic_bulk_unsubscribe"])
def test_dynamic_bulk_needs_a_dynamic_list(
    api: Api, world: World, database: db.Database, endpoint: str
) -> None:
    for list_id in (world.members_list, UNKNOWN_ID):
        response = api.post(f"/subscriptions/{endpoint}", {"from_subscription_list_id": list_id})
        assert "from_subscription_list_id" in errors_string(response)
    assert count_rows(database, Job) == 0


def test_dynamic_bulk_with_explicit_ids_acts_on_them(api: Api, world: World) -> None:
    chosen = world.people[5]
    answered = ok(
        api.post("/subscriptions/dynamic_bulk_unsubscribe", {"subscriber_ids": [chosen.id]})
    )
    assert [s["id"] for s in answered] == [chosen.id]
    assert detail(api, chosen.id)["attributes"]["unsubscribed"] is True


# --- jobs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("jid", [UNKNOWN_ID, "nope", "a%00b"])
def test_unknown_job_is_404(api: Api, jid: str) -> None:
    assert_error(api.get(f"/jobs/{jid}"), 404, code="not_found")


def test_another_accounts_job_is_404(api: Api, other_api: Api) -> None:
    add_subscriber(api, "ann@example.com")
    data = ok(
        api.post(
            "/subscriptions/bulk_global_unsubscribe",
            {"from_subscription_list_id": default_list_id(api)},
        )
    )
    assert_error(other_api.get(f"/jobs/{data['jid']}"), 404, code="not_found")
    assert ok(api.get(f"/jobs/{data['jid']}"))["attributes"]["state"] == "succeeded"


def many_terms(groups: int, conditions: int, terms: int) -> list[list[dict[str, Any]]]:
    """`groups` alike groups of `conditions` conditions of `terms` terms each, that select
    user000 and user001 only, however large they are."""
    assert terms >= 2
    group = [condition("email", "is_not", *(f"x{i}@nowhere" for i in range(terms)))] * (
        conditions - 1
    )
    group.append(condition("email", "starts_with", "user000", "user001", *["zz"] * (terms - 2)))
    return [group] * groups


@pytest.mark.parametrize(
    ("groups", "conditions", "terms"), [(5, 1, 100), (50, 5, 2), (1, 5, 100), (2, 50, 5)]
)
def test_the_largest_filters_allowed_work(
    api: Api, world: World, groups: int, conditions: int, terms: int
) -> None:
    assert groups * conditions * terms == 500
    longest_search = " ".join(["u"] * 128)
    assert len(longest_search) == 255
    job = select_all(
        api,
        "bulk_global_unsubscribe",
        default_list_id(api),
        filters=many_terms(groups, conditions, terms),
        search=longest_search,
    )
    assert job["total"] == job["done"] == 2
    assert opted_out(api) == {"user000@globex.com", "user001@acme.io"}


@pytest.mark.parametrize(
    "endpoint",
    [
        "bulk_global_unsubscribe",
        "bulk_global_subscribe",
        "dynamic_bulk_unsubscribe",
        "dynamic_lists",
    ],
)
def test_filters_over_the_limit_are_refused(
    api: Api, world: World, database: db.Database, endpoint: str
) -> None:
    filters = many_terms(1, 1, 100) * 5 + [[condition("email", "is_empty")]]
    if endpoint == "dynamic_lists":
        response = api.post(
            "/dynamic_lists", {"dynamic_list": {"name": "Huge", "filters": filters}}
        )
        field = "dynamic_list.filters"
    else:
        response = api.post(
            f"/subscriptions/{endpoint}",
            {
                "from_subscription_list_id": default_list_id(api),
                "filters": quote(json.dumps(filters)),
            },
        )
        field = "filters"
    if endpoint == "dynamic_lists":
        message = assert_error(response, 422, code="validation_failed", field=field)["error"]
    else:
        message = errors_string(response)
    assert message.startswith(f"{field}: ")
    assert "500" in message
    assert count_rows(database, Job) == 0
    assert ok(api.get("/dynamic_lists")) == []
    assert opted_out(api) == set()
