"""Campaign mailings and sends, deliveries, suppressions, tracking events; scheduled jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:27:43.494310
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_mailings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("default_subject", sa.String(length=998), nullable=True),
        sa.Column("from_email", sa.String(length=320), nullable=True),
        sa.Column("from_name", sa.String(length=255), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("html_part", sa.Text(), nullable=True),
        sa.Column("text_part", sa.Text(), nullable=True),
        sa.Column("form_data", sa.JSON(), nullable=True),
        sa.Column("image_data", sa.JSON(), nullable=True),
        sa.Column("template_type", sa.String(length=32), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_campaign_mailings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_mailings")),
        sa.UniqueConstraint(
            "account_id", "subject", name=op.f("uq_campaign_mailings_account_id_subject")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_campaign_mailings_uuid")),
    )
    with op.batch_alter_table("campaign_mailings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_mailings_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "campaign_mailing_sends",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "campaign_mailing_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "subscription_list_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "dynamic_list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("list_name", sa.String(length=255), nullable=False),
        sa.Column("sender_email", sa.String(length=320), nullable=False),
        sa.Column("customer_name", sa.String(length=255), nullable=True),
        sa.Column("from_email", sa.String(length=320), nullable=False),
        sa.Column("from_name", sa.String(length=255), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("html_part", sa.Text(), nullable=True),
        sa.Column("text_part", sa.Text(), nullable=True),
        sa.Column("recipient_emails", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("send_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_campaign_mailing_sends_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_mailing_id"],
            ["campaign_mailings.id"],
            name=op.f("fk_campaign_mailing_sends_campaign_mailing_id_campaign_mailings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dynamic_list_id"],
            ["dynamic_lists.id"],
            name=op.f("fk_campaign_mailing_sends_dynamic_list_id_dynamic_lists"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_campaign_mailing_sends_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_list_id"],
            ["subscription_lists.id"],
            name=op.f("fk_campaign_mailing_sends_subscription_list_id_subscription_lists"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_mailing_sends")),
        sa.UniqueConstraint("job_id", name=op.f("uq_campaign_mailing_sends_job_id")),
        sa.UniqueConstraint("uuid", name=op.f("uq_campaign_mailing_sends_uuid")),
    )
    with op.batch_alter_table("campaign_mailing_sends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_mailing_sends_account_created", ["account_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_campaign_mailing_sends_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_campaign_mailing_sends_campaign_mailing_id"),
            ["campaign_mailing_id"],
            unique=False,
        )

    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "campaign_mailing_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "subscription_list_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("tracked", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("clicked_at", sa.DateTime(), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(), nullable=True),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_deliveries_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_mailing_id"],
            ["campaign_mailings.id"],
            name=op.f("fk_deliveries_campaign_mailing_id_campaign_mailings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["campaign_mailing_sends.id"],
            name=op.f("fk_deliveries_send_id_campaign_mailing_sends"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_deliveries_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_list_id"],
            ["subscription_lists.id"],
            name=op.f("fk_deliveries_subscription_list_id_subscription_lists"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "send_id", "subscriber_id", name=op.f("uq_deliveries_send_id_subscriber_id")
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            "ix_deliveries_mailing_status", ["campaign_mailing_id", "status"], unique=False
        )
        batch_op.create_index("ix_deliveries_send_status", ["send_id", "status"], unique=False)
        batch_op.create_index(
            "ix_deliveries_status_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deliveries_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "suppressions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_suppressions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_suppressions_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("account_id", "email", name=op.f("uq_suppressions_account_id_email")),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_suppressions_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "tracking_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("html_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tracking_events_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_tracking_events_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_tracking_events_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
    )
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracking_events_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_tracking_events_delivery_kind", ["delivery_id", "kind"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tracking_events_subscriber_id"), ["subscriber_id"], unique=False
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("not_before")

    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_events_subscriber_id"))
        batch_op.drop_index("ix_tracking_events_delivery_kind")
        batch_op.drop_index(batch_op.f("ix_tracking_events_account_id"))

    op.drop_table("tracking_events")
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_account_id"))

    op.drop_table("suppressions")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_subscriber_id"))
        batch_op.drop_index("ix_deliveries_status_due")
        batch_op.drop_index("ix_deliveries_send_status")
        batch_op.drop_index("ix_deliveries_mailing_status")
        batch_op.drop_index(batch_op.f("ix_deliveries_account_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("campaign_mailing_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_mailing_sends_campaign_mailing_id"))
        batch_op.drop_index(batch_op.f("ix_campaign_mailing_sends_account_id"))
        batch_op.drop_index("ix_campaign_mailing_sends_account_created")

    op.drop_table("campaign_mailing_sends")
    with op.batch_alter_table("campaign_mailings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_mailings_account_id"))

    op.drop_table("campaign_mailings")
