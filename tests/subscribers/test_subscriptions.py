"""/subscriptions: the raw membership records, and opting in and out (per list and globally)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from dripstone import db
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    assert_error,
    default_list_id,
    detail,
    errors_string,
    fill,
    internal_id,
    lists_by_name,
    memberships,
    ok,
    subscription_total,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RECORD_KEYS = {
    "id",
    "uuid",
    "subscription_list_id",
    "dynamic_list_id",
    "subscriber_id",
    "unsubscribed_at",
    "delete_at",
    "created_at",
    "updated_at",
}


def subscribe_record(api: Api, list_id: str, subscriber_id: int) -> Any:
    return api.post(
        "/subscriptions",
        {"subscription": {"subscription_list_id": list_id, "subscriber_id": subscriber_id}},
    )


def errors_list(response: Any) -> list[str]:
    """The documented quirk: 200 with {"errors": [..]} instead of data."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list)
    assert body["errors"]
    assert all(isinstance(e, str) and e for e in body["errors"])
    errors: list[str] = body["errors"]
    return errors


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    offset = parsed.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    return parsed


@pytest.fixture
def newsletter(api: Api) -> str:
    return add_list(api, "Newsletter")


@pytest.fixture
def ann(api: Api) -> dict[str, Any]:
    return add_subscriber(api, "ann@example.com")


# --- POST /subscriptions -----------------------------------------------------------------------


def test_create_subscription_answers_the_raw_record(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any]
) -> None:
    number = internal_id(database, ann["id"])
    record = ok(subscribe_record(api, newsletter, number))
    assert set(record) == RECORD_KEYS
    assert isinstance(record["id"], int)
    assert UUID.match(record["uuid"])
    assert record["subscription_list_id"] == newsletter
    assert record["subscriber_id"] == number
    assert record["dynamic_list_id"] is None
    assert record["unsubscribed_at"] is None
    assert record["delete_at"] is None
    parse_time(record["created_at"])
    parse_time(record["updated_at"])
    assert memberships(api, ann["id"]) == {"All contacts": False, "Newsletter": False}
    assert ok(api.get("/subscriptions")) == [record]
    assert ok(api.get(f"/subscriptions/{record['uuid']}")) == record


def test_create_subscription_twice_answers_errors(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any]
) -> None:
    number = internal_id(database, ann["id"])
    ok(subscribe_record(api, newsletter, number))
    errors = errors_list(subscribe_record(api, newsletter, number))
    assert "already subscribed" in errors[0]
    assert subscription_total(database) == 1


def test_create_subscription_to_an_unknown_list_answers_errors(
    api: Api, database: db.Database, ann: dict[str, Any]
) -> None:
    errors = errors_list(subscribe_record(api, UNKNOWN_ID, internal_id(database, ann["id"])))
    assert "subscription_list_id" in errors[0]
    assert subscription_total(database) == 0


def test_create_subscription_of_an_unknown_subscriber_answers_errors(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any]
) -> None:
    errors = errors_list(subscribe_record(api, newsletter, internal_id(database, ann["id"]) + 1000))
    assert "subscriber_id" in errors[0]
    assert subscription_total(database) == 0


def test_create_subscription_to_the_default_list_answers_errors(
    api: Api, database: db.Database, ann: dict[str, Any]
) -> None:
    errors_list(subscribe_record(api, default_list_id(api), internal_id(database, ann["id"])))
    assert subscription_total(database) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"subscription": {"subscription_list_id": "LIST", "subscriber_id": "one"}},
        {"subscription": {"subscription_list_id": 5, "subscriber_id": 1}},
        {"subscription": {"subscription_list_id": "LIST"}},
        {"subscription": {"subscription_list_id": "LIST", "subscriber_id": 0}},
        {"subscription": {"subscription_list_id": "LIST", "subscriber_id": 2**64}},
        {"subscription": "LIST"},
        {"subscription_list_id": "LIST", "subscriber_id": 1},
        [],
    ],
)
def test_create_subscription_with_wrong_types_answers_errors(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any], body: Any
) -> None:
    errors_list(api.post("/subscriptions", fill(body, LIST=newsletter)))
    assert subscription_total(database) == 0


def test_create_subscription_with_a_body_that_is_not_json_is_400(api: Api) -> None:
    response = api.post(
        "/subscriptions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


# --- GET and DELETE /subscriptions ------------------------------------------------------------


def test_list_subscriptions_shows_every_membership(
    api: Api, database: db.Database, newsletter: str
) -> None:
    other = add_list(api, "Other")
    a = add_subscriber(api, "a@example.com", list_id=newsletter)
    b = add_subscriber(api, "b@example.com", list_id=other)
    add_subscriber(api, "c@example.com")
    records = ok(api.get("/subscriptions"))
    assert {(r["subscription_list_id"], r["subscriber_id"]) for r in records} == {
        (newsletter, internal_id(database, a["id"])),
        (other, internal_id(database, b["id"])),
    }
    assert all(set(r) == RECORD_KEYS for r in records)


@pytest.mark.parametrize("subscription_id", [UNKNOWN_ID, "12", "a%00b"])
def test_unknown_subscriptions_are_404(api: Api, subscription_id: str) -> None:
    assert_error(api.get(f"/subscriptions/{subscription_id}"), 404, code="not_found")
    assert_error(api.delete(f"/subscriptions/{subscription_id}"), 404, code="not_found")


def test_delete_stamps_unsubscribed_at_and_keeps_the_row(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any]
) -> None:
    record = ok(subscribe_record(api, newsletter, internal_id(database, ann["id"])))
    cancelled = ok(api.delete(f"/subscriptions/{record['uuid']}"))
    assert cancelled["uuid"] == record["uuid"]
    assert cancelled["id"] == record["id"]
    stamped = parse_time(cancelled["unsubscribed_at"])
    assert stamped >= parse_time(record["created_at"])
    assert ok(api.get(f"/subscriptions/{record['uuid']}"))["unsubscribed_at"] is not None
    assert subscription_total(database) == 1
    assert memberships(api, ann["id"]) == {"All contacts": False, "Newsletter": True}
    assert lists_by_name(api)["Newsletter"]["attributes"]["subscriber_count"] == 0
    # Deleting again keeps the first stamp.
    again = ok(api.delete(f"/subscriptions/{record['uuid']}"))
    assert again["unsubscribed_at"] == cancelled["unsubscribed_at"]


def test_subscribing_again_clears_unsubscribed_at(
    api: Api, database: db.Database, newsletter: str, ann: dict[str, Any]
) -> None:
    number = internal_id(database, ann["id"])
    record = ok(subscribe_record(api, newsletter, number))
    ok(api.delete(f"/subscriptions/{record['uuid']}"))
    again = ok(subscribe_record(api, newsletter, number))
    assert again["uuid"] == record["uuid"]
    assert again["unsubscribed_at"] is None
    assert ok(api.get(f"/subscriptions/{record['uuid']}"))["unsubscribed_at"] is None
    assert memberships(api, ann["id"]) == {"All contacts": False, "Newsletter": False}
    assert subscription_total(database) == 1


# --- POST /subscriptions/subscribe and /unsubscribe -------------------------------------------


def change(api: Api, action: str, ids: list[str], lists: list[str] | None = None) -> Any:
    body: dict[str, Any] = {"subscriber_ids": ids}
    if lists is not None:
        body["subscription_list_ids"] = lists
    return api.post(f"/subscriptions/{action}", body)


def test_unsubscribe_from_lists_changes_only_those_lists(api: Api, newsletter: str) -> None:
    other = add_list(api, "Other")
    third = add_list(api, "Third")
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    ok(change(api, "subscribe", [ann["id"]], [other, third]))
    bob = add_subscriber(api, "bob@example.com", list_id=newsletter)
    answered = ok(change(api, "unsubscribe", [ann["id"]], [newsletter, other]))
    assert [s["id"] for s in answered] == [ann["id"]]
    attributes = answered[0]["attributes"]
    assert attributes["unsubscribed"] is False
    assert {m["name"]: m["unsubscribed"] for m in attributes["subscription_lists"]} == {
        "All contacts": False,
        "Newsletter": True,
        "Other": True,
        "Third": False,
    }
    assert memberships(api, bob["id"]) == {"All contacts": False, "Newsletter": False}


def test_subscribe_to_lists_rejoins_and_adds(api: Api, newsletter: str) -> None:
    other = add_list(api, "Other")
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    ok(change(api, "unsubscribe", [ann["id"]], [newsletter]))
    answered = ok(change(api, "subscribe", [ann["id"]], [newsletter, other]))
    assert {
        m["name"]: m["unsubscribed"] for m in answered[0]["attributes"]["subscription_lists"]
    } == {
        "All contacts": False,
        "Newsletter": False,
        "Other": False,
    }
    assert memberships(api, ann["id"]) == {
        "All contacts": False,
        "Newsletter": False,
        "Other": False,
    }


def test_unsubscribe_without_lists_opts_out_globally(api: Api, newsletter: str) -> None:
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    bob = add_subscriber(api, "bob@example.com")
    answered = ok(change(api, "unsubscribe", [ann["id"]]))
    assert answered[0]["attributes"]["unsubscribed"] is True
    assert detail(api, ann["id"])["attributes"]["unsubscribed"] is True
    listed = {s["id"]: s["attributes"]["unsubscribed"] for s in ok(api.get("/subscribers"))}
    assert listed == {ann["id"]: True, bob["id"]: False}
    # The list membership itself is untouched; All contacts shows the opt-out.
    assert memberships(api, ann["id"]) == {"All contacts": True, "Newsletter": False}


def test_unsubscribe_from_all_contacts_is_a_global_opt_out(api: Api) -> None:
    ann = add_subscriber(api, "ann@example.com")
    answered = ok(change(api, "unsubscribe", [ann["id"]], [default_list_id(api)]))
    assert answered[0]["attributes"]["unsubscribed"] is True


def test_subscribe_always_lifts_the_global_opt_out(api: Api, newsletter: str) -> None:
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    bob = add_subscriber(api, "bob@example.com")
    ok(change(api, "unsubscribe", [ann["id"], bob["id"]]))
    answered = ok(change(api, "subscribe", [ann["id"]], [newsletter]))
    assert answered[0]["attributes"]["unsubscribed"] is False
    answered = ok(change(api, "subscribe", [bob["id"]]))
    assert answered[0]["attributes"]["unsubscribed"] is False
    assert detail(api, bob["id"])["attributes"]["unsubscribed"] is False
    assert memberships(api, bob["id"]) == {"All contacts": False}


def test_change_answers_detailed_subscribers_in_request_order(api: Api) -> None:
    a = add_subscriber(api, "a@example.com", custom_fields=[{"plan": "gold"}])
    b = add_subscriber(api, "b@example.com")
    answered = ok(change(api, "unsubscribe", [b["id"], a["id"], b["id"]]))
    assert [s["id"] for s in answered] == [b["id"], a["id"]]
    for resource in answered:
        assert resource["type"] == "subscriber"
        assert {"created_at", "updated_at", "custom_fields", "subscription_lists"} <= set(
            resource["attributes"]
        )
    assert answered[1]["attributes"]["custom_fields"][0]["custom_field_value"] == "gold"


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_unknown_subscriber_answers_errors_and_changes_nothing(
    api: Api, newsletter: str, action: str
) -> None:
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    if action == "subscribe":
        ok(change(api, "unsubscribe", [ann["id"]]))
        ok(change(api, "unsubscribe", [ann["id"]], [newsletter]))
    before = detail(api, ann["id"])["attributes"]
    error = errors_string(change(api, action, [ann["id"], UNKNOWN_ID], [newsletter]))
    assert UNKNOWN_ID in error
    error = errors_string(change(api, action, [ann["id"], UNKNOWN_ID]))
    assert UNKNOWN_ID in error
    assert detail(api, ann["id"])["attributes"] == before


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_unknown_list_answers_errors_and_changes_nothing(
    api: Api, newsletter: str, action: str
) -> None:
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    before = detail(api, ann["id"])["attributes"]
    error = errors_string(change(api, action, [ann["id"]], [newsletter, UNKNOWN_ID]))
    assert UNKNOWN_ID in error
    assert detail(api, ann["id"])["attributes"] == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"subscriber_ids": []},
        {"subscriber_ids": ["nope"]},
        {"subscriber_ids": "SUBSCRIBER"},
        {"subscriber_ids": ["SUBSCRIBER"], "subscription_list_ids": ["nope"]},
    ],
)
def test_malformed_change_requests_answer_errors_naming_the_field_and_change_nothing(
    api: Api, ann: dict[str, Any], body: dict[str, Any]
) -> None:
    """Paubox documents only 200 (with `errors`) for these two: a refused body answers so."""
    body = fill(body, SUBSCRIBER=ann["id"])
    before = detail(api, ann["id"])["attributes"]
    field = "subscription_list_ids[0]" if "subscription_list_ids" in body else "subscriber_ids"
    for action in ("subscribe", "unsubscribe"):
        assert errors_string(api.post(f"/subscriptions/{action}", body)).startswith(f"{field}")
    assert errors_string(api.post("/subscriptions/unsubscribe")).startswith("body: ")
    assert detail(api, ann["id"])["attributes"] == before
