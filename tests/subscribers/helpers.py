"""Small helpers the subscribers-domain tests share: calls that set up data, and checks."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from dripstone import db
from dripstone.subscribers.models import (
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from tests.conftest import Api

ENVELOPE_KEYS = {"error", "code", "details"}


def assert_error(
    response: httpx.Response, status: int, *, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    """The response is the error envelope with this status (and code, and details.field)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["code"], str)
    assert isinstance(body["details"], dict)
    if code is not None:
        assert body["code"] == code, body
    if field is not None:
        assert body["details"].get("field") == field, body
    assert "x-request-id" in response.headers
    return body


def ok(response: httpx.Response) -> Any:
    """The `data` of a 200 answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "data" in body, body
    return body["data"]


def add_subscriber(
    api: Api, email: str | None = None, *, list_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    subscriber: dict[str, Any] = dict(fields)
    if email is not None:
        subscriber["email"] = email
    body: dict[str, Any] = {"subscriber": subscriber}
    if list_id is not None:
        body["subscription_list_id"] = list_id
    data: dict[str, Any] = ok(api.post("/subscribers", body))
    return data


def add_list(api: Api, name: str) -> str:
    data = ok(api.post("/subscription_lists", {"name": name}))
    assert isinstance(data["id"], str)
    return data["id"]


def bulk_add(
    api: Api, emails: list[str], *, list_id: str | None = None, **row: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"subscribers": [{"email": e, **row} for e in emails]}
    if list_id is not None:
        body["subscription_list_id"] = list_id
    data: dict[str, Any] = ok(api.post("/subscribers_bulk_create", body))
    return data


def detail(api: Api, subscriber_id: str, **params: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(api.get(f"/subscribers/{subscriber_id}", params=params))
    return data


def all_subscribers(api: Api, **params: Any) -> list[dict[str, Any]]:
    """Every subscriber the list endpoint shows (one page of the maximum size)."""
    data: list[dict[str, Any]] = ok(api.get("/subscribers", params={"items": 1000, **params}))
    return data


def emails_of(resources: list[dict[str, Any]]) -> list[str]:
    return [r["attributes"]["email"] for r in resources]


def lists_by_name(api: Api) -> dict[str, dict[str, Any]]:
    return {lst["attributes"]["name"]: lst for lst in ok(api.get("/subscription_lists"))}


def default_list_id(api: Api) -> str:
    found: str = lists_by_name(api)["All contacts"]["id"]
    return found


def memberships(api: Api, subscriber_id: str) -> dict[str, bool]:
    """List name -> unsubscribed, as the detailed subscriber shows them."""
    lists = detail(api, subscriber_id)["attributes"]["subscription_lists"]
    return {m["name"]: m["unsubscribed"] for m in lists}


def internal_id(database: db.Database, subscriber_uuid: str) -> int:
    with database.sessions() as session:
        found = session.scalar(select(Subscriber.id).where(Subscriber.uuid == subscriber_uuid))
    assert found is not None
    return found


def count_rows(database: db.Database, model: type[Any]) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def subscriber_total(database: db.Database) -> int:
    return count_rows(database, Subscriber)


def subscription_total(database: db.Database) -> int:
    return count_rows(database, Subscription)


def events(database: db.Database) -> list[tuple[str, str]]:
    """Every subscription event as (subscriber email or phone, list name), in insertion order."""
    with database.sessions() as session:
        rows = session.execute(
            select(func.coalesce(Subscriber.email, Subscriber.phone_number), SubscriptionList.name)
            .select_from(SubscriptionEvent)
            .join(Subscriber, Subscriber.id == SubscriptionEvent.subscriber_id)
            .join(SubscriptionList, SubscriptionList.id == SubscriptionEvent.subscription_list_id)
            .order_by(SubscriptionEvent.id)
        ).all()
    return [(who, name) for who, name in rows]


def fill(value: Any, **names: str) -> Any:
    """`value` (JSON) with every string equal to a key of `names` replaced by its value."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [fill(v, **names) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, **names) for k, v in value.items()}
    return value


def errors_string(response: Any) -> str:
    """The documented quirk: 200 with {"errors": "<string>"} instead of data."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], str)
    assert body["errors"]
    error: str = body["errors"]
    return error
