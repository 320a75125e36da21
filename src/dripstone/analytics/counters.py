"""The counters of campaign sends: totals per send, per mailing and per link.

This version counts the delivery and event rows on each read; `rebuild` has nothing to
recompute. Every number counts distinct recipients unless it says otherwise, a click counts
as an open, and only campaign deliveries count (never test emails, previews or drip steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Integer, and_, case, func, or_, select
from sqlalchemy.orm import Session

from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import BOUNCED, SENT, Delivery, DeliveryStatus
from dripstone.subscribers.models import SubscriptionList
from dripstone.tracking.models import TrackingEvent
from dripstone.tracking.service import CLICK


@dataclass(frozen=True)
class Totals:
    sent: int
    delivered: int
    viewed: int
    clicked: int
    bounced: int
    soft_bounced: int
    hard_bounced: int
    unsubscribed: int
    global_unsubscribed: int
    human_viewed: int
    machine_viewed: int
    human_clicked: int
    bot_clicked: int

    @classmethod
    def zero(cls) -> Totals:
        return cls(**dict.fromkeys((f.name for f in fields(cls)), 0))


@dataclass(frozen=True)
class LinkClicks:
    html_id: int
    target_url: str
    clicked: int
    human_clicked: int
    clicks: int


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


def _totals_columns() -> tuple[Any, ...]:
    viewed = or_(Delivery.opened_at.is_not(None), Delivery.clicked_at.is_not(None))
    unsubscribed = Delivery.unsubscribed_at.is_not(None)
    left_all_mail = and_(
        unsubscribed,
        or_(Delivery.subscription_list_id.is_(None), SubscriptionList.is_default.is_(True)),
    )
    return (
        _count_if(Delivery.status.in_(SENT)).label("sent"),
        _count_if(Delivery.status == DeliveryStatus.DELIVERED).label("delivered"),
        _count_if(viewed).label("viewed"),
        _count_if(Delivery.clicked_at.is_not(None)).label("clicked"),
        _count_if(Delivery.status.in_(BOUNCED)).label("bounced"),
        _count_if(Delivery.status == DeliveryStatus.SOFT_BOUNCED).label("soft_bounced"),
        _count_if(Delivery.status == DeliveryStatus.HARD_BOUNCED).label("hard_bounced"),
        _count_if(unsubscribed).label("unsubscribed"),
        _count_if(left_all_mail).label("global_unsubscribed"),
    )


def _totals(row: Any) -> Totals:
    return Totals(
        sent=row.sent,
        delivered=row.delivered,
        viewed=row.viewed,
        clicked=row.clicked,
        bounced=row.bounced,
        soft_bounced=row.soft_bounced,
        hard_bounced=row.hard_bounced,
        unsubscribed=row.unsubscribed,
        global_unsubscribed=row.global_unsubscribed,
        human_viewed=row.viewed,
        machine_viewed=0,
        human_clicked=row.clicked,
        bot_clicked=0,
    )


def _campaign_deliveries(account_id: int, *columns: Any) -> Any:
    return (
        select(*columns)
        .select_from(Delivery)
        .outerjoin(SubscriptionList, SubscriptionList.id == Delivery.subscription_list_id)
        .where(Delivery.account_id == account_id, Delivery.kind == DeliveryKind.CAMPAIGN.value)
    )


def send_totals(session: Session, account_id: int, send_id: int | None) -> Totals:
    """One campaign send's totals; None: every campaign send of the account."""
    stmt = _campaign_deliveries(account_id, *_totals_columns())
    if send_id is not None:
        stmt = stmt.where(Delivery.send_id == send_id)
    return _totals(session.execute(stmt).one())


def mailing_totals(
    session: Session, account_id: int, mailing_ids: Sequence[int]
) -> dict[int, Totals]:
    """The totals of every campaign send of each mailing (zero for a mailing never sent)."""
    found = {mailing_id: Totals.zero() for mailing_id in mailing_ids}
    if not found:
        return found
    stmt = (
        _campaign_deliveries(account_id, Delivery.campaign_mailing_id, *_totals_columns())
        .where(Delivery.campaign_mailing_id.in_(list(found)))
        .group_by(Delivery.campaign_mailing_id)
    )
    for row in session.execute(stmt):
        found[row.campaign_mailing_id] = _totals(row)
    return found


def link_clicks(session: Session, account_id: int, send_id: int) -> list[LinkClicks]:
    """The clicked links of one campaign send, in html_id order."""
    stmt = (
        select(
            TrackingEvent.html_id,
            func.min(TrackingEvent.url).label("target_url"),
            func.count(func.distinct(TrackingEvent.delivery_id)).label("clicked"),
            func.count().label("clicks"),
        )
        .join(Delivery, Delivery.id == TrackingEvent.delivery_id)
        .where(
            TrackingEvent.account_id == account_id,
            TrackingEvent.kind == CLICK,
            TrackingEvent.html_id.is_not(None),
            Delivery.send_id == send_id,
            Delivery.kind == DeliveryKind.CAMPAIGN.value,
        )
        .group_by(TrackingEvent.html_id)
        .order_by(TrackingEvent.html_id)
    )
    return [
        LinkClicks(
            html_id=row.html_id,
            target_url=row.target_url or "",
            clicked=row.clicked,
            human_clicked=row.clicked,
            clicks=row.clicks,
        )
        for row in session.execute(stmt)
    ]


def rebuild(session: Session, account_id: int | None = None) -> None:
    """Recompute the counters from the delivery and event rows: here every read counts
    them, so there is nothing kept to recompute."""
