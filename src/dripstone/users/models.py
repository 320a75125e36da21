"""Tables of the users domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dripstone import clock
from dripstone.db import AccountOwned, Base, BigIntId, PublicId, Timestamps


class Role(StrEnum):
    OWNER = "owner"  # everything, users and API keys included
    EDITOR = "editor"  # lists, subscribers, mailings, sends, drips
    VIEWER = "viewer"  # reads only


class User(PublicId, AccountOwned, Timestamps, Base):
    """A person of one account. `email` is unique across the installation, lower-cased."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    # Sessions issued before this instant are no longer valid ("sign out everywhere").
    sessions_revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)


class SignInFailure(Base):
    """One refused sign-in, counted against its address and its client's IP for a while.
    `key` is a SHA-256 of "email:ADDRESS" or "ip:ADDRESS": no address is kept in clear."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=clock.now)
