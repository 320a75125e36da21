"""The audit log: every change made through the API, who made it and on what, ids only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.audit import service
from tests.conftest import Api

EMAIL = "Ann.Auditée@Example.com"


def _events(api: Api, **params: Any) -> list[dict[str, Any]]:
    answer = api.get("/audit_events", params=params)
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    assert all(event["type"] == "audit_event" for event in data)
    return [event["attributes"] | {"id": event["id"]} for event in data]


def _key_prefix(api: Api) -> str:
    return api.key[: len("ds_") + 8]


def _create_subscriber(api: Api, email: str = EMAIL) -> str:
    created = api.post(
        "/subscribers", {"subscriber": {"email": email, "first_name": "Ann", "last_name": "Lee"}}
    )
    assert created.status_code == 200, created.text
    subscriber_id: str = created.json()["data"]["id"]
    return subscriber_id


def _everything_in_the_audit_table(database: db.Database) -> str:
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_events")).all()
    return repr([tuple(row) for row in rows])


def test_a_create_an_update_and_a_delete_are_each_recorded_with_the_key_and_the_id(
    api: Api, database: db.Database
) -> None:
    subscriber_id = _create_subscriber(api)
    updated = api.put(f"/subscribers/{subscriber_id}", {"subscriber": {"first_name": "Annie"}})
    assert updated.status_code == 200, updated.text
    deleted = api.delete("/subscribers_bulk_delete", params={"subscriber_ids": subscriber_id})
    assert deleted.status_code == 200, deleted.text

    events = _events(api)
    assert [e["action"] for e in events] == [
        "DELETE /subscribers_bulk_delete",
        "PUT /subscribers/{id}",
        "POST /subscribers",
    ]
    delete, update, create = events
    assert create["object_ids"] == {"id": subscriber_id}
    assert update["object_ids"] == {"id": subscriber_id}
    assert delete["object_ids"] == {"subscriber_ids": [subscriber_id]}
    for event in events:
        assert event["actor_type"] == "api_key"
        assert event["actor"] == _key_prefix(api)
        assert event["status"] == 200
        assert event["request_id"]
    assert create["occurred_at"] <= update["occurred_at"] <= delete["occurred_at"]


def test_a_bulk_job_is_recorded_with_the_job_id_it_returned(api: Api) -> None:
    _create_subscriber(api)
    lists = api.get("/subscription_lists").json()["data"]
    all_contacts = next(lst["id"] for lst in lists if lst["attributes"]["name"] == "All contacts")
    started = api.post(
        "/subscriptions/bulk_global_unsubscribe", {"from_subscription_list_id": all_contacts}
    )
    assert started.status_code == 200, started.text
    jid = started.json()["data"]["jid"]

    latest = _events(api)[0]
    assert latest["action"] == "POST /subscriptions/bulk_global_unsubscribe"
    assert latest["object_ids"] == {"jid": jid}
    assert api.get(f"/jobs/{jid}").json()["data"]["attributes"]["state"] == "succeeded"


def test_reads_and_refused_requests_leave_no_event(api: Api, database: db.Database) -> None:
    subscriber_id = _create_subscriber(api)
    assert len(_events(api)) == 1

    api.get("/subscribers")
    api.get(f"/subscribers/{subscriber_id}")
    assert api.post("/subscribers", {"subscriber": {"email": "not an address"}}).status_code == 422
    assert api.put("/subscribers/00000000-0000-4000-8000-000000000000", {}).status_code in (
        404,
        422,
    )
    assert api.delete("/subscription_lists/00000000-0000-4000-8000-000000000000").status_code == 404
    unauthenticated = api.client.post(
        f"{api.base}/subscribers", json={"subscriber": {"email": "bob@example.com"}}
    )
    assert unauthenticated.status_code == 401
    # Paubox's 200 answer to a refused change: {"errors": ...}
    refused = api.post("/subscriptions/subscribe", {"subscriber_ids": ["not-an-id"]})
    assert refused.status_code == 200
    assert "errors" in refused.json()

    assert [e["action"] for e in _events(api)] == ["POST /subscribers"]


def test_no_contact_data_reaches_the_audit_table(api: Api, database: db.Database) -> None:
    subscriber_id = _create_subscriber(api)
    api.put(f"/subscribers/{subscriber_id}", {"subscriber": {"last_name": "Leeward"}})
    api.post(
        "/subscriptions/bulk_global_unsubscribe",
        {"subscriber_ids": [subscriber_id]},
    )
    api.post(
        "/subscribers_bulk_create",
        {"subscribers": [{"email": "second.person@example.com", "first_name": "Zed"}]},
    )
    api.delete("/subscribers_bulk_delete", params={"subscriber_ids": subscriber_id})
    assert len(_events(api)) == 5

    stored = _everything_in_the_audit_table(database).lower()
    for contact in (EMAIL.lower(), "ann.audit", "second.person", "leeward", "zed"):
        assert contact not in stored


def test_an_idempotent_replay_is_not_recorded_again(api: Api) -> None:
    headers = {"Idempotency-Key": "create-ann-once"}
    body = {"subscriber": {"email": EMAIL}}
    first = api.post("/subscribers", body, headers=headers)
    again = api.post("/subscribers", body, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.json() == again.json()
    assert [e["action"] for e in _events(api)] == ["POST /subscribers"]


def test_an_account_reads_its_own_events_only(api: Api, other_api: Api) -> None:
    _create_subscriber(api)
    _create_subscriber(other_api, "bob@example.com")
    _create_subscriber(other_api, "carol@example.com")

    mine, theirs = _events(api), _events(other_api)
    assert len(mine) == 1
    assert len(theirs) == 2
    assert {e["actor"] for e in mine} == {_key_prefix(api)}
    assert {e["actor"] for e in theirs} == {_key_prefix(other_api)}
    assert not {e["id"] for e in mine} & {e["id"] for e in theirs}


def test_events_come_newest_first_a_page_at_a_time(api: Api) -> None:
    ids = [_create_subscriber(api, f"person{n}@example.com") for n in range(5)]
    newest_first = [e["object_ids"]["id"] for e in _events(api)]
    assert newest_first == ids[::-1]

    pages = [_events(api, items=2, page=page) for page in (1, 2, 3, 4)]
    assert [[e["object_ids"]["id"] for e in page] for page in pages] == [
        ids[4:2:-1],
        ids[2:0:-1],
        ids[:1],
        [],
    ]
    too_many = api.get("/audit_events", params={"items": 101})
    assert too_many.status_code == 400
    assert too_many.json()["details"]["field"] == "items"


def test_whatever_a_change_names_only_public_ids_are_stored(
    api: Api, database: db.Database
) -> None:
    with database.read_sessions() as session:
        account_id = accounts.get_account(session, api.username).id
    some_id = "6F1C3B2A-1D2E-4F3A-8B4C-5D6E7F8A9B0C"
    service.record(
        database,
        service.Change(
            actor=service.Actor(account_id, "api_key", 1, "ds_test"),
            action="PUT /somewhere/{id}",
            status=200,
            object_ids={"id": some_id, "email": EMAIL, "ids": [EMAIL, some_id], "note": "Ann"},
        ),
    )
    assert _events(api)[0]["object_ids"] == {"id": some_id.lower(), "ids": [some_id.lower()]}
    assert EMAIL.lower() not in _everything_in_the_audit_table(database).lower()
