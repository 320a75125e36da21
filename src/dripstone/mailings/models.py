"""Tables of the mailings domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId, PublicId, Timestamps


class SendState(StrEnum):
    """scheduled → queueing (its deliveries are being written) → sending → sent; a schedule
    can be cancelled before it begins, and a send fails when its mailing no longer renders."""

    SCHEDULED = "scheduled"
    QUEUEING = "queueing"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


class CampaignMailing(PublicId, AccountOwned, Timestamps, Base):
    """An email's content. `html_part` is stored with its unsubscribe footer."""

    __tablename__ = "campaign_mailings"
    __table_args__ = (UniqueConstraint("account_id", "subject"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(998))
    default_subject: Mapped[str | None] = mapped_column(String(998))
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(255))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    html_part: Mapped[str | None] = mapped_column(Text)
    text_part: Mapped[str | None] = mapped_column(Text)  # None: derived from html_part
    form_data: Mapped[Any] = mapped_column(JSON, nullable=True)
    image_data: Mapped[Any] = mapped_column(JSON, nullable=True)
    template_type: Mapped[str] = mapped_column(String(32), default="quill")


class CampaignMailingSend(PublicId, AccountOwned, Base):
    """One send of a mailing to a list or segment: now, or scheduled for `send_at`.

    The content is copied here when the send starts, so every recipient of one send gets
    the same email even if the mailing is edited while it goes out.
    """

    __tablename__ = "campaign_mailing_sends"
    __table_args__ = (Index("ix_campaign_mailing_sends_account_created", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    campaign_mailing_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("campaign_mailings.id", ondelete="CASCADE"), index=True
    )
    subscription_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="SET NULL")
    )
    dynamic_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("dynamic_lists.id", ondelete="SET NULL")
    )
    list_name: Mapped[str] = mapped_column(String(255))
    sender_email: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(255))
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(255))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    html_part: Mapped[str | None] = mapped_column(Text)
    text_part: Mapped[str | None] = mapped_column(Text)
    recipient_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16))  # a SendState
    send_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
