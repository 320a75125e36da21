"""Paging through a selection of subscribers, newest first, by id (keyset paging: a page
costs the same on the first page as on the millionth row)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from dripstone.db import AccountScope
from dripstone.subscribers.models import Subscriber
from dripstone.subscribers.selection import Selection, selection_condition


@dataclass(frozen=True)
class SubscriberPage:
    """One page of subscribers, newest first; the ids to page on from, where there is more."""

    subscribers: list[Subscriber]
    older_than: int | None  # the next page: subscribers below this id
    newer_than: int | None  # the previous page: subscribers above this id


def subscriber_page(
    scope: AccountScope,
    selection: Selection,
    *,
    limit: int,
    before_id: int | None = None,
    after_id: int | None = None,
) -> SubscriberPage:
    """The `limit` newest selected subscribers below `before_id` (the next page), or the
    `limit` oldest above `after_id` (the previous page, shown newest first)."""
    stmt = select(Subscriber).where(selection_condition(scope, selection))
    backwards = after_id is not None and before_id is None
    if backwards:
        stmt = stmt.where(Subscriber.id > after_id).order_by(Subscriber.id.asc())
    else:
        if before_id is not None:
            stmt = stmt.where(Subscriber.id < before_id)
        stmt = stmt.order_by(Subscriber.id.desc())
    found = list(scope.session.scalars(stmt.limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    if backwards:
        found.reverse()
    if not found:
        return SubscriberPage([], None, None)
    first, last = found[0].id, found[-1].id
    if backwards:
        return SubscriberPage(found, last, first if more else None)
    return SubscriberPage(found, last if more else None, first if before_id is not None else None)
