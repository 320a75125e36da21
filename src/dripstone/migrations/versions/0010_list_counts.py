"""Every list's counts, kept as subscriptions change: its members and how many of them a
send reaches. Filled from the rows already there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# As `counts.fresh` counts (written out here so that the migration does not change when the
# code does): a send reaches a subscriber with an address, not opted out, not suppressed.
_FILL = """
INSERT INTO subscription_list_counts (subscription_list_id, account_id, members, reachable)
SELECT l.id, l.account_id,
    CASE WHEN l.is_default
        THEN (SELECT count(*) FROM subscribers s WHERE s.account_id = l.account_id)
        ELSE (SELECT count(*) FROM subscriptions m
              WHERE m.subscription_list_id = l.id AND m.unsubscribed_at IS NULL) END,
    CASE WHEN l.is_default
        THEN (SELECT count(*) FROM subscribers s WHERE s.account_id = l.account_id
              AND s.email IS NOT NULL AND s.opted_out_on IS NULL AND NOT EXISTS (
                  SELECT 1 FROM suppressions x
                  WHERE x.account_id = s.account_id AND x.email = s.email))
        ELSE (SELECT count(*) FROM subscriptions m JOIN subscribers s ON s.id = m.subscriber_id
              WHERE m.subscription_list_id = l.id AND m.unsubscribed_at IS NULL
              AND s.email IS NOT NULL AND s.opted_out_on IS NULL AND NOT EXISTS (
                  SELECT 1 FROM suppressions x
                  WHERE x.account_id = s.account_id AND x.email = s.email)) END
FROM subscription_lists l
"""


def upgrade() -> None:
    op.create_table(
        "subscription_list_counts",
        sa.Column("subscription_list_id", BIG_ID, nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("reachable", sa.BigInteger(), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_subscription_list_counts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_list_id"],
            ["subscription_lists.id"],
            name=op.f("fk_subscription_list_counts_subscription_list_id_subscription_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_list_id", name=op.f("pk_subscription_list_counts")),
    )
    op.create_index(
        op.f("ix_subscription_list_counts_account_id"),
        "subscription_list_counts",
        ["account_id"],
        unique=False,
    )
    op.execute(_FILL)


def downgrade() -> None:
    op.drop_index(
        op.f("ix_subscription_list_counts_account_id"), table_name="subscription_list_counts"
    )
    op.drop_table("subscription_list_counts")
