"""Authentication: which account a request acts for, and every way a key is refused."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from dripstone import db
from dripstone.accounts import service as accounts
from tests.conftest import Api
from tests.subscribers.helpers import add_subscriber, assert_error, ok

ENDPOINTS = [
    ("GET", "/subscribers"),
    ("POST", "/subscribers"),
    ("GET", "/subscribers/00000000-0000-4000-8000-000000000000"),
    ("PUT", "/subscribers/00000000-0000-4000-8000-000000000000"),
    ("PATCH", "/subscribers/00000000-0000-4000-8000-000000000000"),
    ("POST", "/subscribers_bulk_create"),
    ("DELETE", "/subscribers_bulk_delete?subscriber_ids=00000000-0000-4000-8000-000000000000"),
    ("GET", "/subscriber_custom_field_types"),
    ("POST", "/subscriber_custom_field_types"),
    ("GET", "/subscription_lists"),
    ("POST", "/subscription_lists"),
    ("PUT", "/subscription_lists/00000000-0000-4000-8000-000000000000"),
    ("PATCH", "/subscription_lists/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/subscription_lists/00000000-0000-4000-8000-000000000000"),
    ("GET", "/subscriptions"),
    ("POST", "/subscriptions"),
    ("GET", "/subscriptions/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/subscriptions/00000000-0000-4000-8000-000000000000"),
    ("POST", "/subscriptions/subscribe"),
    ("POST", "/subscriptions/unsubscribe"),
    ("POST", "/subscriptions/bulk_global_subscribe"),
    ("POST", "/subscriptions/bulk_global_unsubscribe"),
    ("POST", "/subscriptions/dynamic_bulk_subscribe"),
    ("POST", "/subscriptions/dynamic_bulk_unsubscribe"),
    ("GET", "/dynamic_lists"),
    ("POST", "/dynamic_lists"),
    ("GET", "/dynamic_lists/00000000-0000-4000-8000-000000000000"),
    ("PUT", "/dynamic_lists/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/dynamic_lists/00000000-0000-4000-8000-000000000000"),
    ("GET", "/jobs/00000000-0000-4000-8000-000000000000"),
]


def call(client: TestClient, url: str, header: dict[str, str] | None = None) -> list[str]:
    """The emails `GET url` lists with these headers (asserting it answered 200)."""
    response = client.get(url, headers=header or {})
    return [s["attributes"]["email"] for s in ok(response)]


@pytest.fixture
def acme(api: Api) -> Api:
    add_subscriber(api, "ann@acme.example")
    return api


def test_token_header(client: TestClient, acme: Api) -> None:
    url = "/v1/orca/acme/subscribers"
    assert call(client, url, {"authorization": f"Token token={acme.key}"}) == ["ann@acme.example"]
    assert call(client, url, {"authorization": f'Token token="{acme.key}"'}) == ["ann@acme.example"]


def test_bearer_header(client: TestClient, acme: Api) -> None:
    url = "/v1/orca/acme/subscribers"
    assert call(client, url, {"authorization": f"Bearer {acme.key}"}) == ["ann@acme.example"]


@pytest.mark.parametrize("name", ["Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
def test_header_name_is_case_insensitive(client: TestClient, acme: Api, name: str) -> None:
    url = "/v1/orca/acme/subscribers"
    assert call(client, url, {name: f"Token token={acme.key}"}) == ["ann@acme.example"]


@pytest.mark.parametrize("scheme", ["token token={key}", "TOKEN Token={key}", "bearer {key}"])
def test_scheme_is_case_insensitive(client: TestClient, acme: Api, scheme: str) -> None:
    header = {"authorization": scheme.format(key=acme.key)}
    assert call(client, "/v1/orca/acme/subscribers", header) == ["ann@acme.example"]


def test_marketing_path_acts_for_the_keys_account(
    client: TestClient, acme: Api, other_api: Api
) -> None:
    add_subscriber(other_api, "gus@globex.example")
    url = "/v1/marketing/subscribers"
    assert call(client, url, {"authorization": f"Token token={acme.key}"}) == ["ann@acme.example"]
    assert call(client, url, {"authorization": f"Bearer {other_api.key}"}) == ["gus@globex.example"]


@pytest.mark.parametrize("base", ["/v1/orca/acme", "/v1/marketing"])
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Token",
        "Token token=",
        "Token {key}",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "{key}",
        "Token token={key} extra",
        "Token token=ds_unknown_0123456789",
        "Bearer ds_unknown_0123456789",
    ],
)
def test_missing_malformed_or_unknown_keys_are_401(
    client: TestClient, acme: Api, base: str, header: str | None
) -> None:
    headers = {} if header is None else {"authorization": header.format(key=acme.key)}
    response = client.get(f"{base}/subscribers", headers=headers)
    body = assert_error(response, 401, code="unauthorized")
    assert "ann@acme.example" not in response.text
    assert body["details"] == {}


def test_revoked_key_is_401_and_rotation_keeps_access(
    client: TestClient, acme: Api, database: db.Database
) -> None:
    with database.transaction() as session:
        account = accounts.get_account(session, "acme")
        new_key = accounts.create_key(session, account)
    url = "/v1/orca/acme/subscribers"
    old = {"authorization": f"Token token={acme.key}"}
    new = {"authorization": f"Token token={new_key.secret}"}
    assert call(client, url, old) == call(client, url, new) == ["ann@acme.example"]
    with database.transaction() as session:
        account = accounts.get_account(session, "acme")
        old_prefix = "_".join(acme.key.split("_")[:2])
        accounts.revoke_key(session, account, old_prefix)
    assert_error(client.get(url, headers=old), 401, code="unauthorized")
    assert_error(client.get("/v1/marketing/subscribers", headers=old), 401)
    assert call(client, url, new) == ["ann@acme.example"]


@pytest.mark.parametrize("username", ["acme", "nobody"])
def test_a_key_under_another_accounts_path_is_401(
    client: TestClient, acme: Api, other_api: Api, username: str
) -> None:
    add_subscriber(other_api, "gus@globex.example")
    response = client.get(
        f"/v1/orca/{username}/subscribers",
        headers={"authorization": f"Token token={other_api.key}"},
    )
    assert_error(response, 401, code="unauthorized")
    assert "example" not in response.text


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_key(
    client: TestClient, acme: Api, other_api: Api, method: str, path: str
) -> None:
    for base, headers in [
        ("/v1/orca/acme", {}),
        ("/v1/marketing", {}),
        ("/v1/orca/acme", {"authorization": "Token token=ds_unknown_0123456789"}),
        ("/v1/orca/acme", {"authorization": f"Token token={other_api.key}"}),
    ]:
        response = client.request(method, base + path, headers=headers, json={})
        assert_error(response, 401, code="unauthorized")
    assert ok(acme.get("/subscribers"))[0]["attributes"]["email"] == "ann@acme.example"


def test_every_response_carries_a_request_id(client: TestClient, acme: Api) -> None:
    responses = [
        acme.get("/subscribers"),
        acme.get("/subscribers/00000000-0000-4000-8000-000000000000"),
        acme.post("/subscribers", {"subscriber": {}}),
        acme.get("/subscribers", params={"items": 0}),
        client.get("/v1/orca/acme/subscribers"),
        client.get("/v1/nowhere"),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


def test_a_given_request_id_is_echoed(acme: Api) -> None:
    given = uuid.uuid4().hex
    response = acme.get("/subscribers", headers={"X-Request-Id": given})
    assert response.headers["x-request-id"] == given
