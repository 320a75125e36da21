"""Two writers at once (PostgreSQL: SQLite takes the write lock at BEGIN, so writers queue).

Each test holds an uncommitted row in a transaction of its own, sends a request that must
write the same unique value, waits until PostgreSQL shows the request blocked on that row,
then commits: the request must answer as if it had seen the row, never with a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from dripstone import db
from dripstone.accounts.models import Account
from dripstone.subscribers.models import CustomFieldType, DynamicList, Subscriber, SubscriptionList
from tests.conftest import Api, backends_waiting_for_locks
from tests.subscribers.helpers import add_subscriber, assert_error, detail, ok

WAIT_SECONDS = 20


@contextmanager
def racing(
    database: db.Database, request: Callable[[], httpx.Response]
) -> Iterator[tuple[Session, list[httpx.Response]]]:
    """Yield an open session to write the clashing row in; on exit, start `request`, wait
    until it blocks on that row, commit, and leave the response in the list."""
    answers: list[httpx.Response] = []
    with database.sessions() as session:
        yield session, answers
        session.flush()
        worker = threading.Thread(target=lambda: answers.append(request()))
        worker.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while backends_waiting_for_locks(database) == 0:
            assert worker.is_alive(), "the request finished without waiting for the row"
            assert time.monotonic() < deadline, "the request never blocked on the row"
        session.commit()
        worker.join(WAIT_SECONDS)
    assert len(answers) == 1


def account_id(session: Session, username: str) -> int:
    found = session.scalar(select(Account.id).where(Account.username == username))
    assert found is not None
    return found


def test_same_email_at_once(api: Api, postgres: db.Database) -> None:
    with racing(
        postgres, lambda: api.post("/subscribers", {"subscriber": {"email": "ann@example.com"}})
    ) as (session, answers):
        session.add(Subscriber(account_id=account_id(session, "acme"), email="ann@example.com"))
    assert_error(answers[0], 422, code="conflict", field="subscriber.email")


def test_same_email_by_update_at_once(api: Api, postgres: db.Database) -> None:
    bob = add_subscriber(api, "bob@example.com")
    with racing(
        postgres,
        lambda: api.patch(
            f"/subscribers/{bob['id']}", {"subscriber": {"email": "ann@example.com"}}
        ),
    ) as (session, answers):
        session.add(Subscriber(account_id=account_id(session, "acme"), email="ann@example.com"))
    assert_error(answers[0], 422, code="conflict", field="subscriber.email")
    assert detail(api, bob["id"])["attributes"]["email"] == "bob@example.com"


def test_new_custom_field_named_by_two_at_once(api: Api, postgres: db.Database) -> None:
    body: dict[str, Any] = {
        "subscriber": {"email": "ann@example.com", "custom_fields": [{"plan": "gold"}]}
    }
    with racing(postgres, lambda: api.post("/subscribers", body)) as (session, answers):
        session.add(CustomFieldType(account_id=account_id(session, "acme"), name="plan"))
    created = ok(answers[0])
    types = ok(api.get("/subscriber_custom_field_types"))
    assert [t["attributes"]["name"] for t in types] == ["plan"]
    fields = detail(api, created["id"])["attributes"]["custom_fields"]
    assert [(f["subscriber_custom_field_type_id"], f["custom_field_value"]) for f in fields] == [
        (types[0]["id"], "gold")
    ]


def test_same_custom_field_type_at_once(api: Api, postgres: db.Database) -> None:
    with racing(
        postgres,
        lambda: api.post(
            "/subscriber_custom_field_types", {"subscriber_custom_field_type": {"name": "plan"}}
        ),
    ) as (session, answers):
        session.add(CustomFieldType(account_id=account_id(session, "acme"), name="plan"))
    assert_error(answers[0], 422, code="conflict", field="subscriber_custom_field_type.name")


def test_same_list_name_at_once(api: Api, postgres: db.Database) -> None:
    with racing(postgres, lambda: api.post("/subscription_lists", {"name": "Newsletter"})) as (
        session,
        answers,
    ):
        session.add(SubscriptionList(account_id=account_id(session, "acme"), name="Newsletter"))
    assert_error(answers[0], 422, code="conflict", field="name")


def test_same_dynamic_list_name_at_once(api: Api, postgres: db.Database) -> None:
    with racing(
        postgres, lambda: api.post("/dynamic_lists", {"dynamic_list": {"name": "Segment"}})
    ) as (session, answers):
        session.add(DynamicList(account_id=account_id(session, "acme"), name="Segment"))
    assert_error(answers[0], 422, code="conflict", field="dynamic_list.name")
