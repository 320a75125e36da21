"""Tenant isolation: account B's key, used on account A's ids, never reads or changes A's rows,
and B's listings never include them. A is `acme` (under /v1/orca/acme), B is `globex`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dripstone import db
from dripstone.jobs.models import Job
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    DynamicList,
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from tests.conftest import Api
from tests.subscribers.helpers import add_list, add_subscriber, assert_error, internal_id, ok


@dataclass
class Tenant:
    """One account's rows, as its own API shows them."""

    api: Api
    subscriber: str
    subscriber_number: int
    email: str
    list_id: str
    default_list: str
    subscription: str
    dynamic_list: str
    jid: str


def populate(api: Api, database: db.Database, domain: str) -> Tenant:
    lists = {lst["attributes"]["name"]: lst["id"] for lst in ok(api.get("/subscription_lists"))}
    list_id = add_list(api, "Newsletter")
    subscriber = add_subscriber(
        api,
        f"ann@{domain}",
        first_name="Ann",
        list_id=list_id,
        custom_fields=[{"plan": "gold"}, {f"tier_{domain.split('.')[0]}": "1"}],
    )
    add_subscriber(api, f"bob@{domain}", first_name="Bob")
    subscription = ok(api.get("/subscriptions"))[0]["uuid"]
    dynamic = ok(
        api.post(
            "/dynamic_lists",
            {
                "dynamic_list": {
                    "name": "Gold",
                    "subscription_list_id": list_id,
                    "filters": [[{"field": "plan", "op": "is", "terms": ["gold"]}]],
                }
            },
        )
    )["id"]
    jid = ok(
        api.post(
            "/subscriptions/bulk_global_subscribe",
            {"from_subscription_list_id": lists["All contacts"]},
        )
    )["jid"]
    return Tenant(
        api=api,
        subscriber=subscriber["id"],
        subscriber_number=internal_id(database, subscriber["id"]),
        email=f"ann@{domain}",
        list_id=list_id,
        default_list=lists["All contacts"],
        subscription=subscription,
        dynamic_list=dynamic,
        jid=jid,
    )


def snapshot(tenant: Tenant, database: db.Database) -> dict[str, Any]:
    """Everything the tenant's API shows, plus row counts of its account in every table."""
    api = tenant.api
    shown = {
        "subscribers": ok(api.get("/subscribers", params={"items": 1000})),
        "details": [
            ok(api.get(f"/subscribers/{s['id']}", params={"with_stats": True}))
            for s in ok(api.get("/subscribers", params={"items": 1000}))
        ],
        "lists": ok(api.get("/subscription_lists")),
        "subscriptions": ok(api.get("/subscriptions")),
        "dynamic_lists": ok(api.get("/dynamic_lists")),
        "field_types": ok(api.get("/subscriber_custom_field_types")),
        "job": ok(api.get(f"/jobs/{tenant.jid}")),
    }
    with database.sessions() as session:
        account = session.scalar(
            select(Subscriber.account_id).where(Subscriber.uuid == tenant.subscriber)
        )
        counts = {
            model.__tablename__: session.scalar(
                select(func.count()).select_from(model).where(model.account_id == account)
            )
            for model in (
                Subscriber,
                SubscriptionList,
                Subscription,
                SubscriptionEvent,
                DynamicList,
                CustomFieldType,
                Job,
            )
        }
        counts["subscriber_custom_field_values"] = session.scalar(
            select(func.count())
            .select_from(CustomFieldValue)
            .join(Subscriber, Subscriber.id == CustomFieldValue.subscriber_id)
            .where(Subscriber.account_id == account)
        )
    return {"shown": shown, "counts": counts}


@pytest.fixture
def tenants(api: Api, other_api: Api, database: db.Database) -> tuple[Tenant, Tenant]:
    return populate(api, database, "acme.example"), populate(other_api, database, "globex.example")


def errors_quirk(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"errors"}, response.text


Attack = Callable[[Api, Tenant, Tenant], httpx.Response]

# (name, what B does with A's ids, the answer B must get)
ATTACKS: list[tuple[str, Attack, int | str]] = [
    ("get subscriber", lambda b, a, _: b.get(f"/subscribers/{a.subscriber}"), 404),
    (
        "put subscriber",
        lambda b, a, _: b.put(f"/subscribers/{a.subscriber}", {"subscriber": {"first_name": "X"}}),
        404,
    ),
    (
        "patch subscriber",
        lambda b, a, _: b.patch(f"/subscribers/{a.subscriber}", {"subscriber": {"email": None}}),
        404,
    ),
    (
        "list subscribers of A's list",
        lambda b, a, _: b.get("/subscribers", params={"subscription_list_id": a.list_id}),
        422,
    ),
    (
        "create subscriber on A's list",
        lambda b, a, _: b.post(
            "/subscribers",
            {"subscriber": {"email": "new@globex.example"}, "subscription_list_id": a.list_id},
        ),
        422,
    ),
    (
        "bulk create onto A's list",
        lambda b, a, _: b.post(
            "/subscribers_bulk_create",
            {"subscribers": [{"email": a.email}], "subscription_list_id": a.list_id},
        ),
        422,
    ),
    (
        "bulk delete A's subscriber",
        lambda b, a, bb: b.delete(
            "/subscribers_bulk_delete", params={"subscriber_ids": f"{bb.subscriber},{a.subscriber}"}
        ),
        422,
    ),
    (
        "bulk delete from A's list",
        lambda b, a, bb: b.delete(
            "/subscribers_bulk_delete",
            params={"subscriber_ids": bb.subscriber, "subscription_list_id": a.list_id},
        ),
        422,
    ),
    (
        "rename A's list (PUT)",
        lambda b, a, _: b.put(f"/subscription_lists/{a.list_id}", {"name": "X"}),
        404,
    ),
    (
        "rename A's list (PATCH)",
        lambda b, a, _: b.patch(f"/subscription_lists/{a.list_id}", {"name": "X"}),
        404,
    ),
    ("delete A's list", lambda b, a, _: b.delete(f"/subscription_lists/{a.list_id}"), 404),
    (
        "delete A's default list",
        lambda b, a, _: b.delete(f"/subscription_lists/{a.default_list}"),
        404,
    ),
    ("get A's subscription", lambda b, a, _: b.get(f"/subscriptions/{a.subscription}"), 404),
    ("delete A's subscription", lambda b, a, _: b.delete(f"/subscriptions/{a.subscription}"), 404),
    (
        "subscribe A's subscriber to A's list",
        lambda b, a, _: b.post(
            "/subscriptions",
            {
                "subscription": {
                    "subscription_list_id": a.list_id,
                    "subscriber_id": a.subscriber_number,
                }
            },
        ),
        "errors",
    ),
    (
        "subscribe A's subscriber to B's list",
        lambda b, a, bb: b.post(
            "/subscriptions",
            {
                "subscription": {
                    "subscription_list_id": bb.list_id,
                    "subscriber_id": a.subscriber_number,
                }
            },
        ),
        "errors",
    ),
    (
        "subscribe B's subscriber to A's list",
        lambda b, a, bb: b.post(
            "/subscriptions",
            {
                "subscription": {
                    "subscription_list_id": a.list_id,
                    "subscriber_id": bb.subscriber_number,
                }
            },
        ),
        "errors",
    ),
    (
        "unsubscribe A's subscriber globally",
        lambda b, a, _: b.post("/subscriptions/unsubscribe", {"subscriber_ids": [a.subscriber]}),
        "errors",
    ),
    (
        "unsubscribe A's subscriber from A's list",
        lambda b, a, _: b.post(
            "/subscriptions/unsubscribe",
            {"subscriber_ids": [a.subscriber], "subscription_list_ids": [a.list_id]},
        ),
        "errors",
    ),
    (
        "subscribe B's subscriber to A's list via subscribe",
        lambda b, a, bb: b.post(
            "/subscriptions/subscribe",
            {"subscriber_ids": [bb.subscriber], "subscription_list_ids": [a.list_id]},
        ),
        "errors",
    ),
    (
        "subscribe A's subscriber via subscribe",
        lambda b, a, _: b.post("/subscriptions/subscribe", {"subscriber_ids": [a.subscriber]}),
        "errors",
    ),
    (
        "bulk global unsubscribe A's ids",
        lambda b, a, _: b.post(
            "/subscriptions/bulk_global_unsubscribe", {"subscriber_ids": [a.subscriber]}
        ),
        "errors",
    ),
    (
        "bulk global unsubscribe select-all from A's list",
        lambda b, a, _: b.post(
            "/subscriptions/bulk_global_unsubscribe", {"from_subscription_list_id": a.list_id}
        ),
        "errors",
    ),
    (
        "bulk global unsubscribe select-all from A's default list",
        lambda b, a, _: b.post(
            "/subscriptions/bulk_global_unsubscribe", {"from_subscription_list_id": a.default_list}
        ),
        "errors",
    ),
    (
        "bulk global unsubscribe except A's ids",
        lambda b, a, bb: b.post(
            "/subscriptions/bulk_global_unsubscribe",
            {"from_subscription_list_id": bb.default_list, "except_ids": [a.subscriber]},
        ),
        "errors",
    ),
    (
        "bulk global subscribe select-all from A's list",
        lambda b, a, _: b.post(
            "/subscriptions/bulk_global_subscribe", {"from_subscription_list_id": a.list_id}
        ),
        "errors",
    ),
    (
        "dynamic bulk unsubscribe A's dynamic list",
        lambda b, a, _: b.post(
            "/subscriptions/dynamic_bulk_unsubscribe", {"from_subscription_list_id": a.dynamic_list}
        ),
        "errors",
    ),
    (
        "dynamic bulk subscribe A's dynamic list",
        lambda b, a, _: b.post(
            "/subscriptions/dynamic_bulk_subscribe", {"from_subscription_list_id": a.dynamic_list}
        ),
        "errors",
    ),
    ("get A's dynamic list", lambda b, a, _: b.get(f"/dynamic_lists/{a.dynamic_list}"), 404),
    (
        "replace A's dynamic list",
        lambda b, a, _: b.put(f"/dynamic_lists/{a.dynamic_list}", {"dynamic_list": {"name": "X"}}),
        404,
    ),
    ("delete A's dynamic list", lambda b, a, _: b.delete(f"/dynamic_lists/{a.dynamic_list}"), 404),
    (
        "dynamic list over A's list",
        lambda b, a, _: b.post(
            "/dynamic_lists", {"dynamic_list": {"name": "Spy", "subscription_list_id": a.list_id}}
        ),
        422,
    ),
    ("get A's job", lambda b, a, _: b.get(f"/jobs/{a.jid}"), 404),
    (
        "dynamic list filtering on A's custom field",
        lambda b, a, _: b.post(
            "/dynamic_lists",
            {
                "dynamic_list": {
                    "name": "Spy",
                    "filters": [[{"field": "tier_acme", "op": "is_not_empty"}]],
                }
            },
        ),
        422,
    ),
    (
        "select-all filtering on A's custom field",
        lambda b, a, bb: b.post(
            "/subscriptions/bulk_global_unsubscribe",
            {
                "from_subscription_list_id": bb.default_list,
                "filters": [[{"field": "tier_acme", "op": "is_empty"}]],
            },
        ),
        "errors",
    ),
]


def check(response: httpx.Response, expected: int | str) -> None:
    if expected == "errors":
        errors_quirk(response)
    else:
        assert isinstance(expected, int)
        assert_error(response, expected)
    assert "acme.example" not in response.text


@pytest.mark.parametrize(("name", "attack", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_b_cannot_touch_a(
    tenants: tuple[Tenant, Tenant],
    database: db.Database,
    name: str,
    attack: Attack,
    expected: int | str,
) -> None:
    a, b = tenants
    before = snapshot(a, database)
    check(attack(b.api, a, b), expected)
    assert snapshot(a, database) == before


def test_b_cannot_touch_a_under_its_orca_path(
    tenants: tuple[Tenant, Tenant], database: db.Database
) -> None:
    a, b = tenants
    orca = Api(b.api.client, "globex", b.api.key, "/v1/orca/globex")
    before = snapshot(a, database)
    for _, attack, expected in ATTACKS:
        check(attack(orca, a, b), expected)
    assert snapshot(a, database) == before


def test_b_listings_never_show_a(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    for path in (
        "/subscribers?items=1000",
        "/subscribers?search=ann",
        "/subscribers?search=acme",
        "/subscription_lists",
        "/subscriptions",
        "/dynamic_lists",
        "/subscriber_custom_field_types",
    ):
        response = b.api.get(path)
        assert response.status_code == 200, response.text
        assert "acme.example" not in response.text
        for own_id in (a.subscriber, a.list_id, a.default_list, a.subscription, a.dynamic_list):
            assert own_id not in response.text, path
    emails = [s["attributes"]["email"] for s in ok(b.api.get("/subscribers"))]
    assert sorted(emails) == ["ann@globex.example", "bob@globex.example"]
    counts = {
        lst["attributes"]["name"]: lst["attributes"]["subscriber_count"]
        for lst in ok(b.api.get("/subscription_lists"))
    }
    assert counts == {"All contacts": 2, "Newsletter": 1}
    assert [s["attributes"]["subscriber_count"] for s in ok(b.api.get("/dynamic_lists"))] == [1]
    assert len(ok(b.api.get("/subscriptions"))) == 1
    assert [t["attributes"]["name"] for t in ok(b.api.get("/subscriber_custom_field_types"))] == [
        "plan",
        "tier_globex",
    ]


def test_b_work_on_its_own_rows_leaves_a_alone(
    tenants: tuple[Tenant, Tenant], database: db.Database
) -> None:
    """Same emails, names and field names in both accounts; B's select-all jobs, bulk create
    and deletes act on B alone."""
    a, b = tenants
    before = snapshot(a, database)
    added = ok(
        b.api.post(
            "/subscribers_bulk_create",
            {"subscribers": [{"email": "bob@acme.example"}, {"email": "carol@acme.example"}]},
        )
    )
    assert added == {"num_subscribers_added": 2}
    assert add_subscriber(b.api, a.email)["attributes"]["email"] == a.email
    for endpoint in ("bulk_global_unsubscribe", "bulk_global_subscribe", "bulk_global_unsubscribe"):
        jid = ok(
            b.api.post(f"/subscriptions/{endpoint}", {"from_subscription_list_id": b.default_list})
        )["jid"]
        job = ok(b.api.get(f"/jobs/{jid}"))["attributes"]
        assert job["total"] == job["done"] == 5
    jid = ok(
        b.api.post(
            "/subscriptions/dynamic_bulk_subscribe", {"from_subscription_list_id": b.dynamic_list}
        )
    )["jid"]
    assert ok(b.api.get(f"/jobs/{jid}"))["attributes"]["total"] == 1
    ok(b.api.post("/subscription_lists", {"name": "Weekly"}))
    ok(
        b.api.post(
            "/subscriber_custom_field_types", {"subscriber_custom_field_type": {"name": "seats"}}
        )
    )
    ok(b.api.put(f"/subscription_lists/{b.list_id}", {"name": "Renamed"}))
    ok(b.api.delete(f"/subscriptions/{b.subscription}"))
    assert b.api.delete(f"/dynamic_lists/{b.dynamic_list}").json() == {}
    everyone = ",".join(s["id"] for s in ok(b.api.get("/subscribers")))
    assert (
        b.api.delete("/subscribers_bulk_delete", params={"subscriber_ids": everyone}).status_code
        == 200
    )
    assert b.api.delete(f"/subscription_lists/{b.list_id}").json() == {}
    assert ok(b.api.get("/subscribers")) == []
    assert snapshot(a, database) == before
