"""Who is on which list: joining (with the events drip triggers consume), re-joining, and the
global opt-out."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update

from dripstone import clock
from dripstone.db import AccountScope, insert_rows, new_uuids
from dripstone.subscribers import counts
from dripstone.subscribers.models import (
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from dripstone.subscribers.rows import chunks


def record_joins(scope: AccountScope, list_id: int, subscriber_ids: Sequence[int]) -> None:
    """Record that these subscribers joined the list; drip triggers consume these events."""
    if not subscriber_ids:
        return
    insert_rows(
        scope.session,
        SubscriptionEvent,
        ("subscriber_id",),
        [(sid,) for sid in subscriber_ids],
        same={
            "account_id": scope.account_id,
            "subscription_list_id": list_id,
            "occurred_at": clock.now(),
        },
    )


def join(
    scope: AccountScope,
    lst: SubscriptionList,
    subscriber_ids: Sequence[int],
    *,
    created: bool = False,
) -> list[int]:
    """Add subscribers to a list they are not on; returns who was added (and records events).
    Members who unsubscribed from it stay unsubscribed: only an explicit subscribe re-adds them.
    With `created`, the subscribers were created in this transaction, so none is on the list."""
    if lst.is_default or not subscriber_ids:
        return []
    now = clock.now()
    rows = list(zip(new_uuids(len(subscriber_ids)), subscriber_ids, strict=True))
    same = {
        "account_id": scope.account_id,
        "subscription_list_id": lst.id,
        "created_at": now,
        "updated_at": now,
    }
    if created:
        insert_rows(scope.session, Subscription, ("uuid", "subscriber_id"), rows, same=same)
        added = list(subscriber_ids)
    else:
        inserted = insert_rows(
            scope.session,
            Subscription,
            ("uuid", "subscriber_id"),
            rows,
            same=same,
            skip_clashes_on=("subscription_list_id", "subscriber_id"),
            returning=("subscriber_id",),
        )
        added = [sid for (sid,) in inserted]
    counts.joined(scope.session, lst.id, added, created=created)
    record_joins(scope, lst.id, added)
    return added


def add_to_list(scope: AccountScope, lst: SubscriptionList, subscriber_ids: Sequence[int]) -> None:
    """Add subscribers to a list on Dripstone's own initiative (a drip action): those who
    unsubscribed from it stay unsubscribed, and no one's global opt-out is lifted."""
    join(scope, lst, subscriber_ids)


def rejoin(scope: AccountScope, lst: SubscriptionList, subscriber_ids: Sequence[int]) -> None:
    """Subscribe to a list: add the missing and clear `unsubscribed_at` on the rest."""
    join(scope, lst, subscriber_ids)
    if lst.is_default:
        return
    for chunk in chunks(subscriber_ids):
        with counts.changing(scope.session, scope.account_id, chunk):
            returned = scope.session.scalars(
                update(Subscription)
                .where(
                    Subscription.subscription_list_id == lst.id,
                    Subscription.subscriber_id.in_(chunk),
                    Subscription.unsubscribed_at.is_not(None),
                )
                .values(unsubscribed_at=None, updated_at=clock.now())
                .returning(Subscription.subscriber_id)
            ).all()
        record_joins(scope, lst.id, returned)


def set_global_opt_out(
    scope: AccountScope, subscriber_ids: Sequence[int], *, opted_out: bool
) -> None:
    now = clock.now()
    for chunk in chunks(subscriber_ids):
        with counts.changing(scope.session, scope.account_id, chunk):
            scope.session.execute(
                update(Subscriber)
                .where(
                    scope.owns(Subscriber),
                    Subscriber.id.in_(chunk),
                    Subscriber.opted_out_on.is_(None)
                    if opted_out
                    else Subscriber.opted_out_on.is_not(None),
                )
                .values(opted_out_on=now if opted_out else None, updated_at=now)
            )
