"""Tables of the audit domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dripstone import clock
from dripstone.db import AccountOwned, Base, BigIntId, PublicId


class AuditEvent(PublicId, AccountOwned, Base):
    """One change. Holds ids only, never contact data: `object_ids` maps a path parameter or
    an id field of the answer to the public id it named."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # Indexed by (account_id, id) above: the log is read newest first, one account at a time.
    account_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("accounts.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now)
    actor_type: Mapped[str] = mapped_column(String(16))  # "api_key" (later "user")
    actor_id: Mapped[int] = mapped_column(BigIntId)
    actor_label: Mapped[str] = mapped_column(String(64))  # a key's prefix, a user's id
    action: Mapped[str] = mapped_column(String(160))  # "PUT /subscribers/{id}"
    object_ids: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    status: Mapped[int]
    request_id: Mapped[str | None] = mapped_column(String(64))
