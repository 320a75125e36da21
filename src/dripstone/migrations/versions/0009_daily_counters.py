"""Campaign and drip messages per account and UTC day, for the overview's chart and its
30-day bounce rate. Filled from the delivery rows already there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:30:00.000000
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COUNTS = ("sent", "delivered", "soft_bounced", "hard_bounced", "viewed", "clicked", "unsubscribed")


def upgrade() -> None:
    op.create_table(
        "daily_counters",
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_daily_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_daily_counters")),
    )
    _fill(op.get_bind())


def _fill(connection: sa.Connection) -> None:
    """The days of the campaign and drip messages sent so far (as `counters.rebuild` counts
    them; written out here so that the migration does not change when the code does)."""
    deliveries = sa.table(
        "deliveries",
        *(sa.column(name) for name in ("account_id", "kind", "status", "finished_at", "opened_at")),
        sa.column("clicked_at"),
        sa.column("unsubscribed_at"),
    )
    c = deliveries.c
    ours = c.kind.in_(["campaign", "drip"])
    rows: dict[tuple[int, str], dict[str, int]] = {}

    def add(account_id: int, on: object, counts: dict[str, int]) -> None:
        entry = rows.setdefault((account_id, str(on)[:10]), dict.fromkeys(COUNTS, 0))
        for name, n in counts.items():
            entry[name] += int(n or 0)

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    finished = sa.func.date(c.finished_at)
    for account_id, on, delivered, soft, hard in connection.execute(
        sa.select(
            c.account_id,
            finished,
            count_if(c.status == "delivered"),
            count_if(c.status == "soft_bounced"),
            count_if(c.status == "hard_bounced"),
        )
        .where(ours, c.finished_at.is_not(None))
        .group_by(c.account_id, finished)
    ):
        add(
            account_id,
            on,
            {
                "sent": delivered + soft + hard,
                "delivered": delivered,
                "soft_bounced": soft,
                "hard_bounced": hard,
            },
        )
    for column, name in (
        (c.opened_at, "viewed"),
        (c.clicked_at, "clicked"),
        (c.unsubscribed_at, "unsubscribed"),
    ):
        on_day = sa.func.date(column)
        for account_id, on, n in connection.execute(
            sa.select(c.account_id, on_day, sa.func.count())
            .where(ours, column.is_not(None))
            .group_by(c.account_id, on_day)
        ):
            add(account_id, on, {name: n})
    table = sa.table(
        "daily_counters",
        sa.column("account_id"),
        sa.column("day", sa.Date()),
        *(sa.column(name) for name in COUNTS),
    )
    values = [
        {"account_id": account_id, "day": date.fromisoformat(on), **counts}
        for (account_id, on), counts in sorted(rows.items())
    ]
    for start in range(0, len(values), 1000):
        connection.execute(sa.insert(table), values[start : start + 1000])


def downgrade() -> None:
    op.drop_table("daily_counters")
