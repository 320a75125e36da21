"""POST/GET/PUT/PATCH /subscribers: creating, listing, reading and changing contacts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dripstone import clock, db
from tests.conftest import Api
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    all_subscribers,
    assert_error,
    bulk_add,
    detail,
    emails_of,
    memberships,
    ok,
    subscriber_total,
)

# --- create ------------------------------------------------------------------------------------


def test_create_lowercases_the_email_and_answers_the_subscriber(api: Api) -> None:
    created = add_subscriber(api, "Ann.Lee@Example.COM", first_name="Ann", last_name="Lee")
    assert created["type"] == "subscriber"
    assert created["attributes"]["email"] == "ann.lee@example.com"
    assert created["attributes"]["first_name"] == "Ann"
    assert created["attributes"]["last_name"] == "Lee"
    assert created["attributes"]["unsubscribed"] is False
    assert detail(api, created["id"])["attributes"]["email"] == "ann.lee@example.com"


def test_names_never_given_are_empty_strings_everywhere_never_null(api: Api) -> None:
    """Paubox documents the names as strings: a client may call string methods on them."""
    created = add_subscriber(api, "ann@example.com")
    answers = [
        created["attributes"],
        detail(api, created["id"])["attributes"],
        ok(api.get("/subscribers"))[0]["attributes"],
        ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [created["id"]]}))[0][
            "attributes"
        ],
    ]
    for attributes in answers:
        assert (attributes["first_name"], attributes["last_name"]) == ("", "")


def test_duplicate_email_in_other_case_is_refused(api: Api, database: db.Database) -> None:
    first = add_subscriber(api, "ann@example.com")
    response = api.post("/subscribers", {"subscriber": {"email": "ANN@example.com"}})
    body = assert_error(response, 422, code="conflict", field="subscriber.email")
    assert body["details"]["subscriber_id"] == first["id"]
    assert subscriber_total(database) == 1


def test_phone_only_subscriber_is_stored_in_e164(api: Api) -> None:
    created = add_subscriber(api, phone_number="+1 (415) 555-0123", first_name="Pat")
    # A string, as Paubox types it (it requires an address there, though it creates a
    # subscriber by phone alone): empty, never null.
    assert created["attributes"]["email"] == ""
    assert detail(api, created["id"])["attributes"]["email"] == ""
    assert ok(api.get("/subscribers"))[0]["attributes"]["email"] == ""
    assert created["attributes"]["phone_number"] == "+14155550123"
    assert detail(api, created["id"])["attributes"]["phone_number"] == "+14155550123"


@pytest.mark.parametrize("phone", ["4155550123", "+1 555", "call me"])
def test_phone_that_is_not_e164_is_refused(api: Api, database: db.Database, phone: str) -> None:
    response = api.post("/subscribers", {"subscriber": {"phone_number": phone}})
    assert_error(response, 422, code="validation_failed", field="subscriber.phone_number")
    assert subscriber_total(database) == 0


@pytest.mark.parametrize("email", ["not-an-email", "ann@", "@example.com", "a b@example.com", ""])
def test_invalid_email_is_refused_naming_the_field(
    api: Api, database: db.Database, email: str
) -> None:
    response = api.post("/subscribers", {"subscriber": {"email": email}})
    assert_error(response, 422, code="validation_failed", field="subscriber.email")
    assert subscriber_total(database) == 0


def test_email_or_phone_is_required(api: Api, database: db.Database) -> None:
    response = api.post("/subscribers", {"subscriber": {"first_name": "Nobody"}})
    body = assert_error(response, 422, code="validation_failed", field="subscriber")
    assert "email or phone_number" in body["error"]
    assert subscriber_total(database) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"subscriber": {"email": "ann@example.com", "nickname": "A"}},
        {"email": "ann@example.com"},
        {"subscriber": "ann@example.com"},
    ],
)
def test_malformed_bodies_are_refused(
    api: Api, database: db.Database, body: dict[str, Any]
) -> None:
    assert_error(api.post("/subscribers", body), 422, code="validation_failed")
    assert subscriber_total(database) == 0


def test_text_with_a_nul_character_is_refused(api: Api, database: db.Database) -> None:
    response = api.post(
        "/subscribers", {"subscriber": {"email": "ann@example.com", "first_name": "A\u0000nn"}}
    )
    assert_error(response, 422, field="subscriber.first_name")
    response = api.post(
        "/subscribers",
        {"subscriber": {"email": "ann@example.com", "custom_fields": [{"plan": "\u0000"}]}},
    )
    assert_error(response, 422)
    assert subscriber_total(database) == 0


def test_custom_fields_show_in_the_detailed_subscriber(api: Api) -> None:
    created = add_subscriber(
        api,
        "ann@example.com",
        custom_fields=[{"plan": "gold"}, {"seats": 3}, {"trial": True}],
    )
    fields = detail(api, created["id"])["attributes"]["custom_fields"]
    assert {f["custom_field_name"]: f["custom_field_value"] for f in fields} == {
        "plan": "gold",
        "seats": "3",
        "trial": "true",
    }
    types = {
        t["attributes"]["name"]: t["id"] for t in ok(api.get("/subscriber_custom_field_types"))
    }
    for field in fields:
        assert field["subscriber_custom_field_type_id"] == types[field["custom_field_name"]]


def test_custom_field_values_must_be_scalars(api: Api, database: db.Database) -> None:
    response = api.post(
        "/subscribers",
        {"subscriber": {"email": "ann@example.com", "custom_fields": [{"plan": ["a", "b"]}]}},
    )
    assert_error(response, 422, code="validation_failed")
    assert subscriber_total(database) == 0


def test_create_with_a_list_puts_the_subscriber_on_it(api: Api) -> None:
    list_id = add_list(api, "Newsletter")
    created = add_subscriber(api, "ann@example.com", list_id=list_id)
    assert memberships(api, created["id"]) == {"All contacts": False, "Newsletter": False}
    assert emails_of(all_subscribers(api, subscription_list_id=list_id)) == ["ann@example.com"]


def test_create_without_a_list_is_only_in_all_contacts(api: Api) -> None:
    add_list(api, "Newsletter")
    created = add_subscriber(api, "ann@example.com")
    assert memberships(api, created["id"]) == {"All contacts": False}


def test_create_with_an_unknown_list_writes_nothing(api: Api, database: db.Database) -> None:
    add_subscriber(api, "first@example.com")
    response = api.post(
        "/subscribers",
        {
            "subscriber": {"email": "ann@example.com", "custom_fields": [{"plan": "gold"}]},
            "subscription_list_id": "00000000-0000-4000-8000-000000000000",
        },
    )
    assert_error(response, 422, code="invalid", field="subscription_list_id")
    assert subscriber_total(database) == 1
    assert ok(api.get("/subscriber_custom_field_types")) == []


def test_create_with_a_malformed_list_id_is_refused(api: Api, database: db.Database) -> None:
    response = api.post(
        "/subscribers",
        {"subscriber": {"email": "ann@example.com"}, "subscription_list_id": "nope"},
    )
    assert_error(response, 422, code="validation_failed", field="subscription_list_id")
    assert subscriber_total(database) == 0


# --- list --------------------------------------------------------------------------------------


def test_list_pages_default_to_50(api: Api) -> None:
    bulk_add(api, [f"p{i:03}@example.com" for i in range(55)])
    assert len(ok(api.get("/subscribers"))) == 50
    assert len(ok(api.get("/subscribers", params={"page": 2}))) == 5


def test_list_allows_up_to_1000_items(api: Api) -> None:
    bulk_add(api, [f"p{i:04}@example.com" for i in range(1001)])
    assert len(ok(api.get("/subscribers", params={"items": 1000}))) == 1000
    assert len(ok(api.get("/subscribers", params={"items": 1000, "page": 2}))) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"items": 0}, "items"),
        ({"items": 1001}, "items"),
        ({"items": "many"}, "items"),
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"order_by": "bogus"}, "order_by"),
        ({"order_by": "phone_number"}, "order_by"),
        ({"order": "sideways"}, "order"),
        ({"search": "ann@example.com"}, "search"),
        ({"search": "o'brien"}, "search"),
        ({"search": "50%"}, "search"),
        ({"search": "a_b"}, "search"),
        ({"subscription_list_id": "not-a-uuid"}, "subscription_list_id"),
    ],
)
def test_list_refuses_out_of_range_parameters(api: Api, params: dict[str, Any], field: str) -> None:
    add_subscriber(api, "ann@example.com")
    response = api.get("/subscribers", params=params)
    body = assert_error(response, 400, code="invalid_parameter", field=field)
    assert field in body["error"]


def test_list_with_an_unknown_list_is_refused(api: Api) -> None:
    response = api.get(
        "/subscribers", params={"subscription_list_id": "00000000-0000-4000-8000-000000000000"}
    )
    assert_error(response, 422, field="subscription_list_id")


@pytest.fixture
def four_people(api: Api, manual_clock: clock.ManualClock) -> list[str]:
    """Four subscribers whose names, emails, creation and update times all sort differently.
    Returns their emails in creation order."""
    people = [
        ("carol@example.com", "Carol", "Baker"),
        ("alice@example.com", "Dora", "Adams"),
        ("dave@example.com", "Alice", "Drake"),
        ("bob@example.com", "Bob", "Cole"),
    ]
    ids = []
    for email, first, last in people:
        manual_clock.advance(timedelta(minutes=1))
        ids.append(add_subscriber(api, email, first_name=first, last_name=last)["id"])
    # Updated last to first: carol (created first) becomes the most recently updated.
    for n, subscriber_id in enumerate(reversed(ids)):
        manual_clock.advance(timedelta(minutes=1))
        phone = {"phone_number": f"+1415555010{n}"}
        ok(api.patch(f"/subscribers/{subscriber_id}", {"subscriber": phone}))
    return [email for email, _, _ in people]


@pytest.mark.parametrize(
    ("order_by", "ascending"),
    [
        ("email", ["alice", "bob", "carol", "dave"]),
        ("first_name", ["dave", "bob", "carol", "alice"]),
        ("last_name", ["alice", "carol", "bob", "dave"]),
        ("created_at", ["carol", "alice", "dave", "bob"]),
        ("updated_at", ["bob", "dave", "alice", "carol"]),
    ],
)
def test_list_orders_by_each_column_both_ways(
    api: Api, four_people: list[str], order_by: str, ascending: list[str]
) -> None:
    expected = [f"{name}@example.com" for name in ascending]
    asc = all_subscribers(api, order_by=order_by, order="asc")
    desc = all_subscribers(api, order_by=order_by, order="desc")
    assert emails_of(asc) == expected
    assert emails_of(desc) == list(reversed(expected))


def test_list_defaults_to_newest_first(api: Api, four_people: list[str]) -> None:
    assert emails_of(ok(api.get("/subscribers"))) == list(reversed(four_people))


def test_search_matches_every_word_in_email_or_names(api: Api) -> None:
    add_subscriber(api, "ann@acme.io", first_name="Ann", last_name="Lee")
    add_subscriber(api, "bob@globex.io", first_name="Bob", last_name="Annson")
    add_subscriber(api, "carol@example.com", first_name="Carol", last_name="King")

    def found(search: str) -> set[str]:
        return set(emails_of(all_subscribers(api, search=search)))

    assert found("ann") == {"ann@acme.io", "bob@globex.io"}
    assert found("ANN") == {"ann@acme.io", "bob@globex.io"}
    assert found("globex") == {"bob@globex.io"}
    assert found("ann lee") == {"ann@acme.io"}
    assert found("king carol") == {"carol@example.com"}
    assert found("ann king") == set()
    assert found("zzz") == set()


def test_list_filters_to_members_of_a_list(api: Api) -> None:
    newsletter = add_list(api, "Newsletter")
    add_list(api, "Empty")
    member = add_subscriber(api, "member@example.com", list_id=newsletter)
    add_subscriber(api, "outsider@example.com")
    leaver = add_subscriber(api, "leaver@example.com", list_id=newsletter)
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [leaver["id"]], "subscription_list_ids": [newsletter]},
        )
    )
    assert emails_of(all_subscribers(api, subscription_list_id=newsletter)) == [
        member["attributes"]["email"]
    ]
    default = {lst["attributes"]["name"]: lst["id"] for lst in ok(api.get("/subscription_lists"))}
    assert len(all_subscribers(api, subscription_list_id=default["All contacts"])) == 3
    assert all_subscribers(api, subscription_list_id=default["Empty"]) == []


@pytest.mark.parametrize("order_by", ["created_at", "email", "first_name"])
def test_pages_do_not_overlap(api: Api, order_by: str) -> None:
    emails = [f"p{i:02}@example.com" for i in range(23)]
    bulk_add(api, emails, first_name="Same")
    seen: list[str] = []
    for page in range(1, 5):
        found = emails_of(
            ok(api.get("/subscribers", params={"items": 7, "page": page, "order_by": order_by}))
        )
        assert len(found) == (7 if page < 4 else 2)
        seen.extend(found)
    assert sorted(seen) == emails
    assert ok(api.get("/subscribers", params={"items": 7, "page": 5})) == []


# --- detail ------------------------------------------------------------------------------------


def test_detail_shows_timestamps_lists_and_no_statistics_by_default(api: Api) -> None:
    created = add_subscriber(api, "ann@example.com", first_name="Ann")
    attributes = detail(api, created["id"])["attributes"]
    assert attributes["email"] == "ann@example.com"
    assert attributes["created_at"].endswith(("Z", "+00:00"))
    assert attributes["updated_at"]
    assert attributes["custom_fields"] == []
    assert [m["name"] for m in attributes["subscription_lists"]] == ["All contacts"]
    assert attributes.get("statistics") is None


def test_detail_with_stats_adds_statistics(api: Api) -> None:
    list_id = add_list(api, "Newsletter")
    created = add_subscriber(api, "ann@example.com", list_id=list_id)
    ok(
        api.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [created["id"]], "subscription_list_ids": [list_id]},
        )
    )
    stats = detail(api, created["id"], with_stats="true")["attributes"]["statistics"]
    assert stats == {
        "deliveries": 0,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "soft_bounced": 0,
        "hard_bounced": 0,
        "unsubscribed": 1,
        "global_unsubscribed": 0,
    }


@pytest.mark.parametrize(
    "subscriber_id",
    ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "12", "a%00b", "x" * 300],
)
def test_detail_of_an_unknown_subscriber_is_404(api: Api, subscriber_id: str) -> None:
    add_subscriber(api, "ann@example.com")
    assert_error(api.get(f"/subscribers/{subscriber_id}"), 404, code="not_found")


def test_with_stats_must_be_a_boolean(api: Api) -> None:
    created = add_subscriber(api, "ann@example.com")
    response = api.get(f"/subscribers/{created['id']}", params={"with_stats": "maybe"})
    assert_error(response, 400, code="invalid_parameter", field="with_stats")


# --- update ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_changes_only_the_fields_sent(api: Api, method: str) -> None:
    created = add_subscriber(
        api,
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        phone_number="+14155550123",
        custom_fields=[{"plan": "gold"}],
    )
    response = api.request(
        method, f"/subscribers/{created['id']}", json={"subscriber": {"last_name": "Smith"}}
    )
    assert ok(response)["attributes"]["last_name"] == "Smith"
    attributes = detail(api, created["id"])["attributes"]
    assert attributes["email"] == "ann@example.com"
    assert attributes["first_name"] == "Ann"
    assert attributes["last_name"] == "Smith"
    assert attributes["phone_number"] == "+14155550123"
    assert [f["custom_field_value"] for f in attributes["custom_fields"]] == ["gold"]


def test_update_normalises_a_new_email(api: Api) -> None:
    created = add_subscriber(api, "ann@example.com")
    response = api.put(f"/subscribers/{created['id']}", {"subscriber": {"email": "Ann@New.ORG"}})
    assert ok(response)["attributes"]["email"] == "ann@new.org"
    # Its own address in another case is not a clash with itself.
    response = api.put(f"/subscribers/{created['id']}", {"subscriber": {"email": "ANN@new.org"}})
    assert ok(response)["attributes"]["email"] == "ann@new.org"


def test_update_to_another_subscribers_email_is_refused(api: Api) -> None:
    add_subscriber(api, "ann@example.com")
    bob = add_subscriber(api, "bob@example.com", first_name="Bob")
    response = api.patch(
        f"/subscribers/{bob['id']}",
        {"subscriber": {"email": "ANN@example.com", "first_name": "Robert"}},
    )
    assert_error(response, 422, code="conflict", field="subscriber.email")
    attributes = detail(api, bob["id"])["attributes"]
    assert (attributes["email"], attributes["first_name"]) == ("bob@example.com", "Bob")


def test_update_clearing_email_and_phone_is_refused(api: Api) -> None:
    created = add_subscriber(api, "ann@example.com", first_name="Ann")
    response = api.patch(
        f"/subscribers/{created['id']}",
        {"subscriber": {"email": None, "phone_number": None, "first_name": "Changed"}},
    )
    assert_error(response, 422)
    attributes = detail(api, created["id"])["attributes"]
    assert (attributes["email"], attributes["first_name"]) == ("ann@example.com", "Ann")


def test_update_may_swap_email_for_phone(api: Api) -> None:
    created = add_subscriber(api, "ann@example.com")
    response = api.patch(
        f"/subscribers/{created['id']}",
        {"subscriber": {"email": None, "phone_number": "+442071838750"}},
    )
    attributes = ok(response)["attributes"]
    assert (attributes["email"], attributes["phone_number"]) == ("", "+442071838750")
    # The address is free again.
    add_subscriber(api, "ann@example.com")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subscriber": {"email": "nope"}}, "subscriber.email"),
        ({"subscriber": {"phone_number": "12"}}, "subscriber.phone_number"),
        ({"subscriber": {"custom_fields": []}}, "subscriber.custom_fields"),
        ({"subscriber": {"first_name": "x" * 256}}, "subscriber.first_name"),
    ],
)
def test_update_with_invalid_fields_is_refused(api: Api, body: dict[str, Any], field: str) -> None:
    created = add_subscriber(api, "ann@example.com")
    assert_error(api.put(f"/subscribers/{created['id']}", body), 422, field=field)
    assert detail(api, created["id"])["attributes"]["email"] == "ann@example.com"


def test_update_of_an_unknown_subscriber_is_404(api: Api) -> None:
    response = api.patch(
        "/subscribers/00000000-0000-4000-8000-000000000000", {"subscriber": {"first_name": "X"}}
    )
    assert_error(response, 404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("DELETE", "/subscribers", 405),
        ("POST", "/subscribers/00000000-0000-4000-8000-000000000000", 405),
        ("GET", "/subscribers_bulk_create", 405),
        ("GET", "/subscriber", 404),
    ],
)
def test_unknown_routes_and_methods_answer_the_envelope(
    api: Api, method: str, path: str, status: int
) -> None:
    assert_error(api.request(method, path), status)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_custom_field_value_that_is_not_a_finite_number_is_refused_naming_it(
    api: Api, database: db.Database, literal: str
) -> None:
    body = '{"subscriber": {"email": "ann@example.com", "custom_fields": [{"score": %s}]}}'
    response = api.post(
        "/subscribers", content=body % literal, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, field="subscriber.custom_fields[0].score")
    assert subscriber_total(database) == 0


def test_line_breaks_and_control_characters_in_names_become_spaces(api: Api) -> None:
    created = add_subscriber(
        api, "ann@example.com", first_name="Ann\r\nBcc: x@example.net", last_name="Lee\t\x0bJr\x7f"
    )
    attributes = detail(api, created["id"])["attributes"]
    assert (attributes["first_name"], attributes["last_name"]) == (
        "Ann Bcc: x@example.net",
        "Lee Jr",
    )
    list_id = ok(api.post("/subscription_lists", {"name": "News\r\nletter\n"}))["id"]
    lists = ok(api.get("/subscription_lists"))
    assert [item["attributes"]["name"] for item in lists if item["id"] == list_id] == [
        "News letter"
    ]
