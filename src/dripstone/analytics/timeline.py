"""A subscriber's timeline: everything that happened to them, newest first — joining lists,
messages delivered and bounced, opens and clicks, drip steps, unsubscribing.

It reads the tables of every domain below analytics (each query by subscriber, on an index
of its own, and bounded), so it lives here, in the highest of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select

from dripstone.db import AccountScope
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import Delivery, DeliveryStatus
from dripstone.drips.models import DripCampaign, DripEnrollment, DripNodeVisit, EnrollmentState
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers.models import (
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from dripstone.tracking.models import TrackingEvent

TIMELINE_LIMIT = 200


class TimelineKind(StrEnum):
    CREATED = "created"
    JOINED = "joined"
    UNSUBSCRIBED = "unsubscribed"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    OPENED = "opened"
    CLICKED = "clicked"
    DRIP_ENTERED = "drip_entered"
    DRIP_STEP = "drip_step"
    DRIP_LEFT = "drip_left"


# Things that happen in the same instant are shown in the order they must have happened.
_ORDER = {
    TimelineKind.CREATED: 0,
    TimelineKind.JOINED: 1,
    TimelineKind.DRIP_ENTERED: 2,
    TimelineKind.DRIP_STEP: 3,
    TimelineKind.DELIVERED: 4,
    TimelineKind.BOUNCED: 4,
    TimelineKind.OPENED: 5,
    TimelineKind.CLICKED: 6,
    TimelineKind.UNSUBSCRIBED: 7,
    TimelineKind.DRIP_LEFT: 8,
}


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened: when, what, and about which list, mailing or campaign."""

    at: datetime
    kind: TimelineKind
    subject: str  # the list, mailing or campaign it concerns
    detail: str = ""


def _subject(delivery_subject: str | None, mailing_subject: str | None) -> str:
    return delivery_subject or mailing_subject or "(a deleted mailing)"


def timeline(
    scope: AccountScope, subscriber: Subscriber, limit: int = TIMELINE_LIMIT
) -> list[TimelineEntry]:
    """The latest `limit` things that happened to `subscriber`, newest first."""
    entries = [TimelineEntry(subscriber.created_at, TimelineKind.CREATED, "to this account")]
    if subscriber.opted_out_on is not None:
        entries.append(
            TimelineEntry(subscriber.opted_out_on, TimelineKind.UNSUBSCRIBED, "All mail")
        )
    entries += _lists(scope, subscriber.id, limit)
    entries += _deliveries(scope, subscriber.id, limit)
    entries += _tracking(scope, subscriber.id, limit)
    entries += _drips(scope, subscriber.id, limit)
    entries.sort(key=lambda e: (e.at, _ORDER[e.kind]), reverse=True)
    return entries[:limit]


def _lists(scope: AccountScope, subscriber_id: int, limit: int) -> list[TimelineEntry]:
    joined = scope.session.execute(
        scope.select(SubscriptionEvent, SubscriptionEvent.occurred_at, SubscriptionList.name)
        .join(SubscriptionList, SubscriptionList.id == SubscriptionEvent.subscription_list_id)
        .where(SubscriptionEvent.subscriber_id == subscriber_id)
        .order_by(SubscriptionEvent.occurred_at.desc())
        .limit(limit)
    ).all()
    left = scope.session.execute(
        scope.select(Subscription, Subscription.unsubscribed_at, SubscriptionList.name)
        .join(SubscriptionList, SubscriptionList.id == Subscription.subscription_list_id)
        .where(
            Subscription.subscriber_id == subscriber_id, Subscription.unsubscribed_at.is_not(None)
        )
        .order_by(Subscription.unsubscribed_at.desc())
        .limit(limit)
    ).all()
    return [TimelineEntry(at, TimelineKind.JOINED, name) for at, name in joined] + [
        TimelineEntry(at, TimelineKind.UNSUBSCRIBED, name) for at, name in left
    ]


def _deliveries(scope: AccountScope, subscriber_id: int, limit: int) -> list[TimelineEntry]:
    rows = scope.session.execute(
        scope.select(
            Delivery,
            Delivery.status,
            func.coalesce(Delivery.finished_at, Delivery.sent_at),
            Delivery.subject,
            CampaignMailing.subject,
            Delivery.smtp_code,
            Delivery.smtp_reply,
        )
        .outerjoin(CampaignMailing, CampaignMailing.id == Delivery.campaign_mailing_id)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.kind.in_([DeliveryKind.CAMPAIGN.value, DeliveryKind.DRIP.value]),
            Delivery.status.in_(
                [
                    DeliveryStatus.DELIVERED.value,
                    DeliveryStatus.SOFT_BOUNCED.value,
                    DeliveryStatus.HARD_BOUNCED.value,
                ]
            ),
        )
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for status, at, own_subject, mailing_subject, code, reply in rows:
        if at is None:
            continue
        if status == DeliveryStatus.DELIVERED:
            entries.append(
                TimelineEntry(at, TimelineKind.DELIVERED, _subject(own_subject, mailing_subject))
            )
        else:
            how = "hard bounce" if status == DeliveryStatus.HARD_BOUNCED else "soft bounce"
            answer = " ".join(str(part) for part in (code, reply) if part)
            detail = f"{how}: {answer}" if answer else how
            entries.append(
                TimelineEntry(
                    at, TimelineKind.BOUNCED, _subject(own_subject, mailing_subject), detail
                )
            )
    return entries


_TRACKED = {"open": TimelineKind.OPENED, "click": TimelineKind.CLICKED}


def _tracking(scope: AccountScope, subscriber_id: int, limit: int) -> list[TimelineEntry]:
    rows = scope.session.execute(
        scope.select(
            TrackingEvent,
            TrackingEvent.occurred_at,
            TrackingEvent.kind,
            TrackingEvent.url,
            TrackingEvent.machine,
            Delivery.subject,
            CampaignMailing.subject,
        )
        .join(Delivery, Delivery.id == TrackingEvent.delivery_id)
        .outerjoin(CampaignMailing, CampaignMailing.id == Delivery.campaign_mailing_id)
        .where(TrackingEvent.subscriber_id == subscriber_id)
        .order_by(TrackingEvent.id.desc())
        .limit(limit)
    ).all()
    entries = []
    for at, kind, url, machine, own_subject, mailing_subject in rows:
        subject = _subject(own_subject, mailing_subject)
        if kind in _TRACKED:
            notes = [url or ""] if kind == "click" else []
            if machine:
                notes.append("by a machine (image proxy or link scanner)")
            entries.append(
                TimelineEntry(at, _TRACKED[kind], subject, " — ".join(n for n in notes if n))
            )
        elif kind == "unsubscribe":
            entries.append(
                TimelineEntry(at, TimelineKind.UNSUBSCRIBED, subject, "from the link in the email")
            )
    return entries


def _drips(scope: AccountScope, subscriber_id: int, limit: int) -> list[TimelineEntry]:
    enrollments = scope.session.execute(
        scope.select(
            DripEnrollment,
            DripEnrollment.id,
            DripCampaign.name,
            DripEnrollment.enrolled_at,
            DripEnrollment.state,
            DripEnrollment.finished_at,
            DripEnrollment.exit_reason,
        )
        .join(DripCampaign, DripCampaign.id == DripEnrollment.drip_campaign_id)
        .where(DripEnrollment.subscriber_id == subscriber_id)
        .order_by(DripEnrollment.id.desc())
        .limit(limit)
    ).all()
    entries = []
    names = {}
    for enrollment_id, name, enrolled_at, state, finished_at, exit_reason in enrollments:
        names[enrollment_id] = name
        entries.append(TimelineEntry(enrolled_at, TimelineKind.DRIP_ENTERED, name))
        if finished_at is not None and state != EnrollmentState.ACTIVE:
            detail = "completed" if state == EnrollmentState.COMPLETED else f"left: {exit_reason}"
            entries.append(TimelineEntry(finished_at, TimelineKind.DRIP_LEFT, name, detail))
    if names:
        visits = scope.session.execute(
            select(DripNodeVisit.enrollment_id, DripNodeVisit.node_id, DripNodeVisit.entered_at)
            .where(DripNodeVisit.enrollment_id.in_(list(names)))
            .order_by(DripNodeVisit.entered_at.desc())
            .limit(limit)
        ).all()
        entries += [
            TimelineEntry(at, TimelineKind.DRIP_STEP, names[eid], f"step {node}")
            for eid, node, at in visits
        ]
    return entries
