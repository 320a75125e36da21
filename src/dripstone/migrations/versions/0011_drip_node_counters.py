"""Kept per-node counts of each drip campaign (entered, waiting, exited), so that its page
can poll them on a million enrollments. Filled from the enrollments and visits there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COUNTS = ("entered", "waiting", "exited")


def upgrade() -> None:
    op.create_table(
        "drip_node_counters",
        sa.Column("drip_campaign_id", BIG_ID, nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        sa.ForeignKeyConstraint(
            ["drip_campaign_id"],
            ["drip_campaigns.id"],
            name=op.f("fk_drip_node_counters_drip_campaign_id_drip_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("drip_campaign_id", "node_id", name=op.f("pk_drip_node_counters")),
    )
    _fill(op.get_bind())


def _fill(connection: sa.Connection) -> None:
    """The counts so far (as `drips.counters.recount` counts them; written out here so that
    the migration does not change when the code does)."""
    visits = sa.table("drip_node_visits", sa.column("drip_campaign_id"), sa.column("node_id"))
    enrollments = sa.table(
        "drip_enrollments", sa.column("drip_campaign_id"), sa.column("node_id"), sa.column("state")
    )
    rows: dict[tuple[int, str], dict[str, int]] = {}

    def add(campaign_id: int, node_id: str, name: str, n: int) -> None:
        rows.setdefault((campaign_id, node_id), dict.fromkeys(COUNTS, 0))[name] += int(n)

    v = visits.c
    for campaign_id, node_id, n in connection.execute(
        sa.select(v.drip_campaign_id, v.node_id, sa.func.count()).group_by(
            v.drip_campaign_id, v.node_id
        )
    ):
        add(campaign_id, node_id, "entered", n)
    e = enrollments.c
    for campaign_id, node_id, state, n in connection.execute(
        sa.select(e.drip_campaign_id, e.node_id, e.state, sa.func.count())
        .where(e.state.in_(["active", "exited"]))
        .group_by(e.drip_campaign_id, e.node_id, e.state)
    ):
        add(campaign_id, node_id, "waiting" if state == "active" else "exited", n)
    table = sa.table(
        "drip_node_counters",
        sa.column("drip_campaign_id"),
        sa.column("node_id"),
        *(sa.column(name) for name in COUNTS),
    )
    values = [
        {"drip_campaign_id": campaign_id, "node_id": node_id, **counts}
        for (campaign_id, node_id), counts in sorted(rows.items())
    ]
    for start in range(0, len(values), 1000):
        connection.execute(sa.insert(table), values[start : start + 1000])


def downgrade() -> None:
    op.drop_table("drip_node_counters")
