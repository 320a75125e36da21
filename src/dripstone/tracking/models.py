"""Tables of the tracking domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId


class TrackingEvent(AccountOwned, Base):
    """An open, click or unsubscribe, recorded against its delivery and subscriber."""

    __tablename__ = "tracking_events"
    __table_args__ = (Index("ix_tracking_events_delivery_kind", "delivery_id", "kind"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # open, click, unsubscribe
    html_id: Mapped[int | None]
    url: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    # What is known of who made an open or click; the client's address itself is not kept,
    # only the image proxy it revealed.
    user_agent: Mapped[str | None] = mapped_column(String(512))
    proxy: Mapped[str | None] = mapped_column(String(32))
    seconds_after_send: Mapped[float | None] = mapped_column(Float)
    machine: Mapped[bool | None]  # an open by a machine, a click by a bot; None: unsubscribe
    machine_reason: Mapped[str | None] = mapped_column(String(32))
    all_mail: Mapped[bool | None]  # an unsubscribe that left all mail, not one list
