"""Dispatching deliveries: one row per message, written before it leaves and marked after the
reply.

A delivery is `pending` (due at `next_attempt_at`; with attempts > 0 it was deferred), then
`claimed` by a dispatcher (taken, not yet handed to the transport), then `sending` (handed
over; the reply is not recorded yet), then final: `delivered`, `soft_bounced` (4xx until the
retry horizon), `hard_bounced` (5xx; the address is suppressed for the account), `skipped`
(never sent: opted out, unsubscribed, suppressed or deleted by the time it was due) or
`failed` (its content could not be rendered for this recipient). A drip message that falls
due while its campaign is paused is `held` until the campaign starts again.

Exactly once. Every state change is conditional on the dispatcher's claim token, so two
dispatchers never both send a row. One transaction records the replies of a group of
messages (`record_every`, 10 by default) and marks the next group `sending`; a crash
therefore leaves at most one group per dispatcher in `sending`. Those rows are the one
window no design can close: the relay may have taken a message just before the process
died. The recovery sweep sends them again with the same Message-ID (receivers that see the
Message-ID twice treat it as one message); rows still `claimed` were never handed over and
are simply sent.

A claim is a short lease (`claim_seconds`, 20 by default) that the heartbeat of the
dispatcher's process renews while the dispatcher works (see `dripstone.leases`): a slow SMTP
exchange keeps its claim however long it takes, and the rows of a dispatcher that died are
taken back by the sweep of the next tick, in any process, once the lease has run out.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    select,
    update,
)
from sqlalchemy.orm import Session

from dripstone import clock, leases
from dripstone.db import Database, UTCDateTime
from dripstone.delivery.audience import (
    Suppressed,
    skip_reason,
    suppress,
    unsendable,
    unsubscribed_pairs,
)
from dripstone.delivery.finished import Finished, finished
from dripstone.delivery.kinds import Claimed, Content, DeliveryKind, read_outgoing
from dripstone.delivery.mime import UnsafeHeaderError, new_message_id
from dripstone.delivery.models import FINAL, Delivery, DeliveryStatus
from dripstone.delivery.pipeline import DeliveryPolicy, Pipeline, pipeline
from dripstone.delivery.template import Recipient, TemplateError
from dripstone.delivery.transports import (
    Outcome,
    Status,
)
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
)

log = logging.getLogger(__name__)


@dataclass
class _Due:
    """One claimed delivery with everything needed to send it."""

    id: int
    account_id: int
    kind: DeliveryKind
    email: str
    tracked: bool
    attempts: int
    created_at: datetime
    message_id: str | None
    content_key: tuple[Any, ...]
    content: Content
    recipient: Recipient
    skip_reason: str | None = None
    held: bool = False
    drip_enrollment_id: int | None = None
    drip_node_id: str | None = None
    send_id: int | None = None
    campaign_mailing_id: int = 0
    subscriber_id: int | None = None

    def finished(self, status: str) -> Finished:
        return Finished(
            self.id,
            status,
            self.account_id,
            self.kind,
            self.send_id,
            self.campaign_mailing_id,
            self.subscriber_id,
            self.drip_enrollment_id,
            self.drip_node_id,
        )


def has_due_deliveries(database: Database) -> bool:
    """Whether any delivery is due now (cheap: one indexed probe)."""
    with database.reader.connect() as connection:
        found = connection.execute(
            select(Delivery.id)
            .where(
                Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= clock.now()
            )
            .limit(1)
        ).first()
    return found is not None


def dispatch_due(database: Database, active: Pipeline | None = None) -> int:
    """Send due deliveries, batch after batch, until none is due or the time budget is spent.
    Returns how many messages were handed to the transport."""
    active = active or pipeline()
    started = time.monotonic()
    handed_over = 0
    while time.monotonic() - started < active.policy.budget_seconds:
        token = str(uuid.uuid4())
        claimed = _claim(database, token, active.policy)
        if not claimed:
            break
        renew = partial(_renew, token=token, ids=claimed, seconds=active.policy.claim_seconds)
        with leases.kept_alive(renew):
            handed_over += _send_batch(database, active, token, claimed)
    return handed_over


def _claim(database: Database, token: str, policy: DeliveryPolicy) -> list[int]:
    now = clock.now()
    # Materialised, so the batch is chosen and locked once. As a subquery of the UPDATE,
    # PostgreSQL may run it again while other dispatchers change rows: one claim then took
    # thousands of rows, and held its locks for a minute while every other dispatcher waited.
    due = (
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(policy.batch_size)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    with database.engine.begin() as connection:
        rows = connection.execute(
            update(Delivery)
            .where(Delivery.id.in_(select(due.c.id)), Delivery.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.CLAIMED,
                claim_token=token,
                claimed_until=now + timedelta(seconds=policy.claim_seconds),
            )
            .returning(Delivery.id)
        )
        return sorted(row[0] for row in rows)


_TABLE: Table = Delivery.__table__  # type: ignore[assignment]


# Built once: per message, building statements cost more than running them.
_MARK_SENDING = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("b_id"),
        _TABLE.c.claim_token == bindparam("b_token"),
        _TABLE.c.status == DeliveryStatus.CLAIMED,
    )
    .values(
        status=DeliveryStatus.SENDING,
        message_id=bindparam("b_message_id"),
        claimed_until=bindparam("b_until", type_=UTCDateTime()),
    )
)


_RECORD = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("b_id"),
        _TABLE.c.claim_token == bindparam("b_token"),
        _TABLE.c.status == DeliveryStatus.SENDING,
    )
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        smtp_code=bindparam("b_code"),
        smtp_reply=bindparam("b_reply"),
        sent_at=bindparam("b_sent_at", type_=UTCDateTime()),
        finished_at=bindparam("b_finished_at", type_=UTCDateTime()),
        next_attempt_at=bindparam("b_next_attempt_at", type_=UTCDateTime()),
        claim_token=None,
        claimed_until=None,
    )
)


_STILL_SENDING = (
    select(_TABLE.c.id)
    .where(
        _TABLE.c.id.in_(bindparam("b_ids", expanding=True)),
        _TABLE.c.claim_token == bindparam("b_token"),
        _TABLE.c.status == DeliveryStatus.SENDING,
    )
    .with_for_update()
)


# SQLite has one writer: this process's dispatchers queue here for it, instead of in
# SQLite's busy handler, which sleeps in steps of milliseconds.
_sqlite_writes = threading.Lock()


@contextmanager
def _writing(database: Database) -> Iterator[Connection]:
    """A write transaction, taken in turn among this process's threads on SQLite."""
    with _sqlite_writes if database.is_sqlite else nullcontext(), database.engine.begin() as c:
        yield c


def _renew(database: Database, token: str, ids: Sequence[int], seconds: int) -> None:
    """The heartbeat of a live dispatcher: extend its claim on the rows it has not finished.
    Rows locked right now are skipped: their dispatcher is recording or renewing them."""
    mine = (
        select(Delivery.id)
        .where(
            Delivery.id.in_(ids),
            Delivery.claim_token == token,
            Delivery.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)),
        )
        .with_for_update(skip_locked=True)
    )
    with _writing(database) as connection:
        connection.execute(
            update(Delivery)
            .where(Delivery.id.in_(mine.scalar_subquery()), Delivery.claim_token == token)
            .values(claimed_until=clock.now() + timedelta(seconds=seconds))
        )


def _send_batch(database: Database, active: Pipeline, token: str, ids: Sequence[int]) -> int:
    """Send a claimed batch, `record_every` messages at a time: one transaction records the
    replies of a group and hands the next group over, so at most that many messages of this
    dispatcher are ever in the window."""
    with database.reader.connect() as connection:
        due = _load(connection, ids)
        behind = _behind_earlier_emails(connection, due)
    skipped = [d for d in due if d.skip_reason is not None]
    held = [d.id for d in due if d.held]
    if skipped or held or behind:
        with _writing(database) as connection:
            if skipped:
                _finish_unsent(connection, token, skipped)
            _hold(connection, token, held)
            _wait_behind(connection, token, behind)
    remaining = [d for d in due if d.skip_reason is None and not d.held and d.id not in behind]
    size = active.policy.record_every
    handed_over = 0
    replies: list[tuple[_Due, Outcome]] = []
    for start in range(0, len(remaining), size):
        chunk = remaining[start : start + size]
        group = [(d, message) for d in chunk if (message := _build(active, d)) is not None]
        failed = [d for d in chunk if d.skip_reason is not None]
        with _writing(database) as connection:
            _record(connection, active.policy, token, replies)
            replies = []
            if failed:
                _finish_unsent(connection, token, failed, status=DeliveryStatus.FAILED)
            marked = _mark_sending(connection, active.policy, token, [d for d, _ in group])
        for delivery, message in group:
            if delivery.id not in marked:
                continue  # taken back by the sweep; someone else sends it
            outcome = active.transport.send(
                message, _envelope_from(active, delivery), delivery.email
            )
            handed_over += 1
            replies.append((delivery, outcome))
            if outcome.status is Status.DEFERRED and outcome.code is None:
                # The relay cannot be reached: the rest waits for the same retry instead of
                # each failing on its own.
                position = group.index((delivery, message))
                unsent = [d.id for d, _ in group[position + 1 :] if d.id in marked]
                with _writing(database) as connection:
                    _record(connection, active.policy, token, replies)
                    later = [d.id for d in remaining[start + size :]]
                    _release(connection, active.policy, token, delivery, outcome, later, unsent)
                return handed_over
    if replies:
        with _writing(database) as connection:
            _record(connection, active.policy, token, replies)
    return handed_over


def _mark_sending(
    connection: Connection, policy: DeliveryPolicy, token: str, group: Sequence[_Due]
) -> set[int]:
    """Hand `group` over (status sending, Message-ID fixed); the ids this claim still held.
    The claim is renewed from now: only the time to send this group counts against it, not
    the time the batch's earlier groups took."""
    if not group:
        return set()
    until = clock.now() + timedelta(seconds=policy.claim_seconds)
    connection.execute(
        _MARK_SENDING,
        [
            {"b_id": d.id, "b_token": token, "b_message_id": d.message_id, "b_until": until}
            for d in group
        ],
    )
    held = connection.execute(
        select(Delivery.id).where(
            Delivery.id.in_([d.id for d in group]),
            Delivery.claim_token == token,
            Delivery.status == DeliveryStatus.SENDING,
        )
    )
    return {row[0] for row in held}


def _envelope_from(active: Pipeline, delivery: _Due) -> str:
    return delivery.content.from_email or active.default_from_email


def _build(active: Pipeline, delivery: _Due) -> bytes | None:
    try:
        prepared, frame = active.prepared(delivery.content_key, delivery.content)
        if delivery.tracked:
            rendered = prepared.render(delivery.recipient, delivery.id)
        elif delivery.kind in (DeliveryKind.PREVIEW, DeliveryKind.TEST):
            rendered = prepared.render(delivery.recipient, None, tracked=False)
        else:
            rendered = prepared.render(delivery.recipient, delivery.id, tracked=False)
        if delivery.message_id is None:
            delivery.message_id = new_message_id(
                _envelope_from(active, delivery).rpartition("@")[2]
            )
        return frame.build(
            rendered,
            to_email=delivery.email,
            list_unsubscribe_url=rendered.unsubscribe_url,
            list_unsubscribe_mailto=active.unsubscribe_mailto,
            date=clock.now(),
            message_id=delivery.message_id,
        )
    except (TemplateError, UnsafeHeaderError) as exc:
        log.warning("delivery %s cannot be built: %s", delivery.id, exc)
        delivery.skip_reason = str(exc)[:500]
        return None


def _record(
    connection: Connection,
    policy: DeliveryPolicy,
    token: str,
    replies: Sequence[tuple[_Due, Outcome]],
) -> None:
    """Record what the server answered for each message: delivered, retry later, bounced."""
    if not replies:
        return
    now = clock.now()
    rows = []
    suppress(
        connection,
        [
            Suppressed(d.account_id, d.email, f"{o.code} {o.reply}"[:2000], d.id)
            for d, o in replies
            if o.status is Status.BOUNCED
        ],
    )
    for delivery, outcome in replies:
        attempts = delivery.attempts + 1
        status, retry_at = DeliveryStatus.DELIVERED, now
        sent_at: datetime | None = now
        finished_at: datetime | None = now
        if outcome.status is Status.BOUNCED:
            status, sent_at = DeliveryStatus.HARD_BOUNCED, None
        elif outcome.status is Status.DEFERRED:
            sent_at = None
            retry_at = now + policy.retry_delay(attempts)
            horizon = delivery.created_at + timedelta(seconds=policy.retry_horizon_seconds)
            status, finished_at = (
                (DeliveryStatus.SOFT_BOUNCED, now)
                if retry_at > horizon
                else (DeliveryStatus.PENDING, None)
            )
        rows.append(
            {
                "b_id": delivery.id,
                "b_token": token,
                "b_status": status,
                "b_attempts": attempts,
                "b_code": outcome.code,
                "b_reply": outcome.reply[:2000],
                "b_sent_at": sent_at,
                "b_finished_at": finished_at,
                "b_next_attempt_at": retry_at,
            }
        )
    # The rows this claim still holds, locked so that the recovery sweep cannot take them
    # between this read and the update: exactly these change, and are counted once.
    held = {
        row[0]
        for row in connection.execute(
            _STILL_SENDING, {"b_ids": [d.id for d, _ in replies], "b_token": token}
        )
    }
    connection.execute(_RECORD, rows)
    finished(
        connection,
        [
            delivery.finished(str(row["b_status"]))
            for (delivery, _), row in zip(replies, rows, strict=True)
            if delivery.id in held and row["b_status"] in FINAL
        ],
    )


def _finish_unsent(
    connection: Connection,
    token: str,
    deliveries: Iterable[_Due],
    status: str = DeliveryStatus.SKIPPED,
) -> None:
    now = clock.now()
    connection.execute(
        update(Delivery)
        .where(
            Delivery.id == bindparam("delivery_id"),
            Delivery.claim_token == token,
            Delivery.status == DeliveryStatus.CLAIMED,
        )
        .values(
            status=status,
            smtp_reply=bindparam("reason"),
            finished_at=now,
            claim_token=None,
            claimed_until=None,
        ),
        [{"delivery_id": d.id, "reason": d.skip_reason} for d in deliveries],
    )


def _behind_earlier_emails(connection: Connection, due: Sequence[_Due]) -> dict[int, datetime]:
    """The drip messages of `due` whose enrollment has an earlier message not finished yet
    (deferred, or in this very batch), each with when to look again: a subscriber gets a
    campaign's emails in the order of its steps, even when the first one is retried."""
    by_enrollment: dict[int | None, list[int]] = {}
    for d in due:
        if d.drip_enrollment_id is not None:
            by_enrollment.setdefault(d.drip_enrollment_id, []).append(d.id)
    if not by_enrollment:
        return {}
    unfinished = connection.execute(
        select(Delivery.drip_enrollment_id, Delivery.id, Delivery.next_attempt_at).where(
            Delivery.drip_enrollment_id.in_(list(by_enrollment)), Delivery.status.not_in(FINAL)
        )
    )
    soon = clock.now() + timedelta(seconds=1)
    behind: dict[int, datetime] = {}
    for enrollment_id, earlier_id, next_attempt_at in unfinished:
        look_again = max(next_attempt_at, soon)
        for delivery_id in by_enrollment[enrollment_id]:
            if delivery_id > earlier_id:
                behind[delivery_id] = max(behind.get(delivery_id, look_again), look_again)
    return behind


def _wait_behind(connection: Connection, token: str, behind: dict[int, datetime]) -> None:
    if behind:
        connection.execute(
            update(_TABLE)
            .where(
                _TABLE.c.id == bindparam("b_id"),
                _TABLE.c.claim_token == bindparam("b_token"),
                _TABLE.c.status == DeliveryStatus.CLAIMED,
            )
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=bindparam("b_at", type_=UTCDateTime()),
                claim_token=None,
                claimed_until=None,
            ),
            [{"b_id": i, "b_token": token, "b_at": at} for i, at in behind.items()],
        )


def _hold(connection: Connection, token: str, ids: Sequence[int]) -> None:
    """Keep claimed drip messages of paused campaigns until `release_held` lets them go."""
    if ids:
        connection.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(ids),
                Delivery.claim_token == token,
                Delivery.status == DeliveryStatus.CLAIMED,
            )
            .values(status=DeliveryStatus.HELD, claim_token=None, claimed_until=None)
        )


def release_held(session: Session, enrollments: Any, reason: str | None = None) -> None:
    """Let the held messages of `enrollments` (a select of enrollment ids) go now; or, with a
    `reason`, finish them unsent (their campaign was deleted)."""
    held = and_(
        Delivery.status == DeliveryStatus.HELD, Delivery.drip_enrollment_id.in_(enrollments)
    )
    if reason is None:
        values: dict[str, Any] = {"status": DeliveryStatus.PENDING, "next_attempt_at": clock.now()}
    else:
        values = {
            "status": DeliveryStatus.SKIPPED,
            "smtp_reply": reason,
            "finished_at": clock.now(),
        }
    session.execute(update(Delivery).where(held).values(**values))


def _release(
    connection: Connection,
    policy: DeliveryPolicy,
    token: str,
    probe: _Due,
    outcome: Outcome,
    ids: Sequence[int],
    handed_over_unsent: Sequence[int] = (),
) -> None:
    """Put claimed rows (and rows marked sending but never sent) back to wait with `probe`,
    the message that found the relay unreachable: they retry when it does, so the backoff
    doubles for all of them, and those older than the retry horizon become soft bounces
    although they were never tried themselves."""
    now = clock.now()
    retry_at = now + policy.retry_delay(probe.attempts + 1)
    too_old = Delivery.created_at < retry_at - timedelta(seconds=policy.retry_horizon_seconds)
    for status, chosen in (
        (DeliveryStatus.CLAIMED, ids),
        (DeliveryStatus.SENDING, handed_over_unsent),
    ):
        if not chosen:
            continue
        held = and_(
            Delivery.id.in_(chosen), Delivery.claim_token == token, Delivery.status == status
        )
        reply = {"smtp_code": outcome.code, "smtp_reply": outcome.reply[:2000]}
        given_up = connection.execute(
            update(Delivery)
            .where(held, too_old)
            .values(
                status=DeliveryStatus.SOFT_BOUNCED,
                finished_at=now,
                claim_token=None,
                claimed_until=None,
                **reply,
            )
            .returning(
                Delivery.id,
                Delivery.account_id,
                Delivery.kind,
                Delivery.send_id,
                Delivery.campaign_mailing_id,
                Delivery.subscriber_id,
                Delivery.drip_enrollment_id,
                Delivery.drip_node_id,
            )
        )
        finished(
            connection,
            [
                Finished(
                    r.id,
                    DeliveryStatus.SOFT_BOUNCED,
                    r.account_id,
                    r.kind,
                    r.send_id,
                    r.campaign_mailing_id,
                    r.subscriber_id,
                    r.drip_enrollment_id,
                    r.drip_node_id,
                )
                for r in given_up
            ],
        )
        connection.execute(
            update(Delivery)
            .where(held)
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=retry_at,
                claim_token=None,
                claimed_until=None,
                **reply,
            )
        )


def _load(connection: Connection, ids: Sequence[int]) -> list[_Due]:
    rows = connection.execute(
        select(
            Delivery.id,
            Delivery.account_id,
            Delivery.kind,
            Delivery.email,
            Delivery.tracked,
            Delivery.attempts,
            Delivery.created_at,
            Delivery.message_id,
            Delivery.send_id,
            Delivery.drip_enrollment_id,
            Delivery.drip_node_id,
            Delivery.campaign_mailing_id,
            Delivery.subscriber_id,
            Delivery.subscription_list_id,
            Delivery.subject,
            Delivery.from_email,
            Delivery.from_name,
            Subscriber.email.label("subscriber_email"),
            Subscriber.first_name,
            Subscriber.last_name,
            Subscriber.phone_number,
            Subscriber.opted_out_on,
        )
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    subscriber_ids = [r.subscriber_id for r in rows if r.subscriber_id is not None]
    custom = _custom_fields(connection, subscriber_ids)
    left = unsubscribed_pairs(connection, rows)
    blocked = unsendable(connection, ((r.account_id, r.email) for r in rows))
    outgoing = read_outgoing(
        connection,
        [
            Claimed(
                id=r.id,
                kind=DeliveryKind(r.kind),
                send_id=r.send_id,
                campaign_mailing_id=r.campaign_mailing_id,
                drip_enrollment_id=r.drip_enrollment_id,
                subject=r.subject,
                from_email=r.from_email,
                from_name=r.from_name,
            )
            for r in rows
        ],
    )
    due = []
    for r in rows:
        out = outgoing[r.id]
        recipient = Recipient(
            email=r.email,
            first_name=r.first_name,
            last_name=r.last_name,
            phone_number=r.phone_number,
            custom=custom.get(r.subscriber_id, {}),
        )
        item = _Due(
            id=r.id,
            account_id=r.account_id,
            kind=DeliveryKind(r.kind),
            email=r.email,
            tracked=r.tracked,
            attempts=r.attempts,
            created_at=r.created_at,
            message_id=r.message_id,
            content_key=out.content_key,
            content=out.content,
            recipient=recipient,
            drip_enrollment_id=r.drip_enrollment_id,
            drip_node_id=r.drip_node_id,
            send_id=r.send_id,
            campaign_mailing_id=r.campaign_mailing_id,
            subscriber_id=r.subscriber_id,
        )
        item.skip_reason = (
            skip_reason(r, left, blocked.get((r.account_id, r.email))) or out.skip_reason
        )
        item.held = item.skip_reason is None and out.held
        due.append(item)
    return due


def recipient_of(connection: Connection | Session, account_id: int, email: str) -> Recipient:
    """The merge fields a message to `email` in this account is rendered with: the account's
    subscriber with that address, as dispatching reads them, else the address alone."""
    row = connection.execute(
        select(
            Subscriber.id,
            Subscriber.first_name,
            Subscriber.last_name,
            Subscriber.phone_number,
        ).where(Subscriber.account_id == account_id, Subscriber.email == email)
    ).first()
    if row is None:
        return Recipient(email=email)
    return Recipient(
        email=email,
        first_name=row.first_name,
        last_name=row.last_name,
        phone_number=row.phone_number,
        custom=_custom_fields(connection, [row.id]).get(row.id, {}),
    )


def _custom_fields(
    connection: Connection | Session, subscriber_ids: Sequence[int]
) -> dict[int, dict[str, str | None]]:
    found: dict[int, dict[str, str | None]] = {}
    if not subscriber_ids:
        return found
    rows = connection.execute(
        select(CustomFieldValue.subscriber_id, CustomFieldType.name, CustomFieldValue.value)
        .join(CustomFieldType, CustomFieldType.id == CustomFieldValue.field_type_id)
        .where(CustomFieldValue.subscriber_id.in_(subscriber_ids))
    )
    for subscriber_id, name, value in rows:
        found.setdefault(subscriber_id, {})[name] = value
    return found
