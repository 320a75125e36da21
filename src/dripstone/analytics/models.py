"""Counters of the analytics domain, kept in the same transaction as the events they count.

Every counter counts distinct recipients (deliveries) unless its name says otherwise: a
message opened five times is one `viewed`. Machine opens and bot clicks are the differences
`viewed - human_viewed` and `clicked - human_clicked`; bounces are soft + hard.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId


class MessageCounts:
    """What the messages of one send (or one drip email node) came to."""

    sent: Mapped[int] = mapped_column(default=0)  # delivered + soft + hard bounced
    delivered: Mapped[int] = mapped_column(default=0)
    soft_bounced: Mapped[int] = mapped_column(default=0)
    hard_bounced: Mapped[int] = mapped_column(default=0)
    viewed: Mapped[int] = mapped_column(default=0)
    human_viewed: Mapped[int] = mapped_column(default=0)
    clicked: Mapped[int] = mapped_column(default=0)
    human_clicked: Mapped[int] = mapped_column(default=0)
    unsubscribed: Mapped[int] = mapped_column(default=0)
    global_unsubscribed: Mapped[int] = mapped_column(default=0)


class SendCounter(MessageCounts, AccountOwned, Base):
    """One campaign send's numbers (drip messages, test emails and previews are not in it)."""

    __tablename__ = "send_counters"

    send_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("campaign_mailing_sends.id", ondelete="CASCADE"), primary_key=True
    )
    campaign_mailing_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("campaign_mailings.id", ondelete="CASCADE"), index=True
    )


class DripEmailCounter(MessageCounts, AccountOwned, Base):
    """The numbers of one email node of a drip campaign."""

    __tablename__ = "drip_email_counters"

    drip_campaign_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("drip_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    drip_node_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class LinkCounter(AccountOwned, Base):
    """The clicks on one link of a campaign send: one per (html_id, address) of its HTML."""

    __tablename__ = "link_counters"

    send_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("campaign_mailing_sends.id", ondelete="CASCADE"), primary_key=True
    )
    html_id: Mapped[int] = mapped_column(primary_key=True)
    # The address's SHA-256: addresses can be longer than an index entry may be.
    url_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_url: Mapped[str] = mapped_column(Text)
    clicked: Mapped[int] = mapped_column(default=0)  # distinct recipients
    human_clicked: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)  # every click event


class SubscriberCounter(AccountOwned, Base):
    """One subscriber's campaign and drip messages: what `with_stats` shows."""

    __tablename__ = "subscriber_counters"

    subscriber_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    sent: Mapped[int] = mapped_column(default=0)  # delivered + soft + hard bounced
    delivered: Mapped[int] = mapped_column(default=0)
    soft_bounced: Mapped[int] = mapped_column(default=0)
    hard_bounced: Mapped[int] = mapped_column(default=0)
    viewed: Mapped[int] = mapped_column(default=0)
    clicked: Mapped[int] = mapped_column(default=0)


class DailyCounter(Base):
    """One account's campaign and drip messages on one UTC day: the overview's chart and its
    30-day bounce rate read at most 31 of these rows, never the deliveries.

    A message counts on the day it was answered for good (`sent`, `delivered`, bounces) and,
    separately, on the day it was first opened or clicked; so a day's opens may belong to
    messages sent on an earlier day."""

    __tablename__ = "daily_counters"

    account_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    sent: Mapped[int] = mapped_column(BigInteger, default=0)  # delivered + soft + hard bounced
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    soft_bounced: Mapped[int] = mapped_column(BigInteger, default=0)
    hard_bounced: Mapped[int] = mapped_column(BigInteger, default=0)
    viewed: Mapped[int] = mapped_column(BigInteger, default=0)  # first opens (a click counts)
    clicked: Mapped[int] = mapped_column(BigInteger, default=0)  # first clicks
    unsubscribed: Mapped[int] = mapped_column(BigInteger, default=0)
