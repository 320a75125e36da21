"""/dynamic_lists (Dripstone extension): saved segments with live subscriber counts."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from dripstone import db
from dripstone.subscribers.models import DynamicList
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    assert_error,
    bulk_add,
    count_rows,
    ok,
    subscriber_total,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
GOLD = [[{"field": "plan", "op": "is", "terms": ["gold"]}]]


def segment_body(name: str, **fields: Any) -> dict[str, Any]:
    return {"dynamic_list": {"name": name, **fields}}


def create(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(api.post("/dynamic_lists", segment_body(name, **fields)))
    return data


def count_of(api: Api, segment_id: str) -> int:
    found: int = ok(api.get(f"/dynamic_lists/{segment_id}"))["attributes"]["subscriber_count"]
    return found


@pytest.fixture
def newsletter(api: Api) -> str:
    return add_list(api, "Newsletter")


def test_create_and_read_a_dynamic_list(api: Api, newsletter: str) -> None:
    add_subscriber(api, "ann@acme.io", list_id=newsletter, custom_fields=[{"plan": "gold"}])
    add_subscriber(api, "bob@acme.io", list_id=newsletter, custom_fields=[{"plan": "silver"}])
    add_subscriber(api, "carol@acme.io", custom_fields=[{"plan": "gold"}])
    created = create(api, "Gold readers", subscription_list_id=newsletter, filters=GOLD)
    assert created["type"] == "dynamic_list"
    attributes = created["attributes"]
    assert attributes["name"] == "Gold readers"
    assert attributes["subscription_list_id"] == newsletter
    assert attributes["search"] == "*"
    assert attributes["filters"] == GOLD
    assert attributes["subscriber_count"] == 1
    assert attributes["created_at"]
    assert attributes["updated_at"]
    assert ok(api.get(f"/dynamic_lists/{created['id']}")) == created
    assert ok(api.get("/dynamic_lists")) == [created]


def test_dynamic_list_over_all_contacts_with_search(api: Api) -> None:
    bulk_add(api, ["ann@acme.io", "bob@acme.io", "carol@globex.com"])
    created = create(api, "Acme", search="acme")
    assert created["attributes"]["subscription_list_id"] is None
    assert created["attributes"]["search"] == "acme"
    assert created["attributes"]["subscriber_count"] == 2


def test_filters_may_be_sent_url_encoded(api: Api) -> None:
    add_subscriber(api, "ann@acme.io", custom_fields=[{"plan": "gold"}])
    created = create(api, "Gold", filters=quote(json.dumps(GOLD)))
    assert created["attributes"]["filters"] == GOLD
    assert created["attributes"]["subscriber_count"] == 1


def define_plan(api: Api) -> None:
    ok(
        api.post(
            "/subscriber_custom_field_types", {"subscriber_custom_field_type": {"name": "plan"}}
        )
    )


def test_a_custom_field_must_exist_before_a_filter_names_it(api: Api) -> None:
    response = api.post("/dynamic_lists", segment_body("Gold", filters=GOLD))
    assert_error(response, 422, field="filters")
    define_plan(api)
    assert create(api, "Gold", filters=GOLD)["attributes"]["subscriber_count"] == 0


def test_subscriber_count_is_live(api: Api, newsletter: str) -> None:
    define_plan(api)
    segment = create(api, "Gold readers", subscription_list_id=newsletter, filters=GOLD)["id"]
    assert count_of(api, segment) == 0
    ann = add_subscriber(api, "ann@acme.io", list_id=newsletter, custom_fields=[{"plan": "gold"}])
    bulk_add(api, ["b@acme.io", "c@acme.io"], list_id=newsletter, custom_fields=[{"plan": "gold"}])
    add_subscriber(api, "d@acme.io", list_id=newsletter, custom_fields=[{"plan": "silver"}])
    assert count_of(api, segment) == 3
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [ann["id"]], "subscription_list_ids": [newsletter]},
        )
    )
    assert count_of(api, segment) == 2
    listed = ok(api.get("/dynamic_lists"))
    assert [s["attributes"]["subscriber_count"] for s in listed] == [2]


def test_update_replaces_the_definition(api: Api, newsletter: str) -> None:
    add_subscriber(api, "ann@acme.io", custom_fields=[{"plan": "gold"}])
    add_subscriber(api, "bob@globex.com")
    created = create(api, "Gold readers", subscription_list_id=newsletter, filters=GOLD)
    assert created["attributes"]["subscriber_count"] == 0
    updated = ok(
        api.put(f"/dynamic_lists/{created['id']}", segment_body("Globex", search="globex"))
    )
    assert updated["id"] == created["id"]
    attributes = updated["attributes"]
    assert attributes["name"] == "Globex"
    assert attributes["subscription_list_id"] is None
    assert attributes["search"] == "globex"
    assert attributes["filters"] == []
    assert attributes["subscriber_count"] == 1
    assert ok(api.get(f"/dynamic_lists/{created['id']}")) == updated
    # Keeping its own name is not a clash.
    ok(api.put(f"/dynamic_lists/{created['id']}", segment_body("Globex", search="acme")))


def test_delete_a_dynamic_list_keeps_its_subscribers(api: Api, database: db.Database) -> None:
    add_subscriber(api, "ann@acme.io", custom_fields=[{"plan": "gold"}])
    created = create(api, "Gold", filters=GOLD)
    response = api.delete(f"/dynamic_lists/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert_error(api.get(f"/dynamic_lists/{created['id']}"), 404, code="not_found")
    assert ok(api.get("/dynamic_lists")) == []
    assert subscriber_total(database) == 1
    create(api, "Gold", filters=GOLD)


def test_names_are_unique(api: Api, database: db.Database) -> None:
    define_plan(api)
    first = create(api, "Gold", filters=GOLD)
    assert_error(
        api.post("/dynamic_lists", segment_body("Gold")),
        422,
        code="conflict",
        field="dynamic_list.name",
    )
    other = create(api, "Silver")
    response = api.put(f"/dynamic_lists/{other['id']}", segment_body("Gold"))
    assert_error(response, 422, code="conflict", field="dynamic_list.name")
    assert ok(api.get(f"/dynamic_lists/{other['id']}"))["attributes"]["name"] == "Silver"
    assert ok(api.get(f"/dynamic_lists/{first['id']}")) == first
    assert count_rows(database, DynamicList) == 2


def test_unknown_filter_field_is_refused_and_nothing_saved(api: Api, database: db.Database) -> None:
    shoe = [[{"field": "shoe_size", "op": "is", "terms": ["42"]}]]
    response = api.post("/dynamic_lists", segment_body("Shoes", filters=shoe))
    body = assert_error(response, 422, field="filters")
    assert "shoe_size" in body["error"]
    assert count_rows(database, DynamicList) == 0
    created = create(api, "Everyone")
    response = api.put(f"/dynamic_lists/{created['id']}", segment_body("Shoes", filters=shoe))
    assert_error(response, 422, field="filters")
    assert ok(api.get(f"/dynamic_lists/{created['id']}")) == created


def test_unknown_base_list_is_refused(api: Api, database: db.Database) -> None:
    response = api.post("/dynamic_lists", segment_body("X", subscription_list_id=UNKNOWN_ID))
    assert_error(response, 422, code="invalid", field="dynamic_list.subscription_list_id")
    assert count_rows(database, DynamicList) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"dynamic_list": {}},
        {"dynamic_list": {"name": ""}},
        {"dynamic_list": {"name": "X", "search": "a@b"}},
        {"dynamic_list": {"name": "X", "filters": "nope"}},
        {"dynamic_list": {"name": "X", "filters": [[{"field": "email", "op": "near"}]]}},
        {"dynamic_list": {"name": "X", "subscription_list_id": "nope"}},
        {"dynamic_list": {"name": "X", "colour": "red"}},
    ],
)
def test_malformed_dynamic_lists_are_refused(
    api: Api, database: db.Database, body: dict[str, Any]
) -> None:
    assert_error(api.post("/dynamic_lists", body), 422, code="validation_failed")
    assert count_rows(database, DynamicList) == 0


@pytest.mark.parametrize("segment_id", [UNKNOWN_ID, "nope", "a%00b"])
def test_unknown_dynamic_lists_are_404(api: Api, segment_id: str) -> None:
    assert_error(api.get(f"/dynamic_lists/{segment_id}"), 404, code="not_found")
    assert_error(api.put(f"/dynamic_lists/{segment_id}", segment_body("X")), 404, code="not_found")
    assert_error(api.delete(f"/dynamic_lists/{segment_id}"), 404, code="not_found")
