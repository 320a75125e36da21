"""Record opens, clicks and unsubscribes that arrive through signed URLs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope
from dripstone.delivery.models import Delivery
from dripstone.delivery.signing import TrackingTokens
from dripstone.subscribers.models import Subscriber, SubscriptionList
from dripstone.subscribers.subscriptions import change_subscriptions
from dripstone.tracking.models import TrackingEvent

OPEN, CLICK, UNSUBSCRIBE = "open", "click", "unsubscribe"


@dataclass(frozen=True)
class Hit:
    """One request to an open pixel or a click redirect, as the recipient's client made it."""

    kind: str  # OPEN or CLICK
    delivery_id: int
    at: datetime
    user_agent: str | None = None
    remote_addr: str | None = None
    html_id: int | None = None
    url: str | None = None


def open_hit(
    tokens: TrackingTokens, token: str, user_agent: str | None, remote_addr: str | None
) -> Hit | None:
    """The open a pixel token names; None for a token that is not ours."""
    delivery_id = tokens.verify_open(token)
    if delivery_id is None:
        return None
    return Hit(OPEN, delivery_id, clock.now(), user_agent, remote_addr)


def click_hit(
    tokens: TrackingTokens, token: str, user_agent: str | None, remote_addr: str | None
) -> Hit | None:
    """The click a link token names (its `url` is where it goes); None if not ours."""
    click = tokens.verify_click(token)
    if click is None:
        return None
    at = clock.now()
    return Hit(
        CLICK, click.delivery_id, at, user_agent, remote_addr, click.html_id, click.target_url
    )


def record_hits(session: Session, hits: Sequence[Hit]) -> set[int]:
    """Record the hits, in the caller's transaction; returns the delivery ids that exist (a
    hit on a deleted delivery records nothing)."""
    found: set[int] = set()
    for hit in hits:
        delivery = session.get(Delivery, hit.delivery_id)
        if delivery is None:
            continue
        found.add(delivery.id)
        _record(session, delivery, hit.kind, html_id=hit.html_id, url=hit.url, at=hit.at)
    return found


@dataclass(frozen=True)
class UnsubscribeTarget:
    """What an unsubscribe link leaves: a named list, or all mail."""

    delivery: Delivery
    list_name: str | None  # None: all mail (the default list)


def unsubscribe_target(
    session: Session, tokens: TrackingTokens, token: str
) -> UnsubscribeTarget | None:
    """The delivery an unsubscribe token names and the list it leaves; None if not ours."""
    delivery_id = tokens.verify_unsubscribe(token)
    delivery = session.get(Delivery, delivery_id) if delivery_id is not None else None
    if delivery is None or delivery.subscriber_id is None:
        return None
    name = None
    if delivery.subscription_list_id is not None:
        lst = session.get(SubscriptionList, delivery.subscription_list_id)
        name = lst.name if lst is not None and not lst.is_default else None
    return UnsubscribeTarget(delivery, name)


def unsubscribe(session: Session, target: UnsubscribeTarget) -> None:
    """Take the subscriber off the delivery's list (or out of all mail), at once."""
    delivery = target.delivery
    scope = AccountScope(session, delivery.account_id)
    subscriber = scope.by_id(Subscriber, delivery.subscriber_id or 0)
    if subscriber is None:
        return
    lst = scope.by_id(SubscriptionList, delivery.subscription_list_id or 0)
    list_ids = [lst.uuid] if lst is not None and not lst.is_default else None
    change_subscriptions(scope, "unsubscribe", [subscriber.uuid], list_ids)
    _record(session, delivery, UNSUBSCRIBE)


def _record(
    session: Session,
    delivery: Delivery,
    kind: str,
    *,
    html_id: int | None = None,
    url: str | None = None,
    at: datetime | None = None,
) -> None:
    now = at or clock.now()
    session.add(
        TrackingEvent(
            account_id=delivery.account_id,
            delivery_id=delivery.id,
            subscriber_id=delivery.subscriber_id,
            kind=kind,
            html_id=html_id,
            url=url,
            occurred_at=now,
        )
    )
    # The first of each is kept on the delivery, for the counts.
    first = {
        OPEN: Delivery.opened_at,
        CLICK: Delivery.clicked_at,
        UNSUBSCRIBE: Delivery.unsubscribed_at,
    }[kind]
    values = {first.key: now}
    if kind == CLICK:
        # A click implies the message was opened, even when images were blocked.
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.opened_at.is_(None))
            .values(opened_at=now)
        )
    session.execute(
        update(Delivery).where(Delivery.id == delivery.id, first.is_(None)).values(**values)
    )
