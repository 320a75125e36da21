"""Claiming an idempotency key, keeping the answer, replaying it. No HTTP in here: the
middleware in `dripstone.app` calls these with plain values."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from dripstone import clock
from dripstone.db import Database, insert_ignoring_duplicates, locked
from dripstone.idempotency.models import IdempotentRequest

REPLAY_WINDOW = timedelta(hours=24)
# A first request that has not answered by then is taken for dead (its process was killed):
# the key may be used again.
ABANDONED_AFTER = timedelta(minutes=5)


class Claim(enum.Enum):
    FIRST = "first"  # run the request; then `keep` or `forget` its answer
    REPLAY = "replay"  # answer with the kept answer
    IN_PROGRESS = "in_progress"  # the first request with this key is still running
    OTHER_REQUEST = "other_request"  # the key was used for a different request


@dataclass(frozen=True)
class Answer:
    status_code: int
    content_type: str | None
    body: bytes


def claim(
    database: Database, account_id: int, key: str, fingerprint: str
) -> tuple[Claim, Answer | None]:
    """Take `key` for this request, or say why not (with the answer to replay)."""
    now = clock.now()
    with database.transaction() as session:
        found = session.scalars(
            locked(
                select(IdempotentRequest).where(
                    IdempotentRequest.account_id == account_id, IdempotentRequest.key == key
                ),
                "change",
            )
        ).one_or_none()
        expired = found is not None and found.created_at < now - REPLAY_WINDOW
        abandoned = (
            found is not None
            and found.status_code is None
            and found.created_at < now - ABANDONED_AFTER
        )
        if found is not None and (expired or abandoned):
            session.delete(found)
            session.flush()
            found = None
        if found is None:
            inserted = session.execute(
                insert_ignoring_duplicates(session, IdempotentRequest, "account_id", "key").values(
                    account_id=account_id, key=key, fingerprint=fingerprint, created_at=now
                ),
                execution_options={"preserve_rowcount": True},
            )
            if inserted.rowcount == 0:  # type: ignore[attr-defined]
                return Claim.IN_PROGRESS, None  # another request took it a moment ago
            return Claim.FIRST, None
        if found.fingerprint != fingerprint:
            return Claim.OTHER_REQUEST, None
        if found.status_code is None or found.body is None:
            return Claim.IN_PROGRESS, None
        return Claim.REPLAY, Answer(found.status_code, found.content_type, found.body)


def keep(database: Database, account_id: int, key: str, answer: Answer) -> None:
    """Keep the first request's answer for replays."""
    with database.transaction() as session:
        session.execute(
            update(IdempotentRequest)
            .where(IdempotentRequest.account_id == account_id, IdempotentRequest.key == key)
            .values(
                status_code=answer.status_code,
                content_type=answer.content_type,
                body=answer.body,
            )
        )


def forget(database: Database, account_id: int, key: str) -> None:
    """Free the key of a request that failed in a way worth retrying."""
    with database.transaction() as session:
        session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.account_id == account_id,
                IdempotentRequest.key == key,
                IdempotentRequest.status_code.is_(None),
            )
        )


def purge_expired(database: Database) -> int:
    """Delete keys past the replay window; returns how many."""
    with database.transaction() as session:
        result = session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.created_at < clock.now() - REPLAY_WINDOW
            ),
            execution_options={"preserve_rowcount": True},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
