"""Subscription events: one row per subscriber joining a list, written with the join itself.

Drip campaigns with a subscription trigger consume these rows, so a missing event is a
missed campaign and a duplicate is a duplicate email."""

from __future__ import annotations

from typing import Any

from dripstone import db
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    assert_error,
    bulk_add,
    default_list_id,
    events,
    internal_id,
    ok,
)

ALL = "All contacts"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def change(api: Api, action: str, ids: list[str], lists: list[str] | None = None) -> Any:
    body: dict[str, Any] = {"subscriber_ids": ids}
    if lists is not None:
        body["subscription_list_ids"] = lists
    return api.post(f"/subscriptions/{action}", body)


def test_create_without_a_list_joins_all_contacts(api: Api, database: db.Database) -> None:
    add_subscriber(api, "ann@example.com")
    add_subscriber(api, phone_number="+14155550123")
    assert events(database) == [("ann@example.com", ALL), ("+14155550123", ALL)]


def test_create_with_a_list_joins_both(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    add_subscriber(api, "ann@example.com", list_id=newsletter)
    assert sorted(events(database)) == [("ann@example.com", ALL), ("ann@example.com", "Newsletter")]


def test_create_with_the_default_list_joins_it_once(api: Api, database: db.Database) -> None:
    add_subscriber(api, "ann@example.com", list_id=default_list_id(api))
    assert events(database) == [("ann@example.com", ALL)]


def test_bulk_create_records_one_event_per_new_join(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    add_subscriber(api, "member@example.com", list_id=newsletter)
    add_subscriber(api, "outsider@example.com")
    before = len(events(database))
    bulk_add(
        api,
        [
            "member@example.com",
            "outsider@example.com",
            "new1@example.com",
            "NEW1@example.com",
            "new2@example.com",
        ],
        list_id=newsletter,
    )
    added = events(database)[before:]
    assert sorted(added) == [
        ("new1@example.com", ALL),
        ("new1@example.com", "Newsletter"),
        ("new2@example.com", ALL),
        ("new2@example.com", "Newsletter"),
        ("outsider@example.com", "Newsletter"),
    ]


def test_bulk_create_without_a_list_records_all_contacts_joins(
    api: Api, database: db.Database
) -> None:
    add_subscriber(api, "old@example.com")
    bulk_add(api, ["old@example.com", "a@example.com", "b@example.com"])
    assert events(database) == [
        ("old@example.com", ALL),
        ("a@example.com", ALL),
        ("b@example.com", ALL),
    ]


def test_post_subscription_records_one_event(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com")
    body = {
        "subscription": {
            "subscription_list_id": newsletter,
            "subscriber_id": internal_id(database, ann["id"]),
        }
    }
    record = ok(api.post("/subscriptions", body))
    assert events(database) == [("ann@example.com", ALL), ("ann@example.com", "Newsletter")]
    # A duplicate is refused and records nothing.
    assert "errors" in api.post("/subscriptions", body).json()
    assert len(events(database)) == 2
    # Unsubscribing records nothing; subscribing again is a new join.
    ok(api.delete(f"/subscriptions/{record['uuid']}"))
    assert len(events(database)) == 2
    ok(api.post("/subscriptions", body))
    assert events(database)[2:] == [("ann@example.com", "Newsletter")]


def test_resubscribing_through_subscribe_records_one_more_event(
    api: Api, database: db.Database
) -> None:
    newsletter = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    assert len(events(database)) == 2
    ok(change(api, "unsubscribe", [ann["id"]], [newsletter]))
    ok(change(api, "unsubscribe", [ann["id"]]))
    assert len(events(database)) == 2
    ok(change(api, "subscribe", [ann["id"]], [newsletter]))
    assert events(database)[2:] == [("ann@example.com", "Newsletter")]
    # Already subscribed: nothing joins, nothing is recorded.
    ok(change(api, "subscribe", [ann["id"]], [newsletter]))
    ok(change(api, "subscribe", [ann["id"]]))
    assert len(events(database)) == 3


def test_subscribe_to_a_new_list_records_its_joins(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    a = add_subscriber(api, "a@example.com", list_id=newsletter)
    b = add_subscriber(api, "b@example.com")
    ok(change(api, "subscribe", [a["id"], b["id"]], [newsletter, default_list_id(api)]))
    assert events(database)[3:] == [("b@example.com", "Newsletter")]


def test_refused_requests_record_no_events(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com")
    before = events(database)
    response = api.post(
        "/subscribers",
        {"subscriber": {"email": "bob@example.com"}, "subscription_list_id": UNKNOWN_ID},
    )
    assert_error(response, 422)
    response = api.post("/subscribers", {"subscriber": {"email": "ANN@example.com"}})
    assert_error(response, 422)
    response = api.post(
        "/subscribers_bulk_create",
        {
            "subscribers": [{"email": "c@example.com"}, {"email": "bad"}],
            "subscription_list_id": newsletter,
        },
    )
    assert_error(response, 422)
    response = api.post(
        "/subscribers_bulk_create",
        {"subscribers": [{"email": "c@example.com"}], "subscription_list_id": UNKNOWN_ID},
    )
    assert_error(response, 422)
    assert "errors" in change(api, "subscribe", [ann["id"], UNKNOWN_ID], [newsletter]).json()
    assert "errors" in change(api, "subscribe", [ann["id"]], [newsletter, UNKNOWN_ID]).json()
    assert events(database) == before
