"""Deliveries: one row per message, written before it leaves and marked after the reply.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    not_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dripstone import clock, leases
from dripstone.config import Settings
from dripstone.db import Database, UTCDateTime
from dripstone.delivery.kinds import Claimed, Content, DeliveryKind, read_outgoing
from dripstone.delivery.mime import DkimKey, MessageFrame, UnsafeHeaderError, new_message_id
from dripstone.delivery.models import Delivery, Suppression
from dripstone.delivery.prepare import PreparedMailing
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import Recipient, TemplateError
from dripstone.delivery.transports import (
    Outcome,
    Status,
    Transport,
    TransportOptions,
    open_transport,
)
from dripstone.subscribers import service as subscribers_service
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
    Subscription,
)

log = logging.getLogger(__name__)

PENDING, CLAIMED, SENDING = "pending", "claimed", "sending"
DELIVERED, SOFT_BOUNCED, HARD_BOUNCED = "delivered", "soft_bounced", "hard_bounced"
SKIPPED, FAILED, HELD = "skipped", "failed", "held"
FINAL = (DELIVERED, SOFT_BOUNCED, HARD_BOUNCED, SKIPPED, FAILED)
# Handed to a mail server, which answered for good: what counts as sent.
SENT = (DELIVERED, SOFT_BOUNCED, HARD_BOUNCED)
BOUNCED = (SOFT_BOUNCED, HARD_BOUNCED)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How dispatchers pace themselves and when they give up on an address."""

    retry_base_seconds: int = 60
    retry_horizon_seconds: int = 3 * 24 * 3600
    batch_size: int = 200
    # A claim not renewed for this long is taken back by the sweep: its dispatcher died.
    # The heartbeat renews it while the dispatcher is alive, however slow the relay.
    claim_seconds: int = 20
    # A dispatch task returns after this long, so sends cannot starve the queue's other work.
    budget_seconds: float = 10.0
    # Replies are recorded (and the next messages handed over) this many at a time: fewer
    # transactions, and at most this many messages per dispatcher in the crash window.
    record_every: int = 10

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th deferral: base, then doubling."""
        return timedelta(seconds=self.retry_base_seconds * 2 ** min(attempts - 1, 30))


@dataclass
class Pipeline:
    """What this process sends with: transport, URL signing, DKIM and defaults."""

    transport: Transport
    tokens: TrackingTokens
    policy: DeliveryPolicy
    default_from_email: str
    unsubscribe_mailto: str | None = None
    dkim_key: DkimKey | None = None
    _prepared: dict[tuple[Any, ...], tuple[PreparedMailing, MessageFrame]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepared(
        self, key: tuple[Any, ...], content: Content
    ) -> tuple[PreparedMailing, MessageFrame]:
        """The prepared templates and message frame for `content`, built once per key."""
        with self._lock:
            found = self._prepared.get(key)
        if found is not None:
            return found
        prepared = PreparedMailing(
            subject=content.subject, html=content.html, text=content.text, tokens=self.tokens
        )
        from_email = content.from_email or self.default_from_email
        frame = MessageFrame(
            from_email=from_email,
            from_name=content.from_name,
            reply_to=content.reply_to,
            message_id_domain=from_email.rpartition("@")[2],
            dkim_key=self.dkim_key,
        )
        with self._lock:
            if len(self._prepared) > 256:  # content of long-finished sends
                self._prepared.clear()
            self._prepared[key] = (prepared, frame)
        return prepared, frame


_pipeline: Pipeline | None = None


def configure_pipeline(settings: Settings, **options: Any) -> Pipeline:
    """Open this process's transport from the settings (`options` override TransportOptions)."""
    global _pipeline
    close_pipeline()
    transport = open_transport(
        settings.smtp_url,
        TransportOptions(
            data_dir=settings.data_dir,
            pool_size=settings.smtp_pool_size,
            max_per_second=settings.smtp_max_per_second or None,
            timeout=settings.smtp_timeout,
            **options,
        ),
    )
    dkim_key = None
    if settings.dkim_private_key_file is not None:
        dkim_key = _read_dkim_key(settings)
    _pipeline = Pipeline(
        transport=transport,
        tokens=TrackingTokens.from_settings(settings),
        policy=DeliveryPolicy(
            retry_base_seconds=settings.retry_base_seconds,
            retry_horizon_seconds=settings.retry_horizon_seconds,
            batch_size=settings.delivery_batch_size,
            claim_seconds=settings.delivery_claim_seconds,
            record_every=settings.delivery_record_every,
        ),
        default_from_email=settings.from_email,
        unsubscribe_mailto=_mailto(settings.list_unsubscribe_mailto),
        dkim_key=dkim_key,
    )
    return _pipeline


def _mailto(address: str) -> str | None:
    if not address:
        return None
    return address if address.lower().startswith("mailto:") else f"mailto:{address}"


def _read_dkim_key(settings: Settings) -> DkimKey:
    path = Path(settings.dkim_private_key_file or "")
    key = path.read_bytes().strip()
    algorithm = "rsa-sha256" if key.startswith(b"-----BEGIN") else "ed25519-sha256"
    return DkimKey(
        selector=settings.dkim_selector,
        domain=settings.dkim_domain,
        private_key=key,
        algorithm=algorithm,  # type: ignore[arg-type]
    )


def pipeline() -> Pipeline:
    """This process's pipeline (configure_pipeline must have run)."""
    if _pipeline is None:
        raise RuntimeError("dripstone.delivery.service.configure_pipeline() has not been called")
    return _pipeline


def default_from_email() -> str:
    """The From address of mailings and sends that name none."""
    return pipeline().default_from_email


def close_pipeline() -> None:
    global _pipeline
    if _pipeline is not None:
        _pipeline.transport.close()
        _pipeline = None


# --- who may be sent to ---------------------------------------------------------------------


class Unsendable(StrEnum):
    """Why an account may not send to an address."""

    SUPPRESSED = "suppressed"  # the address hard-bounced for this account
    OPTED_OUT = "opted_out"  # this account's subscriber with the address opted out of all mail


def unsendable(
    connection: Connection | Session, addresses: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], Unsendable]:
    """May this account send to this address? The one answer every path (blast, drip, test,
    preview) asks for: of the (account, address) pairs, those the account may not send to,
    with why. Cross-account on purpose (a batch holds many accounts' messages): every
    lookup is keyed by (account, address), so one account's suppressions and opt-outs
    never stop another account's mail. `reachable_subscriber` is the same rule as SQL over
    subscribers, for set-based selections."""
    pairs = set(addresses)
    if not pairs:
        return {}
    accounts = {account_id for account_id, _ in pairs}
    emails = {email for _, email in pairs}
    found: dict[tuple[int, str], Unsendable] = {}
    opted_out = connection.execute(
        select(Subscriber.account_id, Subscriber.email).where(
            Subscriber.account_id.in_(accounts),
            Subscriber.email.in_(emails),
            Subscriber.opted_out_on.is_not(None),
        )
    )
    for account_id, email in opted_out:
        if email is not None and (account_id, email) in pairs:
            found[(account_id, email)] = Unsendable.OPTED_OUT
    suppressed = connection.execute(
        select(Suppression.account_id, Suppression.email).where(
            Suppression.account_id.in_(accounts), Suppression.email.in_(emails)
        )
    )
    for account_id, email in suppressed:
        if (account_id, email) in pairs:
            found[(account_id, email)] = Unsendable.SUPPRESSED
    return found


def not_suppressed(account_id: Any, email: Any) -> Any:
    """SQL: `email` is not on the account's suppression list."""
    return not_(exists().where(Suppression.account_id == account_id, Suppression.email == email))


def reachable_subscriber() -> Any:
    """SQL over Subscriber: has an address, has not opted out, is not suppressed (the rule
    of `unsendable`, for selecting recipients set-based)."""
    return and_(
        Subscriber.email.is_not(None),
        Subscriber.opted_out_on.is_(None),
        not_suppressed(Subscriber.account_id, Subscriber.email),
    )


# --- dispatching ----------------------------------------------------------------------------


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


def has_due_deliveries(database: Database) -> bool:
    """Whether any delivery is due now (cheap: one indexed probe)."""
    with database.reader.connect() as connection:
        found = connection.execute(
            select(Delivery.id)
            .where(Delivery.status == PENDING, Delivery.next_attempt_at <= clock.now())
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
        .where(Delivery.status == PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(policy.batch_size)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    with database.engine.begin() as connection:
        rows = connection.execute(
            update(Delivery)
            .where(Delivery.id.in_(select(due.c.id)), Delivery.status == PENDING)
            .values(
                status=CLAIMED,
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
        _TABLE.c.status == CLAIMED,
    )
    .values(
        status=SENDING,
        message_id=bindparam("b_message_id"),
        claimed_until=bindparam("b_until", type_=UTCDateTime()),
    )
)
_RECORD = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("b_id"),
        _TABLE.c.claim_token == bindparam("b_token"),
        _TABLE.c.status == SENDING,
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
            Delivery.status.in_((CLAIMED, SENDING)),
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
                _finish_unsent(connection, token, failed, status=FAILED)
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
            Delivery.status == SENDING,
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
    for delivery, outcome in replies:
        attempts = delivery.attempts + 1
        status, retry_at = DELIVERED, now
        sent_at: datetime | None = now
        finished_at: datetime | None = now
        if outcome.status is Status.BOUNCED:
            status, sent_at = HARD_BOUNCED, None
            _suppress(connection, delivery, outcome)
        elif outcome.status is Status.DEFERRED:
            sent_at = None
            retry_at = now + policy.retry_delay(attempts)
            horizon = delivery.created_at + timedelta(seconds=policy.retry_horizon_seconds)
            status, finished_at = (SOFT_BOUNCED, now) if retry_at > horizon else (PENDING, None)
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
    connection.execute(_RECORD, rows)


def _suppress(connection: Connection, delivery: _Due, outcome: Outcome) -> None:
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert(Suppression)
        .values(
            account_id=delivery.account_id,
            email=delivery.email,
            reason=f"{outcome.code} {outcome.reply}"[:2000],
            delivery_id=delivery.id,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["account_id", "email"])
    )


def _finish_unsent(
    connection: Connection, token: str, deliveries: Iterable[_Due], status: str = SKIPPED
) -> None:
    now = clock.now()
    connection.execute(
        update(Delivery)
        .where(
            Delivery.id == bindparam("delivery_id"),
            Delivery.claim_token == token,
            Delivery.status == CLAIMED,
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
                _TABLE.c.status == CLAIMED,
            )
            .values(
                status=PENDING,
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
            .where(Delivery.id.in_(ids), Delivery.claim_token == token, Delivery.status == CLAIMED)
            .values(status=HELD, claim_token=None, claimed_until=None)
        )


def release_held(session: Session, enrollments: Any, reason: str | None = None) -> None:
    """Let the held messages of `enrollments` (a select of enrollment ids) go now; or, with a
    `reason`, finish them unsent (their campaign was deleted)."""
    held = and_(Delivery.status == HELD, Delivery.drip_enrollment_id.in_(enrollments))
    if reason is None:
        values: dict[str, Any] = {"status": PENDING, "next_attempt_at": clock.now()}
    else:
        values = {"status": SKIPPED, "smtp_reply": reason, "finished_at": clock.now()}
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
    for status, chosen in ((CLAIMED, ids), (SENDING, handed_over_unsent)):
        if not chosen:
            continue
        held = and_(
            Delivery.id.in_(chosen), Delivery.claim_token == token, Delivery.status == status
        )
        reply = {"smtp_code": outcome.code, "smtp_reply": outcome.reply[:2000]}
        connection.execute(
            update(Delivery)
            .where(held, too_old)
            .values(
                status=SOFT_BOUNCED, finished_at=now, claim_token=None, claimed_until=None, **reply
            )
        )
        connection.execute(
            update(Delivery)
            .where(held)
            .values(
                status=PENDING,
                next_attempt_at=retry_at,
                claim_token=None,
                claimed_until=None,
                **reply,
            )
        )


def recover_deliveries(database: Database) -> int:
    """Take back claims whose lease ran out: their dispatcher's heartbeat stopped, so it died.
    Rows it had handed to the transport (`sending`) go out again with their Message-ID; the
    window is described in the module docstring."""
    now = clock.now()
    stale_claims = and_(Delivery.status.in_((CLAIMED, SENDING)), Delivery.claimed_until < now)
    with database.reader.connect() as connection:
        if connection.execute(select(Delivery.id).where(stale_claims).limit(1)).first() is None:
            return 0
    with database.engine.begin() as connection:
        stale = connection.execute(
            select(Delivery.id, Delivery.status)
            .where(Delivery.status.in_((CLAIMED, SENDING)), Delivery.claimed_until < now)
            .with_for_update(skip_locked=True)
        ).all()
        if not stale:
            return 0
        in_doubt = [row.id for row in stale if row.status == SENDING]
        if in_doubt:
            log.warning(
                "%d deliveries were being sent when their dispatcher stopped; "
                "sending them again with their Message-ID",
                len(in_doubt),
            )
        connection.execute(
            update(Delivery)
            .where(Delivery.id.in_([row.id for row in stale]))
            .values(status=PENDING, claim_token=None, claimed_until=None, next_attempt_at=now)
        )
    return len(stale)


# --- loading what a batch needs ---------------------------------------------------------------


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
    left = _unsubscribed_pairs(connection, rows)
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
        )
        item.skip_reason = (
            _skip_reason(r, left, blocked.get((r.account_id, r.email))) or out.skip_reason
        )
        item.held = item.skip_reason is None and out.held
        due.append(item)
    return due


def _skip_reason(row: Any, left: set[tuple[int, int]], blocked: Unsendable | None) -> str | None:
    if blocked is Unsendable.SUPPRESSED:
        return "suppressed: the address bounced before"
    if not DeliveryKind(row.kind).to_members:
        # Test and preview rows name an address, not a subscriber, and may have been
        # queued before the opt-out.
        if blocked is Unsendable.OPTED_OUT:
            return "the address opted out of all mail"
        return None
    if row.subscriber_id is None or row.subscriber_email is None:
        return "the subscriber was deleted"
    if row.opted_out_on is not None or blocked is Unsendable.OPTED_OUT:
        return "the subscriber opted out of all mail"
    if (row.subscriber_id, row.subscription_list_id) in left:
        return "the subscriber left the list"
    return None


def _custom_fields(
    connection: Connection, subscriber_ids: Sequence[int]
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


def _unsubscribed_pairs(connection: Connection, rows: Sequence[Any]) -> set[tuple[int, int]]:
    """(subscriber, list) pairs among `rows` where the subscriber is no longer on the list."""
    pairs = {
        (r.subscriber_id, r.subscription_list_id)
        for r in rows
        if DeliveryKind(r.kind).to_members
        and r.subscriber_id is not None
        and r.subscription_list_id is not None
    }
    if not pairs:
        return set()
    members = connection.execute(
        select(Subscription.subscriber_id, Subscription.subscription_list_id).where(
            Subscription.subscriber_id.in_([p[0] for p in pairs]),
            Subscription.subscription_list_id.in_({p[1] for p in pairs}),
            Subscription.unsubscribed_at.is_(None),
        )
    )
    on_list = {(subscriber_id, list_id) for subscriber_id, list_id in members}
    return {pair for pair in pairs if pair not in on_list}


def status_counts(connection: Connection, *conditions: Any) -> dict[str, int]:
    """Deliveries by status among those matching `conditions`."""
    rows = connection.execute(
        select(Delivery.status, func.count().label("n"))
        .where(*conditions)
        .group_by(Delivery.status)
    )
    return {row.status: row.n for row in rows}


@subscribers_service.count_messages_with
def subscriber_counts(
    session: Session, account_id: int, subscriber_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Per subscriber of the account: their campaign and drip messages sent (see SENT),
    delivered, opened, clicked, soft-bounced (given up after retries) and hard-bounced.
    Test emails and previews never count; messages not sent yet count once answered."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(
            Delivery.subscriber_id,
            func.count(case((Delivery.status.in_(SENT), 1))).label("deliveries"),
            func.count(case((Delivery.status == DELIVERED, 1))).label("delivered"),
            func.count(Delivery.opened_at).label("opened"),
            func.count(Delivery.clicked_at).label("clicked"),
            func.count(case((Delivery.status == SOFT_BOUNCED, 1))).label("soft_bounced"),
            func.count(case((Delivery.status == HARD_BOUNCED, 1))).label("hard_bounced"),
        )
        .where(
            Delivery.account_id == account_id,
            Delivery.subscriber_id.in_(subscriber_ids),
            Delivery.kind.in_([k for k in DeliveryKind if k.to_members]),
        )
        .group_by(Delivery.subscriber_id)
    )
    return {row.subscriber_id: dict(row._mapping) for row in rows}


def last_deferral(connection: Connection, *conditions: Any) -> Any:
    """The most recent deferred reply among pending deliveries matching `conditions`."""
    return connection.execute(
        select(Delivery.smtp_code, Delivery.smtp_reply, Delivery.next_attempt_at)
        .where(*conditions, Delivery.status == PENDING, Delivery.smtp_reply.is_not(None))
        .order_by(Delivery.next_attempt_at.desc())
        .limit(1)
    ).first()
