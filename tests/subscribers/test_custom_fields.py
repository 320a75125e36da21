"""/subscriber_custom_field_types (Dripstone extension): the account's custom fields."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.subscribers.helpers import add_subscriber, assert_error, detail, ok


def names(api: Api) -> list[str]:
    return [t["attributes"]["name"] for t in ok(api.get("/subscriber_custom_field_types"))]


def create(api: Api, name: str) -> Any:
    return api.post(
        "/subscriber_custom_field_types", {"subscriber_custom_field_type": {"name": name}}
    )


def test_no_custom_fields_at_first(api: Api) -> None:
    assert ok(api.get("/subscriber_custom_field_types")) == []


def test_create_and_list_custom_fields(api: Api) -> None:
    created = ok(create(api, "plan"))
    assert created["type"] == "subscriber_custom_field_type"
    assert created["attributes"]["name"] == "plan"
    assert created["attributes"]["created_at"]
    ok(create(api, "  company  "))
    listed = ok(api.get("/subscriber_custom_field_types"))
    assert [t["attributes"]["name"] for t in listed] == ["company", "plan"]
    assert created in listed


def test_fields_named_by_subscribers_are_created_on_use(api: Api) -> None:
    plan = ok(create(api, "plan"))
    ann = add_subscriber(api, "ann@example.com", custom_fields=[{"plan": "gold", "seats": 2}])
    assert names(api) == ["plan", "seats"]
    fields = detail(api, ann["id"])["attributes"]["custom_fields"]
    by_name = {f["custom_field_name"]: f for f in fields}
    assert by_name["plan"]["subscriber_custom_field_type_id"] == plan["id"]
    # A second subscriber reuses the same field types.
    add_subscriber(api, "bob@example.com", custom_fields=[{"seats": 5}])
    assert names(api) == ["plan", "seats"]


@pytest.mark.parametrize("name", ["plan", " plan "])
def test_duplicate_names_are_refused(api: Api, name: str) -> None:
    ok(create(api, "plan"))
    assert_error(create(api, name), 422, code="conflict", field="subscriber_custom_field_type.name")
    assert names(api) == ["plan"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"subscriber_custom_field_type": {}},
        {"subscriber_custom_field_type": {"name": ""}},
        {"subscriber_custom_field_type": {"name": "   "}},
        {"subscriber_custom_field_type": {"name": "x" * 256}},
        {"subscriber_custom_field_type": {"name": "a\u0000b"}},
        {"name": "plan"},
    ],
)
def test_invalid_names_are_refused(api: Api, body: dict[str, Any]) -> None:
    assert_error(api.post("/subscriber_custom_field_types", body), 422, code="validation_failed")
    assert names(api) == []
