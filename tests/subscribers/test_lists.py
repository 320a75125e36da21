"""/subscription_lists: the default list, creating, renaming, deleting, live counts."""

from __future__ import annotations

from typing import Any

import pytest

from dripstone import db
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    assert_error,
    bulk_add,
    default_list_id,
    lists_by_name,
    memberships,
    ok,
    subscriber_total,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def counts(api: Api) -> dict[str, int]:
    return {name: lst["attributes"]["subscriber_count"] for name, lst in lists_by_name(api).items()}


def test_every_account_starts_with_all_contacts(api: Api) -> None:
    lists = ok(api.get("/subscription_lists"))
    assert len(lists) == 1
    assert lists[0]["type"] == "subscription_list"
    assert lists[0]["attributes"] == {
        "name": "All contacts",
        "is_default": True,
        "subscriber_count": 0,
        "form_id": "",  # a string, as Paubox documents it: empty, never null
    }


def test_all_contacts_counts_every_subscriber(api: Api) -> None:
    newsletter = add_list(api, "Newsletter")
    add_subscriber(api, "ann@example.com", list_id=newsletter)
    add_subscriber(api, phone_number="+14155550123")
    opted_out = add_subscriber(api, "bob@example.com")
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [opted_out["id"]]}))
    assert counts(api) == {"All contacts": 3, "Newsletter": 1}


@pytest.mark.parametrize(
    "body", [{"name": "Newsletter"}, {"subscription_list": {"name": "Newsletter"}}]
)
def test_create_a_list_raw_or_wrapped(api: Api, body: dict[str, Any]) -> None:
    created = ok(api.post("/subscription_lists", body))
    assert created["type"] == "subscription_list"
    assert created["attributes"] == {
        "name": "Newsletter",
        "is_default": False,
        "subscriber_count": 0,
        "form_id": "",  # a string, as Paubox documents it: empty, never null
    }
    lists = ok(api.get("/subscription_lists"))
    assert [lst["attributes"]["name"] for lst in lists] == ["All contacts", "Newsletter"]
    assert lists[1]["id"] == created["id"]


def test_list_names_are_trimmed(api: Api) -> None:
    created = ok(api.post("/subscription_lists", {"name": "  Newsletter  "}))
    assert created["attributes"]["name"] == "Newsletter"


@pytest.mark.parametrize("name", ["default", "Default", "DEFAULT", " default "])
def test_no_list_may_be_named_default(api: Api, name: str) -> None:
    response = api.post("/subscription_lists", {"name": name})
    assert_error(response, 422, field="name")
    assert list(lists_by_name(api)) == ["All contacts"]


@pytest.mark.parametrize("name", ["Newsletter", "newsletter", "All contacts", "all CONTACTS"])
def test_list_names_are_unique(api: Api, name: str) -> None:
    add_list(api, "Newsletter")
    response = api.post("/subscription_lists", {"name": name})
    assert_error(response, 422, code="conflict", field="name")
    assert sorted(lists_by_name(api)) == ["All contacts", "Newsletter"]


@pytest.mark.parametrize(
    ("first", "second"), [("Élan", "élan"), ("élan", "ÉLAN"), ("Ωmega", "ωMEGA")]
)
def test_list_names_are_unique_in_any_case_of_any_letter(api: Api, first: str, second: str) -> None:
    add_list(api, first)
    assert_error(
        api.post("/subscription_lists", {"name": second}), 422, code="conflict", field="name"
    )
    other = add_list(api, "Other")
    assert_error(api.put(f"/subscription_lists/{other}", {"name": second}), 422, field="name")
    assert sorted(lists_by_name(api)) == sorted(["All contacts", first, "Other"])


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": None},
        {},
        {"name": "x" * 256},
        {"name": 5},
        {"name": "A", "subscription_list": {"name": "B"}},
        {"subscription_list": {"name": ""}},
        {"name": "A\u0000B"},
    ],
)
def test_missing_or_invalid_names_are_refused(api: Api, body: dict[str, Any]) -> None:
    assert_error(api.post("/subscription_lists", body), 422, code="validation_failed")
    assert list(lists_by_name(api)) == ["All contacts"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_rename_a_list(api: Api, method: str) -> None:
    list_id = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com", list_id=list_id)
    response = api.request(method, f"/subscription_lists/{list_id}", json={"name": "Weekly"})
    renamed = ok(response)
    assert renamed["id"] == list_id
    assert renamed["attributes"]["name"] == "Weekly"
    assert renamed["attributes"]["subscriber_count"] == 1
    assert counts(api) == {"All contacts": 1, "Weekly": 1}
    assert memberships(api, ann["id"]) == {"All contacts": False, "Weekly": False}


def test_rename_to_its_own_name_in_another_case(api: Api) -> None:
    list_id = add_list(api, "Newsletter")
    renamed = ok(
        api.put(f"/subscription_lists/{list_id}", {"subscription_list": {"name": "NEWSLETTER"}})
    )
    assert renamed["attributes"]["name"] == "NEWSLETTER"


@pytest.mark.parametrize(("name", "code"), [("Other", "conflict"), ("default", "invalid")])
def test_rename_refuses_taken_or_reserved_names(api: Api, name: str, code: str) -> None:
    list_id = add_list(api, "Newsletter")
    add_list(api, "Other")
    response = api.patch(f"/subscription_lists/{list_id}", {"name": name})
    assert_error(response, 422, code=code, field="name")
    assert sorted(lists_by_name(api)) == ["All contacts", "Newsletter", "Other"]


def test_the_default_list_cannot_be_renamed(api: Api) -> None:
    response = api.put(f"/subscription_lists/{default_list_id(api)}", {"name": "Everyone"})
    assert_error(response, 422)
    assert list(lists_by_name(api)) == ["All contacts"]


def test_delete_a_list_keeps_its_subscribers(api: Api, database: db.Database) -> None:
    list_id = add_list(api, "Newsletter")
    ann = add_subscriber(api, "ann@example.com", list_id=list_id)
    response = api.delete(f"/subscription_lists/{list_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert list(lists_by_name(api)) == ["All contacts"]
    assert memberships(api, ann["id"]) == {"All contacts": False}
    assert subscriber_total(database) == 1
    assert ok(api.get("/subscriptions")) == []
    # The name is free again.
    add_list(api, "Newsletter")


def test_the_default_list_cannot_be_deleted(api: Api) -> None:
    add_subscriber(api, "ann@example.com")
    assert_error(api.delete(f"/subscription_lists/{default_list_id(api)}"), 422)
    assert counts(api) == {"All contacts": 1}


@pytest.mark.parametrize("list_id", [UNKNOWN_ID, "nope", "a%00b"])
def test_unknown_lists_are_404(api: Api, list_id: str) -> None:
    assert_error(api.put(f"/subscription_lists/{list_id}", {"name": "X"}), 404, code="not_found")
    assert_error(api.patch(f"/subscription_lists/{list_id}", {"name": "X"}), 404)
    assert_error(api.delete(f"/subscription_lists/{list_id}"), 404, code="not_found")


def test_subscriber_counts_are_live(api: Api) -> None:
    list_id = add_list(api, "Newsletter")
    bulk_add(api, ["a@example.com", "b@example.com", "c@example.com"], list_id=list_id)
    assert counts(api) == {"All contacts": 3, "Newsletter": 3}
    a = add_subscriber(api, "d@example.com")
    assert counts(api) == {"All contacts": 4, "Newsletter": 3}
    members = {s["attributes"]["email"]: s["id"] for s in ok(api.get("/subscribers"))}
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [members["a@example.com"]], "subscription_list_ids": [list_id]},
        )
    )
    assert counts(api) == {"All contacts": 4, "Newsletter": 2}
    ok(
        api.post(
            "/subscriptions/subscribe",
            {
                "subscriber_ids": [members["a@example.com"], a["id"]],
                "subscription_list_ids": [list_id],
            },
        )
    )
    assert counts(api) == {"All contacts": 4, "Newsletter": 4}
    api.delete("/subscribers_bulk_delete", params={"subscriber_ids": members["b@example.com"]})
    assert counts(api) == {"All contacts": 3, "Newsletter": 3}
