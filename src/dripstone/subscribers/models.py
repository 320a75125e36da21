"""Tables of the subscribers domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from dripstone import clock
from dripstone.db import AccountOwned, Base, BigIntId, PublicId, Timestamps


class Subscriber(PublicId, AccountOwned, Timestamps, Base):
    """A contact. Every subscriber is implicitly on the account's default list."""

    __tablename__ = "subscribers"
    __table_args__ = (
        UniqueConstraint("account_id", "email"),
        Index("ix_subscribers_account_created", "account_id", "created_at", "id"),
        Index("ix_subscribers_account_updated", "account_id", "updated_at", "id"),
        Index("ix_subscribers_account_first_name", "account_id", "first_name", "id"),
        Index("ix_subscribers_account_last_name", "account_id", "last_name", "id"),
        # SQLite's unique index above already carries the rowid for the id tie-break;
        # PostgreSQL's does not, and without this deep pages sorted by email visit the table.
        Index("ix_subscribers_account_email_id", "account_id", "email", "id").ddl_if(
            dialect="postgresql"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # No index of its own: the composite indexes above all lead with it.
    account_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    phone_number: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    opted_out_on: Mapped[datetime | None]


class SubscriptionList(PublicId, AccountOwned, Timestamps, Base):
    __tablename__ = "subscription_lists"
    __table_args__ = (
        UniqueConstraint("account_id", "name"),
        Index(
            "uq_subscription_lists_one_default",
            "account_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(default=False)
    form_id: Mapped[str | None] = mapped_column(String(64))


class ListCount(AccountOwned, Base):
    """A list's counts, kept as subscriptions change (see `counts`): its members (for the
    default list, every subscriber), and how many of them a send to the list reaches."""

    __tablename__ = "subscription_list_counts"

    subscription_list_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="CASCADE"), primary_key=True
    )
    members: Mapped[int] = mapped_column(BigInteger, default=0)
    reachable: Mapped[int] = mapped_column(BigInteger, default=0)


class DynamicList(PublicId, AccountOwned, Timestamps, Base):
    """A saved segment: the subscribers of a list that match a search and filters."""

    __tablename__ = "dynamic_lists"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    subscription_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="CASCADE")
    )
    search: Mapped[str] = mapped_column(String(255), default="*")
    filters: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Subscription(PublicId, AccountOwned, Timestamps, Base):
    """A subscriber's membership of a list; unsubscribing stamps it rather than deleting it."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscription_list_id", "subscriber_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    subscription_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="CASCADE")
    )
    dynamic_list_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("dynamic_lists.id", ondelete="CASCADE")
    )
    subscriber_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    unsubscribed_at: Mapped[datetime | None]
    delete_at: Mapped[datetime | None]


class CustomFieldType(PublicId, AccountOwned, Base):
    __tablename__ = "subscriber_custom_field_types"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class CustomFieldValue(Base):
    __tablename__ = "subscriber_custom_field_values"

    subscriber_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    field_type_id: Mapped[int] = mapped_column(
        BigIntId,
        ForeignKey("subscriber_custom_field_types.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    value: Mapped[str] = mapped_column(Text)


class SubscriptionEvent(AccountOwned, Base):
    """A subscriber joined a list. Written in the transaction that added them."""

    __tablename__ = "subscription_events"
    __table_args__ = (
        Index(
            "ix_subscription_events_unconsumed",
            "id",
            sqlite_where=text("consumed_at IS NULL"),
            postgresql_where=text("consumed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    subscription_list_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="CASCADE"), index=True
    )
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now)
    consumed_at: Mapped[datetime | None]
