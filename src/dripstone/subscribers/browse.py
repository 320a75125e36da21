"""Paging through a selection of subscribers, newest first, by id (keyset paging: a page
costs the same on the first page as on the millionth row).

A search or filter matched row by row could read the whole table to fill one page when few
rows match, so each page reads at most `scan` of the account's subscribers: a page can then
hold fewer than its size, and says where the next stretch starts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from dripstone.db import AccountScope
from dripstone.subscribers.models import Subscriber
from dripstone.subscribers.selection import Selection, selection_condition

SCAN = 5_000


@dataclass(frozen=True)
class SubscriberPage:
    """One page of subscribers, newest first; the ids to page on from, where there is more.
    `partial`: the page stopped at the end of the stretch it may read, not of the selection."""

    subscribers: list[Subscriber]
    older_than: int | None  # the next page: subscribers below this id
    newer_than: int | None  # the previous page: subscribers above this id
    partial: bool = False


def _edge(scope: AccountScope, *, below: int | None, above: int | None, scan: int) -> int | None:
    """The id `scan` subscribers of the account on from `below` (down) or `above` (up);
    None when fewer are left. An index walk of `scan` entries, bounded whatever the page."""
    stmt = select(Subscriber.id).where(Subscriber.account_id == scope.account_id)
    if above is not None:
        stmt = stmt.where(Subscriber.id > above).order_by(Subscriber.id.asc())
    else:
        if below is not None:
            stmt = stmt.where(Subscriber.id < below)
        stmt = stmt.order_by(Subscriber.id.desc())
    found: int | None = scope.session.scalar(stmt.offset(scan).limit(1))
    return found


def subscriber_page(
    scope: AccountScope,
    selection: Selection,
    *,
    limit: int,
    before_id: int | None = None,
    after_id: int | None = None,
    scan: int | None = SCAN,
) -> SubscriberPage:
    """The `limit` newest selected subscribers below `before_id` (the next page), or the
    `limit` oldest above `after_id` (the previous page, shown newest first), reading at most
    `scan` subscribers (None: no bound, for a selection of everyone)."""
    stmt = select(Subscriber).where(selection_condition(scope, selection))
    backwards = after_id is not None and before_id is None
    edge = None
    if backwards:
        if scan is not None:
            edge = _edge(scope, below=None, above=after_id, scan=scan)
        stmt = stmt.where(Subscriber.id > after_id).order_by(Subscriber.id.asc())
        if edge is not None:
            stmt = stmt.where(Subscriber.id <= edge)
    else:
        if scan is not None:
            edge = _edge(scope, below=before_id, above=None, scan=scan)
        if before_id is not None:
            stmt = stmt.where(Subscriber.id < before_id)
        stmt = stmt.order_by(Subscriber.id.desc())
        if edge is not None:
            stmt = stmt.where(Subscriber.id >= edge)
    found = list(scope.session.scalars(stmt.limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    partial = not more and edge is not None
    if backwards:
        found.reverse()
        assert after_id is not None
        up = found[0].id if more and found else (edge if partial else None)
        return SubscriberPage(found, found[-1].id if found else after_id + 1, up, partial)
    down = found[-1].id if more and found else (edge if partial else None)
    back = None
    if before_id is not None:
        back = found[0].id if found else before_id - 1
    return SubscriberPage(found, down, back, partial)
