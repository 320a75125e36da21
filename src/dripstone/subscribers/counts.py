"""Every list's counts, kept as subscriptions change, so that reading one is a single-row
read: its members (for the default list, every subscriber) and how many of them a send to
the list reaches (the rule of `delivery.audience.reachable_subscriber`, registered here).

A write that can change who is on a list, or which of them a send reaches, runs inside
`changing` with the subscribers it touches: their share of every count is taken before and
after the write, and the difference is added with `n = n + delta`, once per batch. Two writes
know their difference without the before: new subscribers (`added`) and new subscription rows
(`joined`). On
PostgreSQL their rows are locked first, so two writers changing one subscriber never both
count the change. A session's differences are written when it commits: the count rows are
locked last and in list order, so writers queue on them instead of deadlocking. `recount`
puts a list's counts right from its rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from dripstone.db import among, owned_by
from dripstone.subscribers.models import ListCount, Subscriber, Subscription, SubscriptionList
from dripstone.subscribers.rows import chunks

PENDING = "dripstone_list_count_changes"

Rule = Callable[[], Any]
_reachable: Rule | None = None


def count_reachable_with(rule: Rule) -> Rule:
    """Register the SQL over Subscriber of who a send reaches (done once, by delivery)."""
    global _reachable
    _reachable = rule
    return rule


def _reached() -> Any:
    if _reachable is None:
        raise RuntimeError("no rule of who a send reaches registered: import dripstone.tasks first")
    return func.coalesce(func.sum(case((_reachable(), 1), else_=0)), 0)


@dataclass
class Changes:
    """Differences to the counts, per list id."""

    members: Counter[int]
    reachable: Counter[int]

    @classmethod
    def none(cls) -> Changes:
        return cls(Counter(), Counter())

    def add(self, other: Changes, sign: int = 1) -> None:
        for list_id, n in other.members.items():
            self.members[list_id] += sign * n
        for list_id, n in other.reachable.items():
            self.reachable[list_id] += sign * n


def _connection(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _default_list_id(connection: Connection, account_id: int) -> int:
    return connection.execute(
        select(SubscriptionList.id).where(
            SubscriptionList.account_id == account_id, SubscriptionList.is_default.is_(True)
        )
    ).scalar_one()


def _shares(
    connection: Connection, account_id: int, subscriber_ids: Sequence[int], *, on_lists: bool = True
) -> Changes:
    """What these subscribers of the account add to each count: the default list and, unless
    `on_lists` is false (they were just created), every list they are subscribed to."""
    shares = Changes.none()
    if not subscriber_ids:
        return shares
    everyone = _default_list_id(connection, account_id)
    ids = and_(
        owned_by(connection.dialect, Subscriber, account_id),
        among(connection.dialect, Subscriber.id, subscriber_ids),
    )
    members, reachable = connection.execute(select(func.count(), _reached()).where(ids)).one()
    shares.members[everyone] += members
    shares.reachable[everyone] += reachable
    if not on_lists:
        return shares
    listed = connection.execute(
        select(Subscription.subscription_list_id, func.count(), _reached())
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            ids,
            Subscription.subscription_list_id.is_not(None),
            Subscription.unsubscribed_at.is_(None),
        )
        .group_by(Subscription.subscription_list_id)
    )
    for list_id, members, reachable in listed:
        shares.members[list_id] += members
        shares.reachable[list_id] += reachable
    return shares


def _lock(connection: Connection, subscriber_ids: Sequence[int]) -> None:
    """FOR NO KEY UPDATE: writers of the same subscribers queue (an opt-out's UPDATE takes
    this lock too); rows that merely refer to them (a delivery, a subscription) do not."""
    if connection.dialect.name != "postgresql":
        return  # SQLite has one writer
    for chunk in chunks(sorted(subscriber_ids)):
        connection.execute(
            select(Subscriber.id)
            .where(Subscriber.id.in_(chunk))
            .order_by(Subscriber.id)
            .with_for_update(key_share=True)
        )


@contextmanager
def changing(
    db: Session | Connection, account_id: int, subscriber_ids: Sequence[int]
) -> Iterator[None]:
    """Keep the counts right across the block's writes, which change these subscribers
    (their subscriptions, address, opt-out or suppression; deleting them too)."""
    ids = list(dict.fromkeys(subscriber_ids))
    if not ids:
        yield
        return
    if isinstance(db, Session):
        db.flush()  # what the session changed before is not this block's
    connection = _connection(db)
    _lock(connection, ids)
    before = _shares(connection, account_id, ids)
    yield
    if isinstance(db, Session):
        db.flush()
    changes = _shares(connection, account_id, ids)
    changes.add(before, -1)
    _record(db, changes)


def added(db: Session | Connection, account_id: int, subscriber_ids: Sequence[int]) -> None:
    """Count subscribers just created, before they join any list but the default."""
    _record(db, _shares(_connection(db), account_id, subscriber_ids, on_lists=False))


def joined(
    db: Session | Connection,
    list_id: int,
    subscriber_ids: Sequence[int],
    *,
    created: bool = False,
) -> None:
    """Count subscribers who have just joined a list they were not on (a new subscription
    row each). On PostgreSQL they are locked first, as `changing` locks them, so a concurrent
    opt-out of one of them counts after this; `created` subscribers are this transaction's
    own and need no lock."""
    if not subscriber_ids:
        return
    if isinstance(db, Session):
        db.flush()
    connection = _connection(db)
    if not created:
        _lock(connection, subscriber_ids)
    reachable = connection.execute(
        select(_reached()).where(among(connection.dialect, Subscriber.id, subscriber_ids))
    ).scalar_one()
    _record(db, Changes(Counter({list_id: len(subscriber_ids)}), Counter({list_id: reachable})))


def _record(db: Session | Connection, changes: Changes) -> None:
    if isinstance(db, Session):
        db.info.setdefault(PENDING, Changes.none()).add(changes)
    else:
        _apply(db, changes)


def _apply(connection: Connection, changes: Changes) -> None:
    lists = sorted(
        {lid for lid, n in changes.members.items() if n}
        | {lid for lid, n in changes.reachable.items() if n}
    )
    if not lists:
        return
    connection.execute(
        update(ListCount)
        .where(ListCount.subscription_list_id == bindparam("c_list"))
        .values(
            members=ListCount.members + bindparam("c_members"),
            reachable=ListCount.reachable + bindparam("c_reachable"),
        ),
        [
            {
                "c_list": lid,
                "c_members": changes.members[lid],
                "c_reachable": changes.reachable[lid],
            }
            for lid in lists
        ],
    )


@event.listens_for(Session, "before_commit")
def write_pending(session: Session) -> None:
    """Write the session's differences to the counts (at commit, or before reading them)."""
    changes: Changes | None = session.info.pop(PENDING, None)
    if changes is not None:
        session.flush()  # a list created in this session has its count row written first
        _apply(session.connection(), changes)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    # Rolled back or closed without committing: what it changed is gone, and so is the count.
    if transaction.parent is None:
        session.info.pop(PENDING, None)


def start_counts(session: Session, lst: SubscriptionList) -> None:
    """The counts of a new list, empty."""
    session.add(ListCount(account_id=lst.account_id, subscription_list_id=lst.id))
    session.flush()


def kept(session: Session, lists: Sequence[SubscriptionList]) -> dict[int, ListCount]:
    """The counts of these lists, by list id: one row each."""
    write_pending(session)
    if not lists:
        return {}
    rows = session.scalars(
        select(ListCount)
        .where(ListCount.subscription_list_id.in_([lst.id for lst in lists]))
        .execution_options(populate_existing=True)
    )
    return {row.subscription_list_id: row for row in rows}


def members(session: Session, lst: SubscriptionList) -> int:
    found = kept(session, [lst]).get(lst.id)
    return found.members if found else 0


def reachable(session: Session, lst: SubscriptionList) -> int:
    """How many subscribers a send to the list reaches, if it began now."""
    found = kept(session, [lst]).get(lst.id)
    return found.reachable if found else 0


def fresh(connection: Connection, lst: SubscriptionList) -> tuple[int, int]:
    """A list's (members, reachable) counted from its rows."""
    if lst.is_default:
        stmt = select(func.count(), _reached()).where(Subscriber.account_id == lst.account_id)
    else:
        stmt = (
            select(func.count(), _reached())
            .select_from(Subscription)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(
                Subscription.subscription_list_id == lst.id,
                Subscription.unsubscribed_at.is_(None),
            )
        )
    n, r = connection.execute(stmt).one()
    return int(n), int(r)


@dataclass(frozen=True)
class Recount:
    """A list counted afresh: what its kept counts said, and what they say now."""

    list_id: int
    kept: tuple[int, int] | None
    counted: tuple[int, int]

    @property
    def was_wrong(self) -> bool:
        return self.kept != self.counted


def recount(session: Session, lst: SubscriptionList) -> Recount:
    """Count the list afresh and put its kept counts right. Its count row is locked first:
    a writer that changed the list without committing yet adds its difference after."""
    write_pending(session)
    connection = session.connection()
    row = connection.execute(
        select(ListCount.members, ListCount.reachable)
        .where(ListCount.subscription_list_id == lst.id)
        .with_for_update()
    ).one_or_none()
    before = (int(row[0]), int(row[1])) if row is not None else None
    counted = fresh(connection, lst)
    if before is None:
        session.add(
            ListCount(
                account_id=lst.account_id,
                subscription_list_id=lst.id,
                members=counted[0],
                reachable=counted[1],
            )
        )
        session.flush()
    elif before != counted:
        connection.execute(
            update(ListCount)
            .where(ListCount.subscription_list_id == lst.id)
            .values(members=counted[0], reachable=counted[1])
        )
    return Recount(lst.id, before, counted)
