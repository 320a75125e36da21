"""Analytics counters per campaign send, per link of a send, per drip email node and per
subscriber; what is known of each open and click; the first human open and click of each
delivery.

Existing opens and clicks were recorded before people were told from machines: they are
kept as people's, as they were counted until now, and the counters start from the rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:58:23.876221
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drip_email_counters",
        sa.Column(
            "drip_campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("drip_node_id", sa.String(length=64), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("soft_bounced", sa.Integer(), nullable=False),
        sa.Column("hard_bounced", sa.Integer(), nullable=False),
        sa.Column("viewed", sa.Integer(), nullable=False),
        sa.Column("human_viewed", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("human_clicked", sa.Integer(), nullable=False),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("global_unsubscribed", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_drip_email_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["drip_campaign_id"],
            ["drip_campaigns.id"],
            name=op.f("fk_drip_email_counters_drip_campaign_id_drip_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "drip_campaign_id", "drip_node_id", name=op.f("pk_drip_email_counters")
        ),
    )
    with op.batch_alter_table("drip_email_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drip_email_counters_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "link_counters",
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("html_id", sa.Integer(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("human_clicked", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_link_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["campaign_mailing_sends.id"],
            name=op.f("fk_link_counters_send_id_campaign_mailing_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("send_id", "html_id", "url_hash", name=op.f("pk_link_counters")),
    )
    with op.batch_alter_table("link_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_link_counters_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "send_counters",
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_mailing_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("soft_bounced", sa.Integer(), nullable=False),
        sa.Column("hard_bounced", sa.Integer(), nullable=False),
        sa.Column("viewed", sa.Integer(), nullable=False),
        sa.Column("human_viewed", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("human_clicked", sa.Integer(), nullable=False),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("global_unsubscribed", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_send_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_mailing_id"],
            ["campaign_mailings.id"],
            name=op.f("fk_send_counters_campaign_mailing_id_campaign_mailings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["campaign_mailing_sends.id"],
            name=op.f("fk_send_counters_send_id_campaign_mailing_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("send_id", name=op.f("pk_send_counters")),
    )
    with op.batch_alter_table("send_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_send_counters_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_send_counters_campaign_mailing_id"),
            ["campaign_mailing_id"],
            unique=False,
        )

    op.create_table(
        "subscriber_counters",
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("soft_bounced", sa.Integer(), nullable=False),
        sa.Column("hard_bounced", sa.Integer(), nullable=False),
        sa.Column("viewed", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_subscriber_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_counters_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_subscriber_counters")),
    )
    with op.batch_alter_table("subscriber_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriber_counters_account_id"), ["account_id"], unique=False
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("human_opened_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("human_clicked_at", sa.DateTime(), nullable=True))

    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_agent", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("proxy", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("seconds_after_send", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("machine", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("machine_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("all_mail", sa.Boolean(), nullable=True))

    _backfill()


_MESSAGE_COUNTS = """
    SUM(CASE WHEN d.status IN ('delivered', 'soft_bounced', 'hard_bounced') THEN 1 ELSE 0 END),
    SUM(CASE WHEN d.status = 'delivered' THEN 1 ELSE 0 END),
    SUM(CASE WHEN d.status = 'soft_bounced' THEN 1 ELSE 0 END),
    SUM(CASE WHEN d.status = 'hard_bounced' THEN 1 ELSE 0 END),
    COUNT(d.opened_at), COUNT(d.opened_at), COUNT(d.clicked_at), COUNT(d.clicked_at),
    COUNT(d.unsubscribed_at),
    SUM(CASE WHEN d.unsubscribed_at IS NOT NULL AND (d.subscription_list_id IS NULL
        OR d.subscription_list_id IN (SELECT id FROM subscription_lists WHERE is_default))
        THEN 1 ELSE 0 END)
"""
_COUNT_COLUMNS = (
    "sent, delivered, soft_bounced, hard_bounced, viewed, human_viewed, clicked, "
    "human_clicked, unsubscribed, global_unsubscribed"
)


def _backfill() -> None:
    op.execute("UPDATE deliveries SET human_opened_at = opened_at, human_clicked_at = clicked_at")
    deliveries = sa.table("deliveries", sa.column("id"), sa.column("subscription_list_id"))
    lists = sa.table("subscription_lists", sa.column("id"), sa.column("is_default", sa.Boolean))
    events = sa.table(
        "tracking_events",
        sa.column("delivery_id"),
        sa.column("kind"),
        sa.column("machine", sa.Boolean),
        sa.column("all_mail", sa.Boolean),
    )
    op.execute(events.update().where(events.c.kind != "unsubscribe").values(machine=False))
    to_all_mail = sa.select(deliveries.c.id).where(
        sa.or_(
            deliveries.c.subscription_list_id.is_(None),
            deliveries.c.subscription_list_id.in_(
                sa.select(lists.c.id).where(lists.c.is_default.is_(True))
            ),
        )
    )
    op.execute(
        events.update()
        .where(events.c.kind == "unsubscribe")
        .values(all_mail=events.c.delivery_id.in_(to_all_mail))
    )
    op.execute(
        # Only this module's constants are formatted in.
        f"INSERT INTO send_counters (send_id, account_id, campaign_mailing_id, {_COUNT_COLUMNS}) "  # noqa: S608
        f"SELECT d.send_id, d.account_id, d.campaign_mailing_id, {_MESSAGE_COUNTS} "
        "FROM deliveries d WHERE d.kind = 'campaign' AND d.send_id IS NOT NULL "
        "GROUP BY d.send_id, d.account_id, d.campaign_mailing_id"
    )
    op.execute(
        "INSERT INTO drip_email_counters (drip_campaign_id, drip_node_id, account_id, "  # noqa: S608
        f"{_COUNT_COLUMNS}) SELECT e.drip_campaign_id, d.drip_node_id, d.account_id, "
        f"{_MESSAGE_COUNTS} FROM deliveries d JOIN drip_enrollments e "
        "ON e.id = d.drip_enrollment_id WHERE d.kind = 'drip' AND d.drip_node_id IS NOT NULL "
        "GROUP BY e.drip_campaign_id, d.drip_node_id, d.account_id"
    )
    op.execute(
        "INSERT INTO subscriber_counters (subscriber_id, account_id, sent, delivered, "
        "soft_bounced, hard_bounced, viewed, clicked) SELECT d.subscriber_id, d.account_id, "
        "SUM(CASE WHEN d.status IN ('delivered', 'soft_bounced', 'hard_bounced') "
        "THEN 1 ELSE 0 END), SUM(CASE WHEN d.status = 'delivered' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.status = 'soft_bounced' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.status = 'hard_bounced' THEN 1 ELSE 0 END), "
        "COUNT(d.opened_at), COUNT(d.clicked_at) FROM deliveries d "
        "WHERE d.kind IN ('campaign', 'drip') AND d.subscriber_id IS NOT NULL "
        "GROUP BY d.subscriber_id, d.account_id"
    )
    links = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT d.send_id, d.account_id, COALESCE(t.html_id, 0) AS html_id, "
                "COALESCE(t.url, '') AS url, COUNT(DISTINCT t.delivery_id) AS clicked, "
                "COUNT(*) AS clicks FROM tracking_events t "
                "JOIN deliveries d ON d.id = t.delivery_id "
                "WHERE t.kind = 'click' AND d.kind = 'campaign' AND d.send_id IS NOT NULL "
                "GROUP BY d.send_id, d.account_id, COALESCE(t.html_id, 0), COALESCE(t.url, '')"
            )
        )
        .all()
    )
    counters = sa.table(
        "link_counters",
        *(
            sa.column(name)
            for name in (
                "send_id",
                "account_id",
                "html_id",
                "url_hash",
                "target_url",
                "clicked",
                "human_clicked",
                "clicks",
            )
        ),
    )
    rows = [
        {
            "send_id": r.send_id,
            "account_id": r.account_id,
            "html_id": r.html_id,
            "url_hash": hashlib.sha256(r.url.encode()).hexdigest(),
            "target_url": r.url,
            "clicked": r.clicked,
            "human_clicked": r.clicked,
            "clicks": r.clicks,
        }
        for r in links
    ]
    if rows:
        op.bulk_insert(counters, rows)


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+, PostgreSQL), not a batch copy: on SQLite the
    # copy drops the old deliveries table, whose ON DELETE CASCADE would empty tracking_events.
    for table, columns in (
        (
            "tracking_events",
            ("all_mail", "machine_reason", "machine", "seconds_after_send", "proxy", "user_agent"),
        ),
        ("deliveries", ("human_clicked_at", "human_opened_at")),
    ):
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")

    with op.batch_alter_table("send_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_counters_campaign_mailing_id"))
        batch_op.drop_index(batch_op.f("ix_send_counters_account_id"))

    op.drop_table("send_counters")
    with op.batch_alter_table("subscriber_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_counters_account_id"))

    op.drop_table("subscriber_counters")
    with op.batch_alter_table("link_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_counters_account_id"))

    op.drop_table("link_counters")
    with op.batch_alter_table("drip_email_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drip_email_counters_account_id"))

    op.drop_table("drip_email_counters")
