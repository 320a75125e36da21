"""Every list's kept counts (members, and who a send reaches) stay equal to a count of the
rows, whatever sequence of writes the services make: one by one, in bulk, as select-all
jobs, by import, by suppressing bounced addresses, deleting subscribers and lists."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.db import AccountScope
from dripstone.delivery import audience
from dripstone.errors import DripstoneError
from dripstone.subscribers import (
    bulk,
    counts,
    importing,
    lists,
    membership,
    schemas,
    service,
    subscriptions,
)
from dripstone.subscribers.models import Subscriber, Subscription, SubscriptionList
from dripstone.subscribers.selection import Selection, membership_condition, selection_condition
from tests.conftest import Api
from tests.subscribers.test_races import account_id, racing

EMAILS = [f"p{n}@example.com" for n in range(8)]
LISTS = 3  # named lists, besides All contacts
_accounts = itertools.count()

person = st.integers(0, len(EMAILS) - 1)
people = st.lists(person, min_size=1, max_size=4)
a_list = st.integers(0, LISTS - 1)
maybe_list = st.none() | a_list
operation = st.one_of(
    st.tuples(st.just("create"), person, maybe_list),
    st.tuples(st.just("bulk_create"), people, maybe_list),
    st.tuples(st.just("email"), person, st.none() | person),
    st.tuples(st.just("opt"), people, st.sampled_from(["subscribe", "unsubscribe"]), maybe_list),
    st.tuples(st.just("subscribe_one"), person, a_list),
    st.tuples(st.just("cancel"), person, a_list),
    st.tuples(st.just("remove"), people, maybe_list),
    st.tuples(st.just("bulk_add"), people, a_list),
    st.tuples(st.just("drip_add"), person, a_list),
    st.tuples(st.just("delete"), people),
    st.tuples(st.just("suppress"), people),
    st.tuples(
        st.just("select_all"),
        st.sampled_from(["subscribe", "unsubscribe", "add", "delete"]),
        maybe_list,
        st.sampled_from(["*", "p1", "example"]),
        a_list,
    ),
    st.tuples(st.just("import"), people, a_list),
    st.tuples(st.just("delete_list"), a_list),
)


class Account:
    """One fresh account per example, written to through the services a transaction each."""

    def __init__(self, database: db.Database, folder: Path) -> None:
        self.database = database
        self.folder = folder
        with database.transaction() as session:
            account, _ = accounts.create_account(session, f"counted{next(_accounts)}")
            self.id = account.id
            scope = AccountScope(session, account.id)
            self.lists = [lists.create_list(scope, f"List {n}").uuid for n in range(LISTS)]

    def write(self, change: Callable[[AccountScope], Any]) -> None:
        """As a request does: all of it, or (refused) nothing."""
        try:
            with self.database.transaction() as session:
                change(AccountScope(session, self.id))
        except DripstoneError:
            pass

    def ids(self, scope: AccountScope, who: list[int]) -> list[Subscriber]:
        emails = [EMAILS[n] for n in who]
        return list(
            scope.session.scalars(scope.select(Subscriber).where(Subscriber.email.in_(emails)))
        )

    def uuids(self, scope: AccountScope, who: list[int]) -> list[str]:
        return [s.uuid for s in self.ids(scope, who)]


def apply(account: Account, op: tuple[Any, ...]) -> None:
    kind, *args = op
    named = account.lists

    def list_of(k: int | None) -> str | None:
        return None if k is None else named[k]

    def create(scope: AccountScope) -> None:
        n, k = args
        fields = schemas.SubscriberCreateFields(email=EMAILS[n], phone_number="+14155552671")
        service.create_subscriber(scope, fields, list_of(k))

    def bulk_create(scope: AccountScope) -> None:
        who, k = args
        rows = [schemas.BulkSubscriberRow(email=EMAILS[n]) for n in who]
        service.bulk_create(scope, rows, list_of(k))

    def email(scope: AccountScope) -> None:
        n, to = args
        for found in account.ids(scope, [n]):
            new = schemas.SubscriberUpdateFields(email=None if to is None else EMAILS[to])
            service.update_subscriber(scope, found.uuid, new)

    def opt(scope: AccountScope) -> None:
        who, action, k = args
        chosen = None if k is None else [named[k]]
        subscriptions.change_subscriptions(scope, action, account.uuids(scope, who), chosen)

    def subscribe_one(scope: AccountScope) -> None:
        n, k = args
        for found in account.ids(scope, [n]):
            subscriptions.create_subscription(scope, named[k], found.id)

    def cancel(scope: AccountScope) -> None:
        n, k = args
        lst = lists.get_list(scope, named[k])
        for found in account.ids(scope, [n]):
            uuid = scope.session.scalar(
                scope.select(Subscription, Subscription.uuid).where(
                    Subscription.subscriber_id == found.id,
                    Subscription.subscription_list_id == lst.id,
                )
            )
            if uuid is not None:
                subscriptions.cancel_subscription(scope, uuid)

    def remove(scope: AccountScope) -> None:
        who, k = args
        service.bulk_delete(scope, account.uuids(scope, who), list_of(k))

    def bulk_add(scope: AccountScope) -> None:
        who, k = args
        bulk.add_to_list(scope, account.uuids(scope, who), named[k])

    def drip_add(scope: AccountScope) -> None:
        n, k = args
        found = [s.id for s in account.ids(scope, [n])]
        membership.add_to_list(scope, lists.get_list(scope, named[k]), found)

    def delete(scope: AccountScope) -> None:
        bulk.delete(scope, account.uuids(scope, args[0]))

    def suppress(scope: AccountScope) -> None:
        addresses = [audience.Suppressed(scope.account_id, EMAILS[n], "550 gone") for n in args[0]]
        audience.suppress(scope.session.connection(), addresses)

    def select_all(scope: AccountScope) -> None:
        action, k, search, target = args
        base = named[k] if k is not None else lists.default_list(scope).uuid
        request = subscriptions.BulkSelectionRequest(base, search, [], [])
        if action == "add":
            bulk.start_add_to_list(scope, request, named[target], dynamic=False)
        elif action == "delete":
            bulk.start_delete(scope, request, dynamic=False)
        else:
            subscriptions.start_bulk_change(scope, action, request, dynamic=False)

    def import_csv(scope: AccountScope) -> None:
        who, k = args
        path = account.folder / f"import-{next(_accounts)}.csv"
        path.write_text("email,first_name\n" + "".join(f"{EMAILS[n]},X\n" for n in who))
        options = importing.ImportOptions(list_id=named[k])
        importing.start_import(scope, path, options, owned=False)

    def delete_list(scope: AccountScope) -> None:
        lists.delete_list(scope, named[args[0]])

    writes: dict[str, Callable[[AccountScope], None]] = {
        "create": create,
        "bulk_create": bulk_create,
        "email": email,
        "opt": opt,
        "subscribe_one": subscribe_one,
        "cancel": cancel,
        "remove": remove,
        "bulk_add": bulk_add,
        "drip_add": drip_add,
        "delete": delete,
        "suppress": suppress,
        "select_all": select_all,
        "import": import_csv,
        "delete_list": delete_list,
    }
    account.write(writes[kind])


def counted_afresh(scope: AccountScope, lst: SubscriptionList) -> tuple[int, int]:
    """Members as the list pages select them, and recipients as a send's job selects them."""
    everyone = None if lst.is_default else lst.id
    members = scope.session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.account_id == scope.account_id, membership_condition(everyone))
    )
    reached = scope.session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(
            selection_condition(scope, Selection(list_id=everyone)),
            audience.reachable_subscriber(),
        )
    )
    return members or 0, reached or 0


def assert_counts_right(database: db.Database, account_id: int) -> None:
    with database.read_sessions() as session:
        scope = AccountScope(session, account_id)
        every = lists.all_lists(scope)
        kept = counts.kept(session, every)
        for lst in every:
            assert (kept[lst.id].members, kept[lst.id].reachable) == counted_afresh(scope, lst), (
                lst.name
            )


@pytest.fixture
def inline_jobs(client: TestClient, database: db.Database) -> db.Database:
    """The database, with select-all and import jobs run as soon as their request commits."""
    return database


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_kept_counts_equal_a_fresh_count_after_any_writes(
    inline_jobs: db.Database, tmp_path: Path, ops: list[tuple[Any, ...]]
) -> None:
    account = Account(inline_jobs, tmp_path)
    for op in ops:
        apply(account, op)
    assert_counts_right(inline_jobs, account.id)


def test_the_list_page_the_api_and_the_send_confirmation_agree(
    api: Api, database: db.Database
) -> None:
    members = api.post("/subscription_lists", {"name": "Members"}).json()["data"]["id"]
    rows = [{"email": e} for e in EMAILS[:5]]
    api.post("/subscribers_bulk_create", {"subscribers": rows, "subscription_list_id": members})
    listed = {s["attributes"]["email"]: s["id"] for s in api.get("/subscribers").json()["data"]}
    api.post("/subscriptions/unsubscribe", {"subscriber_ids": [listed[EMAILS[0]]]})  # all mail
    api.post(
        "/subscriptions/unsubscribe",
        {"subscriber_ids": [listed[EMAILS[1]]], "subscription_list_ids": [members]},
    )
    with database.transaction() as session:
        account_id = accounts.get_account(session, "acme").id
        audience.suppress(
            session.connection(), [audience.Suppressed(account_id, EMAILS[2], "550 gone")]
        )
    found = api.get("/subscription_lists").json()["data"]
    by_name = {f["attributes"]["name"]: f["attributes"]["subscriber_count"] for f in found}
    # Opting out of all mail and bouncing keep a member on the list; unsubscribing does not.
    assert by_name == {"All contacts": 5, "Members": 4}
    with database.read_sessions() as session:
        scope = AccountScope(session, account_id)
        lst = lists.get_list(scope, members)
        assert counts.reachable(session, lst) == 2  # p3 and p4
        assert counts.reachable(session, lists.default_list(scope)) == 3  # p1, p3, p4
    assert_counts_right(database, account_id)


def test_recount_puts_right_counts_that_rows_written_behind_the_services_made_wrong(
    api: Api, database: db.Database
) -> None:
    members = api.post("/subscription_lists", {"name": "Members"}).json()["data"]["id"]
    rows = [{"email": e} for e in EMAILS[:3]]
    api.post("/subscribers_bulk_create", {"subscribers": rows, "subscription_list_id": members})
    with database.transaction() as session:
        scope = AccountScope(session, accounts.get_account(session, "acme").id)
        session.add(Subscriber(account_id=scope.account_id, email="raw@example.com"))
        lst = lists.get_list(scope, members)
        session.execute(
            Subscription.__table__.delete().where(Subscription.subscription_list_id == lst.id)
        )
    with database.transaction() as session:
        scope = AccountScope(session, scope.account_id)
        default, lst = lists.default_list(scope), lists.get_list(scope, members)
        assert (lists.list_count(scope, default), lists.list_count(scope, lst)) == (3, 3)
        fixed = [counts.recount(session, default), counts.recount(session, lst)]
        assert [(f.kept, f.counted, f.was_wrong) for f in fixed] == [
            ((3, 3), (4, 4), True),
            ((3, 3), (0, 0), True),
        ]
    found = api.get("/subscription_lists").json()["data"]
    by_name = {f["attributes"]["name"]: f["attributes"]["subscriber_count"] for f in found}
    assert by_name == {"All contacts": 4, "Members": 0}
    with database.transaction() as session:
        again = counts.recount(
            session, lists.get_list(AccountScope(session, scope.account_id), members)
        )
        assert not again.was_wrong


def _members(database: db.Database, account_id: int, list_id: str) -> int:
    with database.read_sessions() as session:
        return counts.members(session, lists.get_list(AccountScope(session, account_id), list_id))


def test_two_writers_adding_to_one_list_at_once_are_both_counted(
    api: Api, postgres: db.Database
) -> None:
    members = api.post("/subscription_lists", {"name": "Members"}).json()["data"]["id"]
    api.post("/subscribers_bulk_create", {"subscribers": [{"email": e} for e in EMAILS[:2]]})
    ids = {s["attributes"]["email"]: s["id"] for s in api.get("/subscribers").json()["data"]}
    body = {"subscriber_ids": [ids[EMAILS[1]]], "subscription_list_ids": [members]}
    with racing(postgres, lambda: api.post("/subscriptions/subscribe", body)) as (session, _):
        scope = AccountScope(session, account_id(session, "acme"))
        first = scope.by_uuid(Subscriber, ids[EMAILS[0]])
        assert first is not None
        membership.join(scope, lists.get_list(scope, members), [first.id])
        counts.write_pending(session)  # holds the list's count row until it commits
    assert _members(postgres, scope.account_id, members) == 2


def test_two_writers_unsubscribing_one_member_at_once_count_it_once(
    api: Api, postgres: db.Database
) -> None:
    members = api.post("/subscription_lists", {"name": "Members"}).json()["data"]["id"]
    rows = [{"email": e} for e in EMAILS[:3]]
    api.post("/subscribers_bulk_create", {"subscribers": rows, "subscription_list_id": members})
    ids = {s["attributes"]["email"]: s["id"] for s in api.get("/subscribers").json()["data"]}
    body = {"subscriber_ids": [ids[EMAILS[0]]], "subscription_list_ids": [members]}
    with racing(postgres, lambda: api.post("/subscriptions/unsubscribe", body)) as (session, _):
        scope = AccountScope(session, account_id(session, "acme"))
        subscriptions.change_subscriptions(scope, "unsubscribe", [ids[EMAILS[0]]], [members])
    assert _members(postgres, scope.account_id, members) == 2
    assert_counts_right(postgres, scope.account_id)


def test_an_opt_out_while_a_subscriber_joins_a_list_counts_after_the_join(
    api: Api, postgres: db.Database
) -> None:
    members = api.post("/subscription_lists", {"name": "Members"}).json()["data"]["id"]
    api.post("/subscribers_bulk_create", {"subscribers": [{"email": e} for e in EMAILS[:2]]})
    ids = {s["attributes"]["email"]: s["id"] for s in api.get("/subscribers").json()["data"]}
    body = {"subscriber_ids": [ids[EMAILS[0]]]}  # no list: the global opt-out
    with racing(postgres, lambda: api.post("/subscriptions/unsubscribe", body)) as (session, _):
        scope = AccountScope(session, account_id(session, "acme"))
        joining = scope.by_uuid(Subscriber, ids[EMAILS[0]])
        assert joining is not None
        membership.join(scope, lists.get_list(scope, members), [joining.id])
    assert _members(postgres, scope.account_id, members) == 1
    assert_counts_right(postgres, scope.account_id)
