"""`Idempotency-Key` on POST: the same key and request within 24 hours replay the first
answer and do nothing again."""

from __future__ import annotations

from datetime import timedelta

import httpx2
from sqlalchemy import select

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.idempotency import service as idempotency
from tests.conftest import Api
from tests.mailings.helpers import ok
from tests.subscribers.helpers import assert_error


def create_list(api: Api, name: str, key: str | bytes | None = "list-1") -> httpx2.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post("/subscription_lists", {"subscription_list": {"name": name}}, headers=headers)


def list_names(api: Api) -> list[str]:
    return sorted(row["attributes"]["name"] for row in ok(api.get("/subscription_lists"))["data"])


def test_a_repeated_post_replays_the_first_answer_and_does_nothing_again(api: Api) -> None:
    first = create_list(api, "News")
    again = create_list(api, "News")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert list_names(api) == ["All contacts", "News"]


def test_a_refusal_is_replayed_too(api: Api) -> None:
    first = create_list(api, "default")
    assert_error(first, 422)
    again = create_list(api, "default")
    assert (again.status_code, again.json()) == (first.status_code, first.json())


def test_the_same_key_for_another_request_is_refused_and_changes_nothing(api: Api) -> None:
    create_list(api, "News")
    response = create_list(api, "Offers")
    assert_error(response, 422, field="Idempotency-Key")
    assert "different request" in response.json()["error"]
    assert list_names(api) == ["All contacts", "News"]


def test_keys_belong_to_their_account(api: Api, other_api: Api) -> None:
    create_list(api, "News")
    theirs = create_list(other_api, "News")
    assert "Idempotent-Replayed" not in theirs.headers
    assert list_names(other_api) == ["All contacts", "News"]


def test_without_a_key_every_post_runs(api: Api) -> None:
    ok(create_list(api, "News", key=None))
    assert_error(create_list(api, "News", key=None), 422)


def test_after_24_hours_the_key_runs_the_request_again(
    api: Api, manual_clock: clock.ManualClock
) -> None:
    ok(create_list(api, "News"))
    manual_clock.advance(timedelta(hours=24, minutes=1))
    assert_error(create_list(api, "News"), 422)  # ran again: the name is taken now


def test_an_unauthenticated_answer_is_not_kept(api: Api) -> None:
    refused = api.post(
        "/subscription_lists",
        {"subscription_list": {"name": "News"}},
        headers={"Idempotency-Key": "list-1", "authorization": "Token token=ds_wrong_key"},
    )
    assert_error(refused, 401)
    ok(create_list(api, "News"))
    assert list_names(api) == ["All contacts", "News"]


def test_a_key_that_is_not_visible_ascii_is_a_400(api: Api) -> None:
    for key in ("x" * 256, "naïve".encode(), "two words"):
        assert_error(create_list(api, "News", key=key), 400, field="Idempotency-Key")
    assert list_names(api) == ["All contacts"]


def test_a_key_in_use_waits_and_is_freed_when_its_request_died(
    api: Api, database: db.Database, manual_clock: clock.ManualClock
) -> None:
    with database.read_sessions() as session:
        account_id = session.scalars(select(Account.id)).one()
    claim = idempotency.claim(database, account_id, "k", "fingerprint")
    assert claim == (idempotency.Claim.FIRST, None)
    assert idempotency.claim(database, account_id, "k", "fingerprint")[0] is (
        idempotency.Claim.IN_PROGRESS
    )
    manual_clock.advance(idempotency.ABANDONED_AFTER + timedelta(seconds=1))
    assert idempotency.claim(database, account_id, "k", "fingerprint")[0] is idempotency.Claim.FIRST
    idempotency.forget(database, account_id, "k")
    assert idempotency.claim(database, account_id, "k", "other")[0] is idempotency.Claim.FIRST

    manual_clock.advance(timedelta(hours=25))
    assert idempotency.purge_expired(database) == 1
