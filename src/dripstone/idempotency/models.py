"""The table of idempotency keys and the answers they replay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dripstone.db import AccountOwned, Base, BigIntId


class IdempotentRequest(AccountOwned, Base):
    """One POST under one key: its fingerprint and, once it answered, the answer."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        Index("ix_idempotent_requests_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path, query and body: the same key for another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # None while the first request runs.
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
