"""The database helpers every bulk write leans on: public ids made in bulk, and id lists."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select, text

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.db import AccountScope, among, new_uuid, new_uuids, owned_by
from dripstone.subscribers.models import Subscriber
from dripstone.subscribers.schemas import SubscriberCreateFields
from dripstone.subscribers.service import create_subscriber


def test_bulk_ids_are_version_7_uuids_stamped_with_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_uuids(2000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    stamps = {u.int >> 80 for u in parsed}
    assert all(before <= stamp <= after for stamp in stamps)
    # Made in one millisecond, they differ in their 74 random bits.
    assert len(set(ids)) == len(ids)
    assert uuid.UUID(new_uuid()).version == 7


def test_among_selects_the_rows_whose_ids_are_listed(database: db.Database) -> None:
    with database.transaction() as session:
        account, _key = accounts.create_account(session, "acme")
        scope = AccountScope(session, account.id)
        made = [
            create_subscriber(scope, SubscriberCreateFields(email=f"p{n}@example.com"), None).id
            for n in range(30)
        ]
        dialect = session.get_bind().dialect
        wanted = [*made[::3], 10**12]
        found = session.scalars(
            select(Subscriber.id).where(among(dialect, Subscriber.id, wanted))
        ).all()
        assert sorted(found) == sorted(made[::3])
        assert (
            session.scalars(select(Subscriber.id).where(among(dialect, Subscriber.id, []))).all()
            == []
        )


def test_rows_named_by_id_are_found_by_id_not_by_reading_the_whole_account(
    database: db.Database,
) -> None:
    if not database.is_sqlite:
        pytest.skip("PostgreSQL plans from its statistics")
    with database.transaction() as session:
        account, _key = accounts.create_account(session, "acme")
        dialect = session.get_bind().dialect
        for ids in (
            Subscriber.id.in_([1, 2, 3]),
            among(dialect, Subscriber.id, [1, 2, 3]),
            Subscriber.id > 10,
        ):
            stmt = select(Subscriber.id).where(owned_by(dialect, Subscriber, account.id), ids)
            sql = stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
            plan = session.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
            assert "USING INTEGER PRIMARY KEY" in plan[0][3], plan
