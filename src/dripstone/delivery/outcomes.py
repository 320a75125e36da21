"""What deliveries came to: counts by status, and the last answer of a mail server that
deferred one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from dripstone.delivery.models import Delivery, DeliveryStatus


def status_counts(connection: Connection, *conditions: Any) -> dict[str, int]:
    """Deliveries by status among those matching `conditions`."""
    rows = connection.execute(
        select(Delivery.status, func.count().label("n"))
        .where(*conditions)
        .group_by(Delivery.status)
    )
    return {row.status: row.n for row in rows}


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
