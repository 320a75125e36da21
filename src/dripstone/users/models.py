"""Tables of the users domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

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
