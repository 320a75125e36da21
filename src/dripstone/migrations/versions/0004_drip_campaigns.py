"""Drip campaigns, enrollments and node visits; deliveries of drip steps.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 04:43:20.455122
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drip_campaigns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "subscription_list_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("start_trigger", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("nodes", sa.Text(), nullable=False),
        sa.Column("tree_blob", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column(
            "enroll_events_after",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_drip_campaigns_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_list_id"],
            ["subscription_lists.id"],
            name=op.f("fk_drip_campaigns_subscription_list_id_subscription_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drip_campaigns")),
        sa.UniqueConstraint("uuid", name=op.f("uq_drip_campaigns_uuid")),
    )
    with op.batch_alter_table("drip_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drip_campaigns_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_drip_campaigns_subscription_list_id"),
            ["subscription_list_id"],
            unique=False,
        )

    op.create_table(
        "drip_enrollments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "drip_campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("arrived_at", sa.DateTime(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("exit_reason", sa.String(length=255), nullable=True),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_drip_enrollments_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["drip_campaign_id"],
            ["drip_campaigns.id"],
            name=op.f("fk_drip_enrollments_drip_campaign_id_drip_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_drip_enrollments_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drip_enrollments")),
        sa.UniqueConstraint(
            "drip_campaign_id",
            "subscriber_id",
            name=op.f("uq_drip_enrollments_drip_campaign_id_subscriber_id"),
        ),
    )
    with op.batch_alter_table("drip_enrollments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drip_enrollments_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_drip_enrollments_campaign_state_node",
            ["drip_campaign_id", "state", "node_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_drip_enrollments_due",
            ["next_run_at"],
            unique=False,
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )
        batch_op.create_index(
            batch_op.f("ix_drip_enrollments_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "drip_node_visits",
        sa.Column(
            "enrollment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column(
            "drip_campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["drip_campaign_id"],
            ["drip_campaigns.id"],
            name=op.f("fk_drip_node_visits_drip_campaign_id_drip_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["drip_enrollments.id"],
            name=op.f("fk_drip_node_visits_enrollment_id_drip_enrollments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enrollment_id", "node_id", name=op.f("pk_drip_node_visits")),
    )
    with op.batch_alter_table("drip_node_visits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drip_node_visits_drip_campaign_id"), ["drip_campaign_id"], unique=False
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "drip_enrollment_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("drip_node_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.String(length=998), nullable=True))
        batch_op.add_column(sa.Column("from_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("from_name", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_deliveries_drip_enrollment_id_drip_node_id"),
            ["drip_enrollment_id", "drip_node_id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_drip_enrollment_id_drip_enrollments"),
            "drip_enrollments",
            ["drip_enrollment_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_drip_enrollment_id_drip_enrollments"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("uq_deliveries_drip_enrollment_id_drip_node_id"), type_="unique"
        )
        batch_op.drop_column("from_name")
        batch_op.drop_column("from_email")
        batch_op.drop_column("subject")
        batch_op.drop_column("drip_node_id")
        batch_op.drop_column("drip_enrollment_id")

    with op.batch_alter_table("drip_node_visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drip_node_visits_drip_campaign_id"))

    op.drop_table("drip_node_visits")
    with op.batch_alter_table("drip_enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drip_enrollments_subscriber_id"))
        batch_op.drop_index(
            "ix_drip_enrollments_due",
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )
        batch_op.drop_index("ix_drip_enrollments_campaign_state_node")
        batch_op.drop_index(batch_op.f("ix_drip_enrollments_account_id"))

    op.drop_table("drip_enrollments")
    with op.batch_alter_table("drip_campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drip_campaigns_subscription_list_id"))
        batch_op.drop_index(batch_op.f("ix_drip_campaigns_account_id"))

    op.drop_table("drip_campaigns")
