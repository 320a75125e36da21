"""What deliveries came to: counts by status, each subscriber's messages (`with_stats`), and
the last answer of a mail server that deferred one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    case,
    func,
    select,
)
from sqlalchemy.orm import Session

from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import SENT, Delivery, DeliveryStatus
from dripstone.subscribers import service as subscribers_service


def status_counts(connection: Connection, *conditions: Any) -> dict[str, int]:
    """Deliveries by status among those matching `conditions`."""
    rows = connection.execute(
        select(Delivery.status, func.count().label("n"))
        .where(*conditions)
        .group_by(Delivery.status)
    )
    return {row.status: row.n for row in rows}


@subscribers_service.count_messages_with
def subscriber_counts(
    session: Session, account_id: int, subscriber_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Per subscriber of the account: their campaign and drip messages sent (see SENT),
    delivered, opened, clicked, soft-bounced (given up after retries) and hard-bounced.
    Test emails and previews never count; messages not sent yet count once answered."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(
            Delivery.subscriber_id,
            func.count(case((Delivery.status.in_(SENT), 1))).label("deliveries"),
            func.count(case((Delivery.status == DeliveryStatus.DELIVERED, 1))).label("delivered"),
            func.count(Delivery.opened_at).label("opened"),
            func.count(Delivery.clicked_at).label("clicked"),
            func.count(case((Delivery.status == DeliveryStatus.SOFT_BOUNCED, 1))).label(
                "soft_bounced"
            ),
            func.count(case((Delivery.status == DeliveryStatus.HARD_BOUNCED, 1))).label(
                "hard_bounced"
            ),
        )
        .where(
            Delivery.account_id == account_id,
            Delivery.subscriber_id.in_(subscriber_ids),
            Delivery.kind.in_([k for k in DeliveryKind if k.to_members]),
        )
        .group_by(Delivery.subscriber_id)
    )
    return {row.subscriber_id: dict(row._mapping) for row in rows}


def last_deferral(connection: Connection, *conditions: Any) -> Any:
    """The most recent deferred reply among pending deliveries matching `conditions`."""
    return connection.execute(
        select(Delivery.smtp_code, Delivery.smtp_reply, Delivery.next_attempt_at)
        .where(
            *conditions, Delivery.status == DeliveryStatus.PENDING, Delivery.smtp_reply.is_not(None)
        )
        .order_by(Delivery.next_attempt_at.desc())
        .limit(1)
    ).first()
