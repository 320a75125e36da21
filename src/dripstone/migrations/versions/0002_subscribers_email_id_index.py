"""Index subscribers by (account_id, email, id) on PostgreSQL, for paging sorted by email.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 03:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_subscribers_account_email_id", "subscribers", ["account_id", "email", "id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_subscribers_account_email_id", table_name="subscribers")
