"""Recording changes and reading them back, newest first, one account at a time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dripstone.audit.models import AuditEvent
from dripstone.db import AccountScope, Database
from dripstone.wire import is_uuid

MAX_OBJECT_IDS = 100  # of one list in one event; a bulk answer names its job, not its rows


@dataclass(frozen=True)
class Actor:
    """Who made a change: an API key (`label` its prefix), later a dashboard user."""

    account_id: int
    type: str
    id: int
    label: str


@dataclass(frozen=True)
class Change:
    actor: Actor
    action: str  # method and route template: "PUT /subscribers/{id}"
    status: int
    object_ids: Mapping[str, str | list[str]] = field(default_factory=dict)
    request_id: str | None = None


def only_ids(named: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """The values of `named` that are public ids (UUIDs), or lists of them: nothing else can
    reach the log, so no address, name or text written by someone ever does."""
    kept: dict[str, str | list[str]] = {}
    for name, value in named.items():
        if isinstance(value, str) and is_uuid(value):
            kept[name] = value.lower()
        elif isinstance(value, list):
            ids = [v.lower() for v in value if isinstance(v, str) and is_uuid(v)]
            if ids:
                kept[name] = ids[:MAX_OBJECT_IDS]
    return kept


def record(database: Database, change: Change) -> None:
    """Write one event in a transaction of its own."""
    with database.transaction() as session:
        session.add(
            AuditEvent(
                account_id=change.actor.account_id,
                actor_type=change.actor.type,
                actor_id=change.actor.id,
                actor_label=change.actor.label,
                action=change.action[:160],
                object_ids=json.dumps(only_ids(change.object_ids), sort_keys=True),
                status=change.status,
                request_id=change.request_id,
            )
        )


@dataclass(frozen=True)
class Event:
    id: str
    occurred_at: datetime
    actor_type: str
    actor: str
    action: str
    object_ids: dict[str, str | list[str]]
    status: int
    request_id: str | None


def list_events(scope: AccountScope, *, items: int, page: int) -> list[Event]:
    """The account's events, newest first."""
    stmt = (
        scope.select(AuditEvent)
        .order_by(AuditEvent.id.desc())
        .limit(items)
        .offset((page - 1) * items)
    )
    return [_event(row) for row in scope.session.scalars(stmt)]


def events_before(
    scope: AccountScope, *, before: int | None, items: int
) -> tuple[list[Event], int | None]:
    """The account's events older than the one with internal id `before` (all, if None),
    newest first; and the `before` of the next page (None on the last). Keyset paging, so
    an old page costs what the first does."""
    stmt = scope.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(items + 1)
    if before is not None:
        stmt = stmt.where(AuditEvent.id < before)
    rows = list(scope.session.scalars(stmt))
    more = len(rows) > items
    rows = rows[:items]
    return [_event(row) for row in rows], rows[-1].id if more and rows else None


def _event(row: AuditEvent) -> Event:
    return Event(
        id=row.uuid,
        occurred_at=row.occurred_at,
        actor_type=row.actor_type,
        actor=row.actor_label,
        action=row.action,
        object_ids=json.loads(row.object_ids),
        status=row.status,
        request_id=row.request_id,
    )
