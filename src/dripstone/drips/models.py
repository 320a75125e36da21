"""Tables of the drips domain: campaigns, the enrollments that carry subscribers along
them, and the record of which nodes each enrollment entered."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId, PublicId, Timestamps


class DripState(StrEnum):
    """draft → started (start) ⇄ paused (pause / start again)."""

    DRAFT = "draft"
    STARTED = "started"
    PAUSED = "paused"


class StartTrigger(StrEnum):
    EXISTING = "existing"  # the list's members when the campaign first starts
    SUBSCRIPTION = "subscription"  # whoever joins the list after that
    BOTH = "both"


class EnrollmentState(StrEnum):
    ACTIVE = "active"  # at a node, to be looked at again at next_run_at
    COMPLETED = "completed"  # reached an end
    EXITED = "exited"  # left early, or set aside: exit_reason says why


class DripCampaign(PublicId, AccountOwned, Timestamps, Base):
    """A graph of steps, started for the members of one list."""

    __tablename__ = "drip_campaigns"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    subscription_list_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("subscription_lists.id", ondelete="CASCADE"), index=True
    )
    start_trigger: Mapped[str] = mapped_column(String(16))  # a StartTrigger
    state: Mapped[str] = mapped_column(String(16), default=DripState.DRAFT.value)  # a DripState
    nodes: Mapped[str] = mapped_column(Text)  # the graph, canonical JSON
    tree_blob: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    # Members whose subscription event comes after this one joined after the first start:
    # the subscription trigger enrolls them.
    enroll_events_after: Mapped[int] = mapped_column(BigIntId, default=0)
    deleted_at: Mapped[datetime | None]  # deleted campaigns keep their history for analytics


class DripEnrollment(AccountOwned, Base):
    """One subscriber's way through one campaign: at most one per (campaign, subscriber).

    state: active (at `node_id` since `arrived_at`, next looked at `next_run_at`), completed
    (reached an end) or exited (left early: `exit_reason` says why).
    """

    __tablename__ = "drip_enrollments"
    __table_args__ = (
        UniqueConstraint("drip_campaign_id", "subscriber_id"),
        Index(
            "ix_drip_enrollments_due",
            "next_run_at",
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        Index("ix_drip_enrollments_campaign_state_node", "drip_campaign_id", "state", "node_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    drip_campaign_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("drip_campaigns.id", ondelete="CASCADE")
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="active")
    node_id: Mapped[str] = mapped_column(String(64))
    arrived_at: Mapped[datetime]
    next_run_at: Mapped[datetime]
    enrolled_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(255))


class DripNodeVisit(Base):
    """An enrollment entered a node. The key makes a second entry impossible."""

    __tablename__ = "drip_node_visits"

    enrollment_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("drip_enrollments.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    drip_campaign_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("drip_campaigns.id", ondelete="CASCADE"), index=True
    )
    entered_at: Mapped[datetime]


class DripNodeCounter(Base):
    """Kept counts of one node of a campaign, moved in the transaction that moves its
    enrollments: visits recorded there (`entered`), active enrollments there (`waiting`),
    and enrollments that left the campaign there early (`exited`)."""

    __tablename__ = "drip_node_counters"

    drip_campaign_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("drip_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entered: Mapped[int] = mapped_column(BigInteger, default=0)
    waiting: Mapped[int] = mapped_column(BigInteger, default=0)
    exited: Mapped[int] = mapped_column(BigInteger, default=0)
