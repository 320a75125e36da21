"""Per node of a drip campaign, the kept counts the campaign page polls: entered, waiting
and exited there. Every writer of enrollments and visits moves them in its own transaction
(`add`), so that they stay equal to a recount (`recount`) and read in one indexed lookup."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dripstone.drips.models import (
    DripEnrollment,
    DripNodeCounter,
    DripNodeVisit,
    EnrollmentState,
)

COUNTS = ("entered", "waiting", "exited")
Key = tuple[int, str]  # (campaign id, node id)


class Deltas:
    """Changes to counters, gathered over a batch and written with one statement."""

    def __init__(self) -> None:
        self.by_key: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))

    def move(self, campaign_id: int, node_id: str, name: str, n: int = 1) -> None:
        self.by_key[(campaign_id, node_id)][name] += n

    def left(self, campaign_id: int, node_id: str, state: str, n: int = 1) -> None:
        """`n` enrollments at `node_id` are in `state` now (they were not before)."""
        if state == EnrollmentState.ACTIVE:
            self.move(campaign_id, node_id, "waiting", n)
        elif state == EnrollmentState.EXITED:
            self.move(campaign_id, node_id, "exited", n)


def add(session: Session, deltas: Deltas) -> None:
    """Write `deltas`, creating missing counter rows; in key order, so that concurrent
    writers on PostgreSQL take the rows' locks in the same order and never deadlock."""
    rows = [
        {"drip_campaign_id": key[0], "node_id": key[1], **counts}
        for key, counts in sorted(deltas.by_key.items())
        if any(counts.values())
    ]
    if rows:
        session.execute(_upsert(session.get_bind().dialect.name), rows)


@functools.cache
def _upsert(dialect: str) -> Any:
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    table: Any = DripNodeCounter.__table__
    stmt = make(table)
    return stmt.on_conflict_do_update(
        index_elements=["drip_campaign_id", "node_id"],
        set_={name: table.c[name] + stmt.excluded[name] for name in COUNTS},
    )


def read(session: Session, campaign_id: int) -> dict[str, Mapping[str, int]]:
    """Node id -> its kept counts."""
    return {
        row.node_id: {name: getattr(row, name) for name in COUNTS}
        for row in session.scalars(
            select(DripNodeCounter).where(DripNodeCounter.drip_campaign_id == campaign_id)
        )
    }


def recount(session: Session, campaign_id: int) -> dict[str, Mapping[str, int]]:
    """The same counts, counted from the enrollments and visits (a full scan of both)."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for node_id, n in session.execute(
        select(DripNodeVisit.node_id, func.count())
        .where(DripNodeVisit.drip_campaign_id == campaign_id)
        .group_by(DripNodeVisit.node_id)
    ):
        found[node_id]["entered"] = n
    for node_id, state, n in session.execute(
        select(DripEnrollment.node_id, DripEnrollment.state, func.count())
        .where(
            DripEnrollment.drip_campaign_id == campaign_id,
            DripEnrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.EXITED]),
        )
        .group_by(DripEnrollment.node_id, DripEnrollment.state)
    ):
        found[node_id]["waiting" if state == EnrollmentState.ACTIVE else "exited"] = n
    return dict(found)
