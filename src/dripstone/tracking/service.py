"""Record opens, clicks and unsubscribes that arrive through signed URLs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope, UTCDateTime
from dripstone.delivery.models import Delivery
from dripstone.delivery.signing import TrackingTokens
from dripstone.subscribers.models import Subscriber, SubscriptionList
from dripstone.subscribers.subscriptions import change_subscriptions
from dripstone.tracking.models import TrackingEvent

OPEN, CLICK, UNSUBSCRIBE = "open", "click", "unsubscribe"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One request to an open pixel or a click redirect, as the recipient's client made it."""

    kind: str  # OPEN or CLICK
    delivery_id: int
    at: datetime
    user_agent: str | None = None
    remote_addr: str | None = None
    html_id: int | None = None
    url: str | None = None


def open_hit(
    tokens: TrackingTokens, token: str, user_agent: str | None, remote_addr: str | None
) -> Hit | None:
    """The open a pixel token names; None for a token that is not ours."""
    delivery_id = tokens.verify_open(token)
    if delivery_id is None:
        return None
    return Hit(OPEN, delivery_id, clock.now(), user_agent, remote_addr)


def click_hit(
    tokens: TrackingTokens, token: str, user_agent: str | None, remote_addr: str | None
) -> Hit | None:
    """The click a link token names (its `url` is where it goes); None if not ours."""
    click = tokens.verify_click(token)
    if click is None:
        return None
    at = clock.now()
    return Hit(
        CLICK, click.delivery_id, at, user_agent, remote_addr, click.html_id, click.target_url
    )


@dataclass(frozen=True)
class Circumstances:
    """What is known of one open or click when it is recorded."""

    kind: str  # OPEN or CLICK
    user_agent: str | None
    remote_addr: str | None
    seconds_after_send: float | None  # None: the message was never accepted (it bounced)
    links_in_same_second: int  # clicks: different links of the message clicked that second


@dataclass(frozen=True)
class Judgement:
    """Whether a machine made the hit (an image prefetch, a link scanner), by which rule,
    and the image proxy it came through."""

    machine: bool
    reason: str | None
    proxy: str | None


@dataclass(frozen=True)
class LinkFirsts:
    """What one recorded batch did to one link of one message."""

    first: bool = False  # the message's first click on this link
    first_human: bool = False
    clicks: int = 0


@dataclass
class Firsts:
    """What one recorded batch changed for one delivery: the firsts that counters count."""

    delivery_id: int
    account_id: int
    kind: str  # a DeliveryKind
    send_id: int | None
    subscriber_id: int | None
    drip_enrollment_id: int | None
    drip_node_id: str | None
    opened: bool = False
    human_opened: bool = False
    clicked: bool = False
    human_clicked: bool = False
    unsubscribed: bool = False
    all_mail: bool = False  # its first unsubscribe left all mail
    links: dict[tuple[int, str], LinkFirsts] = field(default_factory=dict)


# The rules that tell people from machines, and the counters the events move, belong to the
# analytics domain above this one, which registers them here.
Judge = Callable[[Circumstances], Judgement]
CountFirsts = Callable[[Session, Sequence[Firsts]], None]
_judge: Judge | None = None
_counters: list[CountFirsts] = []


def judges_hits_with(judge: Judge) -> Judge:
    """Register how an open or click is judged (done once, by the analytics domain)."""
    global _judge
    _judge = judge
    return judge


def counts_firsts_with(count: CountFirsts) -> CountFirsts:
    """Register what moves when a batch of events changes deliveries' firsts."""
    if count not in _counters:
        _counters.append(count)
    return count


def _judged(circumstances: Circumstances) -> Judgement:
    if _judge is None:
        raise RuntimeError("no judge of tracking hits registered: import dripstone.tasks first")
    return _judge(circumstances)


def _count(session: Session, firsts: Sequence[Firsts]) -> None:
    if not firsts:
        return
    if not _counters:
        raise RuntimeError("no counter of tracking events registered: import dripstone.tasks")
    for count in _counters:
        count(session, firsts)


_EVENTS: Table = TrackingEvent.__table__  # type: ignore[assignment]
_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
_USER_AGENT_LENGTH = 512
_LOCK_CHUNK = 500


def record_hits(session: Session, hits: Sequence[Hit]) -> set[int]:
    """Record the hits, in the caller's transaction; returns the delivery ids that exist (a
    hit on a deleted delivery records nothing). Each open and click is judged (a person, or a
    machine) and stored with what is known of it; the first open, click and human open and
    click of each delivery are stamped on it, and the counters above move once per batch."""
    ids = sorted({hit.delivery_id for hit in hits})
    deliveries = _locked_deliveries(session, ids)
    if not deliveries:
        return set()
    clicked_ids = [h.delivery_id for h in hits if h.kind == CLICK and h.delivery_id in deliveries]
    earlier = _earlier_clicks(session, clicked_ids)
    state = {
        d.id: {
            "opened": d.opened_at is not None,
            "human_opened": d.human_opened_at is not None,
            "clicked": d.clicked_at is not None,
            "human_clicked": d.human_clicked_at is not None,
        }
        for d in deliveries.values()
    }
    stamps: dict[str, dict[int, datetime]] = {
        "opened_at": {},
        "human_opened_at": {},
        "clicked_at": {},
        "human_clicked_at": {},
    }
    firsts: dict[int, Firsts] = {}
    events: list[dict[str, Any]] = []
    for hit in sorted(hits, key=lambda h: h.at):
        delivery = deliveries.get(hit.delivery_id)
        if delivery is None:
            continue
        clicks = earlier.setdefault(delivery.id, [])
        link = (hit.html_id or 0, hit.url or "")
        burst = {
            (c.html_id, c.url) for c in clicks if abs((hit.at - c.at).total_seconds()) < 1.0
        } | {link}
        seconds = _seconds_after_send(delivery, hit.at)
        judgement = _judged(
            Circumstances(hit.kind, hit.user_agent, hit.remote_addr, seconds, len(burst))
        )
        human = not judgement.machine
        events.append(
            {
                "account_id": delivery.account_id,
                "delivery_id": delivery.id,
                "subscriber_id": delivery.subscriber_id,
                "kind": hit.kind,
                "html_id": hit.html_id,
                "url": hit.url,
                "occurred_at": hit.at,
                "user_agent": (hit.user_agent or None) and hit.user_agent[:_USER_AGENT_LENGTH],
                "proxy": judgement.proxy,
                "seconds_after_send": seconds,
                "machine": judgement.machine,
                "machine_reason": judgement.reason,
                "all_mail": None,
            }
        )
        was = state[delivery.id]
        changes = firsts.setdefault(delivery.id, _firsts(delivery))
        # A click counts as an open, even when images were blocked: of the same kind.
        for name, happened in (
            ("opened", True),
            ("human_opened", human),
            ("clicked", hit.kind == CLICK),
            ("human_clicked", hit.kind == CLICK and human),
        ):
            if happened and not was[name]:
                was[name] = True
                stamps[f"{name}_at"][delivery.id] = hit.at
        if hit.kind == CLICK:
            seen = [c for c in clicks if (c.html_id, c.url) == link]
            before = changes.links.get(link, LinkFirsts())
            changes.links[link] = LinkFirsts(
                first=before.first or not seen,
                first_human=before.first_human or (human and not any(c.human for c in seen)),
                clicks=before.clicks + 1,
            )
            clicks.append(_Click(link[0], link[1], hit.at, human))
    if events:
        session.execute(insert(_EVENTS), events)
    for column, at_by_id in stamps.items():
        stamped = _stamp_first(session, column, at_by_id)
        name = column.removesuffix("_at")
        for delivery_id in stamped:
            setattr(firsts[delivery_id], name, True)
    _count(session, list(firsts.values()))
    return set(deliveries)


@dataclass(frozen=True)
class _Click:
    html_id: int
    url: str
    at: datetime
    human: bool


def _firsts(delivery: Any) -> Firsts:
    return Firsts(
        delivery_id=delivery.id,
        account_id=delivery.account_id,
        kind=delivery.kind,
        send_id=delivery.send_id,
        subscriber_id=delivery.subscriber_id,
        drip_enrollment_id=delivery.drip_enrollment_id,
        drip_node_id=delivery.drip_node_id,
    )


def _locked_deliveries(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    """The deliveries hit, locked until the transaction ends (PostgreSQL; SQLite has one
    writer), in id order so two batches never wait on each other in a circle."""
    found: dict[int, Any] = {}
    for start in range(0, len(ids), _LOCK_CHUNK):
        chunk = ids[start : start + _LOCK_CHUNK]
        stmt = (
            select(
                _DELIVERIES.c.id,
                _DELIVERIES.c.account_id,
                _DELIVERIES.c.kind,
                _DELIVERIES.c.send_id,
                _DELIVERIES.c.subscriber_id,
                _DELIVERIES.c.drip_enrollment_id,
                _DELIVERIES.c.drip_node_id,
                _DELIVERIES.c.sent_at,
                _DELIVERIES.c.finished_at,
                _DELIVERIES.c.opened_at,
                _DELIVERIES.c.human_opened_at,
                _DELIVERIES.c.clicked_at,
                _DELIVERIES.c.human_clicked_at,
            )
            .where(_DELIVERIES.c.id.in_(chunk))
            .order_by(_DELIVERIES.c.id)
            .with_for_update(key_share=True)
        )
        found.update((row.id, row) for row in session.execute(stmt))
    return found


def _earlier_clicks(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[_Click]]:
    found: dict[int, list[_Click]] = {}
    wanted = sorted(set(delivery_ids))
    for start in range(0, len(wanted), _LOCK_CHUNK):
        rows = session.execute(
            select(
                TrackingEvent.delivery_id,
                TrackingEvent.html_id,
                TrackingEvent.url,
                TrackingEvent.occurred_at,
                TrackingEvent.machine,
            ).where(
                TrackingEvent.delivery_id.in_(wanted[start : start + _LOCK_CHUNK]),
                TrackingEvent.kind == CLICK,
            )
        )
        for row in rows:
            found.setdefault(row.delivery_id, []).append(
                _Click(row.html_id or 0, row.url or "", row.occurred_at, not row.machine)
            )
    return found


def _seconds_after_send(delivery: Any, at: datetime) -> float | None:
    accepted: datetime | None = delivery.sent_at or delivery.finished_at
    if accepted is None:
        return None
    return (at - accepted).total_seconds()


def _stamp_first(session: Session, column: str, at_by_id: dict[int, datetime]) -> set[int]:
    """Set `column` on the deliveries where it is still empty, each to its own time; the ids
    it was set on. For one delivery the count of rows changed says whether it was; for
    several, the caller holds their rows locked (see `_locked_deliveries`) and knows they
    are all still empty, which the count confirms."""
    if not at_by_id:
        return set()
    items = sorted(at_by_id.items())
    changed = session.execute(  # type: ignore[attr-defined]
        _STAMPS[column], [{"b_id": i, "b_at": at} for i, at in items]
    ).rowcount
    if len(items) == 1:
        return set(at_by_id) if changed == 1 else set()
    if changed == len(items):
        return set(at_by_id)
    # Not reached while the caller holds the locks; if it ever is, count what holds our time.
    log.error("%s: %s of %s locked deliveries stamped", column, changed, len(items))
    found = session.execute(
        select(_DELIVERIES.c.id, _DELIVERIES.c[column]).where(_DELIVERIES.c.id.in_(list(at_by_id)))
    )
    return {i for i, at in found if at == at_by_id[i]}


# Built once: per batch, building statements cost more than running them.
_STAMPS = {
    column: update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c[column].is_(None))
    .values({column: bindparam("b_at", type_=UTCDateTime())})
    for column in (
        "opened_at",
        "human_opened_at",
        "clicked_at",
        "human_clicked_at",
        "unsubscribed_at",
    )
}


@dataclass(frozen=True)
class UnsubscribeTarget:
    """What an unsubscribe link leaves: a named list, or all mail."""

    delivery: Delivery
    list_name: str | None  # None: all mail (the default list)


def unsubscribe_target(
    session: Session, tokens: TrackingTokens, token: str
) -> UnsubscribeTarget | None:
    """The delivery an unsubscribe token names and the list it leaves; None if not ours."""
    delivery_id = tokens.verify_unsubscribe(token)
    delivery = session.get(Delivery, delivery_id) if delivery_id is not None else None
    if delivery is None or delivery.subscriber_id is None:
        return None
    name = None
    if delivery.subscription_list_id is not None:
        lst = session.get(SubscriptionList, delivery.subscription_list_id)
        name = lst.name if lst is not None and not lst.is_default else None
    return UnsubscribeTarget(delivery, name)


def unsubscribe(session: Session, target: UnsubscribeTarget) -> None:
    """Take the subscriber off the delivery's list (or out of all mail), at once."""
    delivery = target.delivery
    scope = AccountScope(session, delivery.account_id)
    subscriber = scope.by_id(Subscriber, delivery.subscriber_id or 0)
    if subscriber is None:
        return
    lst = scope.by_id(SubscriptionList, delivery.subscription_list_id or 0)
    list_ids = [lst.uuid] if lst is not None and not lst.is_default else None
    change_subscriptions(scope, "unsubscribe", [subscriber.uuid], list_ids)
    now = clock.now()
    session.execute(
        insert(_EVENTS),
        [
            {
                "account_id": delivery.account_id,
                "delivery_id": delivery.id,
                "subscriber_id": delivery.subscriber_id,
                "kind": UNSUBSCRIBE,
                "occurred_at": now,
                "all_mail": list_ids is None,
            }
        ],
    )
    if _stamp_first(session, "unsubscribed_at", {delivery.id: now}):
        changes = _firsts(delivery)
        changes.unsubscribed = True
        changes.all_mail = list_ids is None
        _count(session, [changes])
