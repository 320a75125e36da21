"""Record opens, clicks and unsubscribes that arrive through signed URLs."""

from __future__ import annotations

from dataclasses import dataclass

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


def record_open(session: Session, tokens: TrackingTokens, token: str) -> bool:
    """Record an open of the delivery the token names; False for a token that is not ours."""
    delivery_id = tokens.verify_open(token)
    delivery = session.get(Delivery, delivery_id) if delivery_id is not None else None
    if delivery is None:
        return False
    _record(session, delivery, OPEN)
    return True


def record_click(session: Session, tokens: TrackingTokens, token: str) -> str | None:
    """Record a click and return where it goes; None for a token that is not ours."""
    click = tokens.verify_click(token)
    if click is None:
        return None
    delivery = session.get(Delivery, click.delivery_id)
    if delivery is not None:
        _record(session, delivery, CLICK, html_id=click.html_id, url=click.target_url)
    # A deleted delivery still redirects: the link was ours and the reader expects the page.
    return click.target_url


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
) -> None:
    now = clock.now()
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
