"""POST /subscribers_bulk_create and DELETE /subscribers_bulk_delete."""

from __future__ import annotations

from typing import Any

import pytest

from dripstone import db
from dripstone.subscribers.models import CustomFieldValue, Subscription
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    all_subscribers,
    assert_error,
    bulk_add,
    count_rows,
    detail,
    emails_of,
    lists_by_name,
    memberships,
    ok,
    subscriber_total,
    subscription_total,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

# --- bulk create -------------------------------------------------------------------------------


def test_bulk_create_adds_and_counts_new_subscribers(api: Api) -> None:
    result = api.post(
        "/subscribers_bulk_create",
        {
            "subscribers": [
                {"email": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee"},
                {"email": "bob@example.com", "custom_fields": [{"plan": "gold"}]},
            ]
        },
    )
    assert ok(result) == {"num_subscribers_added": 2}
    found = {s["attributes"]["email"]: s for s in all_subscribers(api)}
    assert set(found) == {"ann@example.com", "bob@example.com"}
    assert found["ann@example.com"]["attributes"]["first_name"] == "Ann"
    assert found["ann@example.com"]["attributes"]["last_name"] == "Lee"
    bob = detail(api, found["bob@example.com"]["id"])["attributes"]
    assert [(f["custom_field_name"], f["custom_field_value"]) for f in bob["custom_fields"]] == [
        ("plan", "gold")
    ]


def test_bulk_create_counts_duplicates_in_one_request_once(api: Api, database: db.Database) -> None:
    result = bulk_add(
        api, ["ann@example.com", "ANN@example.com", "bob@example.com", "ann@example.com"]
    )
    assert result == {"num_subscribers_added": 2}
    assert subscriber_total(database) == 2


def test_bulk_create_skips_existing_addresses(api: Api, database: db.Database) -> None:
    ann = add_subscriber(api, "ann@example.com", first_name="Ann")
    result = api.post(
        "/subscribers_bulk_create",
        {
            "subscribers": [
                {"email": "ANN@example.com", "first_name": "Changed"},
                {"email": "bob@example.com"},
            ]
        },
    )
    assert ok(result) == {"num_subscribers_added": 1}
    assert subscriber_total(database) == 2
    assert detail(api, ann["id"])["attributes"]["first_name"] == "Ann"
    assert ok(
        api.post("/subscribers_bulk_create", {"subscribers": [{"email": "bob@example.com"}]})
    ) == {"num_subscribers_added": 0}


def test_one_bad_row_rejects_the_whole_request(api: Api, database: db.Database) -> None:
    add_subscriber(api, "existing@example.com")
    list_id = add_list(api, "Newsletter")
    rows: list[dict[str, Any]] = [{"email": f"row{i}@example.com"} for i in range(5)]
    rows[3] = {"email": "row3-at-example.com"}
    response = api.post(
        "/subscribers_bulk_create",
        {"subscribers": rows, "subscription_list_id": list_id},
    )
    body = assert_error(response, 422, code="validation_failed", field="subscribers[3].email")
    assert "subscribers[3].email" in body["error"]
    assert subscriber_total(database) == 1
    assert subscription_total(database) == 0


def test_bad_custom_field_in_a_row_is_named(api: Api, database: db.Database) -> None:
    rows: list[dict[str, Any]] = [
        {"email": "a@example.com"},
        {"email": "b@example.com", "custom_fields": [{"plan": {"nested": 1}}]},
    ]
    response = api.post("/subscribers_bulk_create", {"subscribers": rows})
    assert_error(response, 422, field="subscribers[1].custom_fields[0].plan")
    assert subscriber_total(database) == 0


def test_bulk_create_with_a_list_puts_new_and_existing_on_it(api: Api) -> None:
    old = add_subscriber(api, "old@example.com")
    list_id = add_list(api, "Newsletter")
    result = bulk_add(api, ["old@example.com", "new@example.com"], list_id=list_id)
    assert result == {"num_subscribers_added": 1}
    assert sorted(emails_of(all_subscribers(api, subscription_list_id=list_id))) == [
        "new@example.com",
        "old@example.com",
    ]
    assert memberships(api, old["id"]) == {"All contacts": False, "Newsletter": False}
    assert lists_by_name(api)["Newsletter"]["attributes"]["subscriber_count"] == 2
    # Sending them again changes nothing.
    assert bulk_add(api, ["old@example.com", "new@example.com"], list_id=list_id) == {
        "num_subscribers_added": 0
    }
    assert lists_by_name(api)["Newsletter"]["attributes"]["subscriber_count"] == 2


def test_bulk_create_with_an_unknown_list_writes_nothing(api: Api, database: db.Database) -> None:
    response = api.post(
        "/subscribers_bulk_create",
        {"subscribers": [{"email": "a@example.com"}], "subscription_list_id": UNKNOWN_ID},
    )
    assert_error(response, 422, code="invalid", field="subscription_list_id")
    assert subscriber_total(database) == 0


def test_bulk_create_takes_at_most_10000_rows(api: Api, database: db.Database) -> None:
    rows = [{"email": f"p{i}@example.com"} for i in range(10_001)]
    response = api.post("/subscribers_bulk_create", {"subscribers": rows})
    assert_error(response, 422, code="validation_failed", field="subscribers")
    assert subscriber_total(database) == 0


def test_bulk_create_takes_10000_rows(api: Api, database: db.Database) -> None:
    rows = [{"email": f"p{i}@example.com", "custom_fields": [{"n": i}]} for i in range(10_000)]
    list_id = add_list(api, "Big")
    response = api.post(
        "/subscribers_bulk_create", {"subscribers": rows, "subscription_list_id": list_id}
    )
    assert ok(response) == {"num_subscribers_added": 10_000}
    assert subscriber_total(database) == 10_000
    assert count_rows(database, CustomFieldValue) == 10_000
    assert lists_by_name(api)["Big"]["attributes"]["subscriber_count"] == 10_000


@pytest.mark.parametrize("body", [{"subscribers": []}, {}, {"subscribers": [{"first_name": "A"}]}])
def test_bulk_create_needs_rows_with_emails(
    api: Api, database: db.Database, body: dict[str, Any]
) -> None:
    assert_error(api.post("/subscribers_bulk_create", body), 422, code="validation_failed")
    assert subscriber_total(database) == 0


# --- bulk delete -------------------------------------------------------------------------------


def test_bulk_delete_deletes_the_subscribers(api: Api, database: db.Database) -> None:
    list_id = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com", list_id=list_id, custom_fields=[{"plan": "x"}])
    bob = add_subscriber(api, "bob@example.com", list_id=list_id)
    add_subscriber(api, "carol@example.com")
    response = api.delete(
        "/subscribers_bulk_delete", params={"subscriber_ids": f"{ann['id']}, {bob['id']}"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert emails_of(all_subscribers(api)) == ["carol@example.com"]
    assert_error(api.get(f"/subscribers/{ann['id']}"), 404)
    assert subscription_total(database) == 0
    assert count_rows(database, CustomFieldValue) == 0
    counts = {n: lst["attributes"]["subscriber_count"] for n, lst in lists_by_name(api).items()}
    assert counts == {"All contacts": 1, "Newsletter": 0}


def test_bulk_delete_with_a_list_only_removes_from_it(api: Api, database: db.Database) -> None:
    newsletter = add_list(api, "Newsletter")
    other = add_list(api, "Other")
    ann = add_subscriber(api, "ann@example.com", list_id=newsletter)
    ok(
        api.post(
            "/subscriptions/subscribe",
            {"subscriber_ids": [ann["id"]], "subscription_list_ids": [other]},
        )
    )
    bob = add_subscriber(api, "bob@example.com", list_id=newsletter)
    response = api.delete(
        "/subscribers_bulk_delete",
        params={"subscriber_ids": ann["id"], "subscription_list_id": newsletter},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert subscriber_total(database) == 2
    assert memberships(api, ann["id"]) == {"All contacts": False, "Other": False}
    assert memberships(api, bob["id"]) == {"All contacts": False, "Newsletter": False}
    assert emails_of(all_subscribers(api, subscription_list_id=newsletter)) == ["bob@example.com"]


def test_bulk_delete_with_an_unknown_id_deletes_nothing(api: Api, database: db.Database) -> None:
    ann = add_subscriber(api, "ann@example.com")
    response = api.delete(
        "/subscribers_bulk_delete", params={"subscriber_ids": f"{ann['id']},{UNKNOWN_ID}"}
    )
    body = assert_error(response, 422, code="invalid", field="subscriber_ids")
    assert body["details"]["unknown_ids"] == [UNKNOWN_ID]
    assert subscriber_total(database) == 1


def test_bulk_delete_with_an_unknown_list_deletes_nothing(api: Api, database: db.Database) -> None:
    ann = add_subscriber(api, "ann@example.com")
    response = api.delete(
        "/subscribers_bulk_delete",
        params={"subscriber_ids": ann["id"], "subscription_list_id": UNKNOWN_ID},
    )
    assert_error(response, 422, field="subscription_list_id")
    assert subscriber_total(database) == 1


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"subscriber_ids": ""},
        {"subscriber_ids": ","},
        {"subscriber_ids": "not-a-uuid"},
        {"subscriber_ids": "VALID,42"},
    ],
)
def test_bulk_delete_needs_well_formed_ids(
    api: Api, database: db.Database, params: dict[str, str]
) -> None:
    ann = add_subscriber(api, "ann@example.com")
    if "subscriber_ids" in params:
        params = {"subscriber_ids": params["subscriber_ids"].replace("VALID", ann["id"])}
    response = api.delete("/subscribers_bulk_delete", params=params)
    assert_error(response, 400, field="subscriber_ids")
    assert subscriber_total(database) == 1


def test_bulk_delete_with_a_malformed_list_id_is_400(api: Api, database: db.Database) -> None:
    ann = add_subscriber(api, "ann@example.com")
    response = api.delete(
        "/subscribers_bulk_delete",
        params={"subscriber_ids": ann["id"], "subscription_list_id": "nope"},
    )
    assert_error(response, 400, code="invalid_parameter", field="subscription_list_id")
    assert subscriber_total(database) == 1


def test_deleted_subscriptions_leave_no_rows(api: Api, database: db.Database) -> None:
    list_id = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com", list_id=list_id)
    assert count_rows(database, Subscription) == 1
    api.delete("/subscribers_bulk_delete", params={"subscriber_ids": ann["id"]})
    assert count_rows(database, Subscription) == 0


def test_bulk_create_does_not_undo_opt_outs(api: Api) -> None:
    """Importing a list again must not re-subscribe people who left it or opted out."""
    list_id = add_list(api, "Newsletter")
    leaver = add_subscriber(api, "leaver@example.com", list_id=list_id)
    opted_out = add_subscriber(api, "optout@example.com")
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [leaver["id"]], "subscription_list_ids": [list_id]},
        )
    )
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [opted_out["id"]]}))
    result = bulk_add(api, ["leaver@example.com", "optout@example.com"], list_id=list_id)
    assert result == {"num_subscribers_added": 0}
    assert memberships(api, leaver["id"]) == {"All contacts": False, "Newsletter": True}
    assert detail(api, opted_out["id"])["attributes"]["unsubscribed"] is True
    assert memberships(api, opted_out["id"]) == {"All contacts": True, "Newsletter": False}
