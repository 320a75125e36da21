"""Tables of the delivery pipeline: one row per message, and the suppressed addresses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    UniqueConstraint,
    literal,
    select,
)
from sqlalchemy.orm import Mapped, QueryableAttribute, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId


class DeliveryStatus(StrEnum):
    """pending (due at next_attempt_at; attempts > 0 means deferred) → claimed (taken by a
    dispatcher, not yet attempted) → sending (handed to the transport; the reply is not
    recorded yet) → one of the final states. A drip message due while its campaign is
    paused is held until the campaign starts again."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    HELD = "held"
    DELIVERED = "delivered"
    SOFT_BOUNCED = "soft_bounced"  # 4xx until the retry horizon
    HARD_BOUNCED = "hard_bounced"  # 5xx: the address is suppressed for the account
    SKIPPED = (
        "skipped"  # never sent: opted out, unsubscribed, suppressed, deleted; why in smtp_reply
    )
    FAILED = "failed"  # its content could not be rendered for this recipient


FINAL = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SOFT_BOUNCED,
    DeliveryStatus.HARD_BOUNCED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.FAILED,
)
# Handed to a mail server, which answered for good: what counts as sent.
SENT = (DeliveryStatus.DELIVERED, DeliveryStatus.SOFT_BOUNCED, DeliveryStatus.HARD_BOUNCED)
BOUNCED = (DeliveryStatus.SOFT_BOUNCED, DeliveryStatus.HARD_BOUNCED)


class Delivery(AccountOwned, Base):
    """One message to one address: written before it leaves, marked after the reply (its
    status is a DeliveryStatus)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("send_id", "subscriber_id"),
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_send_status", "send_id", "status"),
        Index("ix_deliveries_mailing_status", "campaign_mailing_id", "status"),
        # The exactly-once guard of drip steps: one message per (enrollment, email node).
        UniqueConstraint("drip_enrollment_id", "drip_node_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # campaign, preview, test, drip
    send_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("campaign_mailing_sends.id", ondelete="CASCADE")
    )
    campaign_mailing_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("campaign_mailings.id", ondelete="CASCADE")
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    # The list an unsubscribe from this message leaves (None: the default list, a global opt-out).
    subscription_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="SET NULL")
    )
    drip_enrollment_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("drip_enrollments.id", ondelete="SET NULL")
    )
    drip_node_id: Mapped[str | None] = mapped_column(String(64))
    # A drip email node's overrides of the mailing's subject and sender.
    subject: Mapped[str | None] = mapped_column(String(998))
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    tracked: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    smtp_code: Mapped[int | None]
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The first open and click of any kind (a click counts as an open), and the first a
    # person made (not an image proxy's prefetch or a link scanner).
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    human_opened_at: Mapped[datetime | None]
    human_clicked_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]


class Suppression(AccountOwned, Base):
    """An address the account never sends to again (it hard-bounced)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)
    delivery_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime]


def due_delivery(
    *,
    account_id: Any,
    kind: str,
    campaign_mailing_id: Any,
    email: Any,
    tracked: bool,
    now: datetime,
    **links: Any,
) -> dict[str, Any]:
    """The columns of a new delivery, due at once: the one place a delivery's starting state
    is set. `links` are its other columns (send_id, subscriber_id, drip_enrollment_id, …).
    Values may be SQL expressions, for `select_due_deliveries`."""
    return {
        "account_id": account_id,
        "kind": str(kind),
        "campaign_mailing_id": campaign_mailing_id,
        "email": email,
        "tracked": tracked,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        **links,
    }


def select_due_deliveries(columns: dict[str, Any]) -> Select[Any]:
    """A SELECT of `due_delivery` columns, for INSERT ... SELECT: plain values become typed
    literals, SQL expressions (Subscriber.id, say) stay per row."""
    table = Delivery.__table__
    return select(
        *(
            value
            if isinstance(value, ColumnElement | QueryableAttribute)
            else literal(value, type_=table.c[name].type)
            for name, value in columns.items()
        )
    )
