"""The counters: moved in the transaction of each event, read by every number Dripstone shows.

Events reach this module through registrations in the domains below it: the dispatcher tells
it which deliveries it has just finished (`delivery.finished`), the tracking service which
deliveries a batch of opens, clicks and unsubscribes opened, clicked or unsubscribed for the
first time (`tracking.service`). Each batch moves every counter row it touches with one
statement, so concurrent writers on PostgreSQL wait on a row at most once per batch.

Only campaign sends and drip emails count: test emails and previews never do.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    case,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.analytics import engagement
from dripstone.analytics.models import (
    DailyCounter,
    DripEmailCounter,
    LinkCounter,
    MessageCounts,
    SendCounter,
    SubscriberCounter,
)
from dripstone.delivery import finished as delivery_finished
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import SENT, Delivery, DeliveryStatus
from dripstone.drips import report as drips_report
from dripstone.drips.models import DripEnrollment
from dripstone.mailings import service as mailings_service
from dripstone.mailings.models import CampaignMailingSend
from dripstone.subscribers import service as subscribers_service
from dripstone.tracking import service as tracking_service
from dripstone.tracking.models import TrackingEvent

_COUNTS = (
    "sent",
    "delivered",
    "soft_bounced",
    "hard_bounced",
    "viewed",
    "human_viewed",
    "clicked",
    "human_clicked",
    "unsubscribed",
    "global_unsubscribed",
)


# Gmail and Yahoo refuse bulk mail from senders whose spam complaint rate stays above 0.3 %;
# bounces above it also hurt a sender's reputation, so the overview holds both to it.
MAILBOX_PROVIDER_LIMIT = 0.003


def share(part: int, whole: int) -> float | None:
    """`part / whole`, or None when there is no whole to be a part of."""
    return part / whole if whole else None


@dataclass(frozen=True)
class Totals:
    sent: int  # handed to a mail server, answered for good (delivered+soft+hard)
    delivered: int
    viewed: int  # distinct recipients who opened (a click counts as an open), any open
    clicked: int  # distinct recipients who clicked any link
    bounced: int  # soft_bounced + hard_bounced
    soft_bounced: int
    hard_bounced: int
    unsubscribed: int  # distinct recipients who unsubscribed through this message
    global_unsubscribed: int  # of those, the ones who left all mail
    human_viewed: int
    machine_viewed: int  # viewed only by machines (viewed = human_viewed + machine_viewed)
    human_clicked: int
    bot_clicked: int  # clicked only by bots (clicked = human_clicked + bot_clicked)

    @property
    def delivery_rate(self) -> float | None:
        """Delivered of sent."""
        return share(self.delivered, self.sent)

    @property
    def open_rate(self) -> float | None:
        """Opened of delivered."""
        return share(self.viewed, self.delivered)

    @property
    def click_rate(self) -> float | None:
        """Clicked of delivered."""
        return share(self.clicked, self.delivered)

    @property
    def bounce_rate(self) -> float | None:
        """Bounced (soft or hard) of sent."""
        return share(self.bounced, self.sent)

    @property
    def unsubscribe_rate(self) -> float | None:
        """Unsubscribed through the message, of delivered."""
        return share(self.unsubscribed, self.delivered)

    @classmethod
    def zero(cls) -> Totals:
        return cls.of(dict.fromkeys(_COUNTS, 0))

    @classmethod
    def of(cls, counts: Any) -> Totals:
        """From the stored counts (a mapping of `_COUNTS`; None reads as 0)."""
        n = {name: int(counts[name] or 0) for name in _COUNTS}
        return cls(
            sent=n["sent"],
            delivered=n["delivered"],
            viewed=n["viewed"],
            clicked=n["clicked"],
            bounced=n["soft_bounced"] + n["hard_bounced"],
            soft_bounced=n["soft_bounced"],
            hard_bounced=n["hard_bounced"],
            unsubscribed=n["unsubscribed"],
            global_unsubscribed=n["global_unsubscribed"],
            human_viewed=n["human_viewed"],
            machine_viewed=n["viewed"] - n["human_viewed"],
            human_clicked=n["human_clicked"],
            bot_clicked=n["clicked"] - n["human_clicked"],
        )


@dataclass(frozen=True)
class LinkClicks:
    html_id: int
    target_url: str
    clicked: int  # distinct recipients who clicked this link
    human_clicked: int
    clicks: int  # every click event on it


# --- reads -------------------------------------------------------------------------------------


def _sums(model: type[MessageCounts]) -> list[Any]:
    return [func.coalesce(func.sum(getattr(model, name)), 0).label(name) for name in _COUNTS]


def send_totals(session: Session, account_id: int, send_id: int | None) -> Totals:
    """One campaign send's totals; None: every campaign send of the account together."""
    stmt = select(*_sums(SendCounter)).where(SendCounter.account_id == account_id)
    if send_id is not None:
        stmt = stmt.where(SendCounter.send_id == send_id)
    return Totals.of(session.execute(stmt).one()._mapping)


def send_totals_by_id(
    session: Session, account_id: int, send_ids: Sequence[int]
) -> dict[int, Totals]:
    """Per campaign send of the account among `send_ids` (zero for a send with no row yet)."""
    found = dict.fromkeys(send_ids, Totals.zero())
    if not send_ids:
        return found
    rows = session.execute(
        select(SendCounter.send_id, *(getattr(SendCounter, n).label(n) for n in _COUNTS)).where(
            SendCounter.account_id == account_id, SendCounter.send_id.in_(list(send_ids))
        )
    )
    for row in rows:
        found[row.send_id] = Totals.of(row._mapping)
    return found


def mailing_totals(
    session: Session, account_id: int, mailing_ids: Sequence[int]
) -> dict[int, Totals]:
    """Per mailing of the account: the totals of all its campaign sends."""
    found = dict.fromkeys(mailing_ids, Totals.zero())
    if not mailing_ids:
        return found
    rows = session.execute(
        select(SendCounter.campaign_mailing_id, *_sums(SendCounter))
        .where(
            SendCounter.account_id == account_id,
            SendCounter.campaign_mailing_id.in_(list(mailing_ids)),
        )
        .group_by(SendCounter.campaign_mailing_id)
    )
    for row in rows:
        found[row.campaign_mailing_id] = Totals.of(row._mapping)
    return found


def link_clicks(session: Session, account_id: int, send_id: int) -> list[LinkClicks]:
    """The clicks on each link of one campaign send, in html_id order."""
    rows = session.execute(
        select(
            LinkCounter.html_id,
            LinkCounter.target_url,
            LinkCounter.clicked,
            LinkCounter.human_clicked,
            LinkCounter.clicks,
        )
        .where(LinkCounter.account_id == account_id, LinkCounter.send_id == send_id)
        .order_by(LinkCounter.html_id, LinkCounter.target_url)
    )
    return [LinkClicks(*row) for row in rows]


def drip_email_totals(
    session: Session, account_id: int, drip_campaign_id: int
) -> dict[str, Totals]:
    """Per email node of a drip campaign: its messages' totals."""
    rows = session.execute(
        select(
            DripEmailCounter.drip_node_id, *(getattr(DripEmailCounter, n).label(n) for n in _COUNTS)
        ).where(
            DripEmailCounter.account_id == account_id,
            DripEmailCounter.drip_campaign_id == drip_campaign_id,
        )
    )
    return {row.drip_node_id: Totals.of(row._mapping) for row in rows}


@dataclass(frozen=True)
class Day:
    """One UTC day of an account's campaign and drip messages."""

    day: date
    sent: int
    delivered: int
    bounced: int  # soft + hard
    opened: int  # first opens that day (of messages sent that day or before)
    clicked: int
    unsubscribed: int


def daily_totals(session: Session, account_id: int, days: int, today: date) -> list[Day]:
    """The account's last `days` days up to `today`, oldest first (days with nothing: zero).

    Cheap at any volume: it reads the `daily_counters` rows (one per account and day, moved
    with the other counters) by their primary key range, at most `days` rows, and never the
    deliveries."""
    first = today - timedelta(days=days - 1)
    rows = {
        row.day: row
        for row in session.scalars(
            select(DailyCounter).where(
                DailyCounter.account_id == account_id,
                DailyCounter.day >= first,
                DailyCounter.day <= today,
            )
        )
    }
    found = []
    for offset in range(days):
        on = first + timedelta(days=offset)
        row = rows.get(on)
        found.append(
            Day(on, 0, 0, 0, 0, 0, 0)
            if row is None
            else Day(
                on,
                row.sent,
                row.delivered,
                row.soft_bounced + row.hard_bounced,
                row.viewed,
                row.clicked,
                row.unsubscribed,
            )
        )
    return found


@drips_report.counts_emails_with
def _drip_email_counts(
    session: Session, account_id: int, drip_campaign_id: int
) -> dict[str, dict[str, int]]:
    found = drip_email_totals(session, account_id, drip_campaign_id)
    return {node: _as_counts(totals) for node, totals in found.items()}


@mailings_service.counts_sends_with
def _send_counts(
    session: Session, account_id: int, send_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    return {k: _as_counts(t) for k, t in send_totals_by_id(session, account_id, send_ids).items()}


@mailings_service.counts_mailings_with
def _mailing_counts(
    session: Session, account_id: int, mailing_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    return {k: _as_counts(t) for k, t in mailing_totals(session, account_id, mailing_ids).items()}


@subscribers_service.count_messages_with
def subscriber_counts(
    session: Session, account_id: int, subscriber_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Per subscriber of the account: their campaign and drip messages sent (answered for
    good), delivered, opened (a click counts), clicked, soft- and hard-bounced."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(SubscriberCounter).where(
            SubscriberCounter.account_id == account_id,
            SubscriberCounter.subscriber_id.in_(list(subscriber_ids)),
        )
    ).scalars()
    return {
        c.subscriber_id: {
            "deliveries": c.sent,
            "delivered": c.delivered,
            "opened": c.viewed,
            "clicked": c.clicked,
            "soft_bounced": c.soft_bounced,
            "hard_bounced": c.hard_bounced,
        }
        for c in rows
    }


def _as_counts(totals: Totals) -> dict[str, int]:
    return {
        "sent": totals.sent,
        "delivered": totals.delivered,
        "bounced": totals.bounced,
        "soft_bounced": totals.soft_bounced,
        "hard_bounced": totals.hard_bounced,
        "opened": totals.viewed,
        "clicked": totals.clicked,
        "unsubscribed": totals.unsubscribed,
        "human_opened": totals.human_viewed,
        "human_clicked": totals.human_clicked,
    }


# --- the rules registered below ----------------------------------------------------------------


@tracking_service.judges_hits_with
def _judge(seen: tracking_service.Circumstances) -> tracking_service.Judgement:
    facts = engagement.Seen(
        seen.user_agent, seen.remote_addr, seen.seconds_after_send, seen.links_in_same_second
    )
    verdict = (
        engagement.judge_click(facts)
        if seen.kind == tracking_service.CLICK
        else engagement.judge_open(facts)
    )
    return tracking_service.Judgement(verdict.machine, verdict.reason, verdict.proxy)


# --- incremental counting ----------------------------------------------------------------------

_Deltas = dict[str, int]


class _Batch:
    """The deltas of one batch of events, one entry per counter row."""

    def __init__(self) -> None:
        self.sends: dict[int, tuple[int, int, _Deltas]] = {}  # send -> account, mailing, deltas
        self.drip_emails: dict[tuple[int, str], tuple[int, _Deltas]] = {}
        self.links: dict[tuple[int, int, str], tuple[int, _Deltas]] = {}
        self.subscribers: dict[int, tuple[int, _Deltas]] = {}
        self.days: dict[tuple[int, date], _Deltas] = {}

    def add_send(self, send_id: int, account_id: int, mailing_id: int, deltas: _Deltas) -> None:
        entry = self.sends.setdefault(send_id, (account_id, mailing_id, {}))
        _merge(entry[2], deltas)

    def add_drip_email(
        self, campaign_id: int, node_id: str, account_id: int, deltas: _Deltas
    ) -> None:
        _merge(self.drip_emails.setdefault((campaign_id, node_id), (account_id, {}))[1], deltas)

    def add_link(
        self, send_id: int, html_id: int, url: str, account_id: int, deltas: _Deltas
    ) -> None:
        _merge(self.links.setdefault((send_id, html_id, url), (account_id, {}))[1], deltas)

    def add_subscriber(self, subscriber_id: int | None, account_id: int, deltas: _Deltas) -> None:
        if subscriber_id is not None:
            wanted = {k: v for k, v in deltas.items() if k in _SUBSCRIBER_COUNTS}
            _merge(self.subscribers.setdefault(subscriber_id, (account_id, {}))[1], wanted)

    def add_day(self, account_id: int, deltas: _Deltas) -> None:
        # The day the event is counted: now, as it happens, in UTC.
        wanted = {k: v for k, v in deltas.items() if k in _DAILY_COUNTS}
        _merge(self.days.setdefault((account_id, clock.now().date()), {}), wanted)

    def apply(self, connection: Connection) -> None:
        """One statement per counter table: every row it touches, in key order (so two
        transactions never wait on each other's rows in a circle)."""
        _upsert(
            connection,
            SendCounter,
            [
                ({"send_id": k, "account_id": account, "campaign_mailing_id": mailing}, deltas)
                for k, (account, mailing, deltas) in sorted(self.sends.items())
            ],
        )
        _upsert(
            connection,
            DripEmailCounter,
            [
                ({"drip_campaign_id": c, "drip_node_id": n, "account_id": account}, deltas)
                for (c, n), (account, deltas) in sorted(self.drip_emails.items())
            ],
        )
        _upsert(
            connection,
            LinkCounter,
            [
                (
                    {
                        "send_id": send_id,
                        "html_id": html_id,
                        "url_hash": url_hash(url),
                        "target_url": url,
                        "account_id": account,
                    },
                    deltas,
                )
                for (send_id, html_id, url), (account, deltas) in sorted(self.links.items())
            ],
        )
        _upsert(
            connection,
            SubscriberCounter,
            [
                ({"subscriber_id": k, "account_id": account}, deltas)
                for k, (account, deltas) in sorted(self.subscribers.items())
            ],
        )
        _upsert(
            connection,
            DailyCounter,
            [
                ({"account_id": account, "day": on}, deltas)
                for (account, on), deltas in sorted(self.days.items())
            ],
        )


_SUBSCRIBER_COUNTS = ("sent", "delivered", "soft_bounced", "hard_bounced", "viewed", "clicked")
_DAILY_COUNTS = (*_SUBSCRIBER_COUNTS, "unsubscribed")


def _merge(into: _Deltas, deltas: _Deltas) -> None:
    for name, n in deltas.items():
        if n:
            into[name] = into.get(name, 0) + n


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


_COUNTER_COLUMNS: dict[Any, tuple[str, ...]] = {
    SendCounter: _COUNTS,
    DripEmailCounter: _COUNTS,
    LinkCounter: ("clicked", "human_clicked", "clicks"),
    SubscriberCounter: ("sent", "delivered", "soft_bounced", "hard_bounced", "viewed", "clicked"),
    DailyCounter: _DAILY_COUNTS,
}
_KEYS = {
    SendCounter: ["send_id"],
    DripEmailCounter: ["drip_campaign_id", "drip_node_id"],
    LinkCounter: ["send_id", "html_id", "url_hash"],
    SubscriberCounter: ["subscriber_id"],
    DailyCounter: ["account_id", "day"],
}


def _upsert(
    connection: Connection, model: Any, rows: Sequence[tuple[dict[str, Any], _Deltas]]
) -> None:
    """Add each row's deltas to its counter row, creating the rows that do not exist yet:
    one statement, run for every row (each counter row once a batch)."""
    if not rows:
        return
    counts = _COUNTER_COLUMNS[model]
    values = [
        {**key, **{name: deltas.get(name, 0) for name in counts}}
        for key, deltas in rows
        if any(deltas.values())
    ]
    if values:
        connection.execute(_upsert_statement(connection.dialect.name, model), values)


@functools.cache
def _upsert_statement(dialect: str, model: Any) -> Any:
    # Built once per table: building an upsert costs more than running it.
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__
    stmt = make(table)
    return stmt.on_conflict_do_update(
        index_elements=_KEYS[model],
        set_={name: table.c[name] + stmt.excluded[name] for name in _COUNTER_COLUMNS[model]},
    )


def _drip_campaigns(connection: Connection, enrollment_ids: Iterable[int | None]) -> dict[int, int]:
    wanted = sorted({i for i in enrollment_ids if i is not None})
    if not wanted:
        return {}
    rows = connection.execute(
        select(DripEnrollment.id, DripEnrollment.drip_campaign_id).where(
            DripEnrollment.id.in_(wanted)
        )
    )
    return {row[0]: row[1] for row in rows}


_STATUS_COUNTS = {
    DeliveryStatus.DELIVERED: {"sent": 1, "delivered": 1},
    DeliveryStatus.SOFT_BOUNCED: {"sent": 1, "soft_bounced": 1},
    DeliveryStatus.HARD_BOUNCED: {"sent": 1, "hard_bounced": 1},
}


@delivery_finished.on_finished
def count_finished(
    connection: Connection, deliveries: Sequence[delivery_finished.Finished]
) -> None:
    """Count the messages a mail server has just answered for good."""
    counted = [
        d
        for d in deliveries
        if d.status in _STATUS_COUNTS and d.kind in (DeliveryKind.CAMPAIGN, DeliveryKind.DRIP)
    ]
    if not counted:
        return
    campaigns = _drip_campaigns(connection, (d.drip_enrollment_id for d in counted))
    batch = _Batch()
    for d in counted:
        deltas = _STATUS_COUNTS[DeliveryStatus(d.status)]
        batch.add_subscriber(d.subscriber_id, d.account_id, deltas)
        batch.add_day(d.account_id, deltas)
        if d.kind == DeliveryKind.CAMPAIGN and d.send_id is not None:
            batch.add_send(d.send_id, d.account_id, d.campaign_mailing_id, deltas)
        campaign_id = campaigns.get(d.drip_enrollment_id or 0)
        if d.kind == DeliveryKind.DRIP and campaign_id is not None and d.drip_node_id:
            batch.add_drip_email(campaign_id, d.drip_node_id, d.account_id, deltas)
    batch.apply(connection)


@tracking_service.counts_firsts_with
def count_firsts(session: Session, firsts: Sequence[tracking_service.Firsts]) -> None:
    """Count the opens, clicks and unsubscribes a batch of events made for the first time."""
    connection = session.connection()
    counted = [f for f in firsts if f.kind in (DeliveryKind.CAMPAIGN, DeliveryKind.DRIP)]
    if not counted:
        return
    mailings = _send_mailings(connection, (f.send_id for f in counted))
    campaigns = _drip_campaigns(connection, (f.drip_enrollment_id for f in counted))
    batch = _Batch()
    for f in counted:
        deltas = {
            "viewed": int(f.opened),
            "human_viewed": int(f.human_opened),
            "clicked": int(f.clicked),
            "human_clicked": int(f.human_clicked),
            "unsubscribed": int(f.unsubscribed),
            "global_unsubscribed": int(f.unsubscribed and f.all_mail),
        }
        batch.add_subscriber(f.subscriber_id, f.account_id, deltas)
        batch.add_day(f.account_id, deltas)
        if f.kind == DeliveryKind.CAMPAIGN and f.send_id in mailings:
            batch.add_send(f.send_id, f.account_id, mailings[f.send_id], deltas)
            for (html_id, url), link in f.links.items():
                batch.add_link(
                    f.send_id,
                    html_id,
                    url,
                    f.account_id,
                    {
                        "clicked": int(link.first),
                        "human_clicked": int(link.first_human),
                        "clicks": link.clicks,
                    },
                )
        campaign_id = campaigns.get(f.drip_enrollment_id or 0)
        if f.kind == DeliveryKind.DRIP and campaign_id is not None and f.drip_node_id:
            batch.add_drip_email(campaign_id, f.drip_node_id, f.account_id, deltas)
    batch.apply(connection)


def _send_mailings(connection: Connection, send_ids: Iterable[int | None]) -> dict[int, int]:
    wanted = sorted({i for i in send_ids if i is not None})
    if not wanted:
        return {}
    rows = connection.execute(
        select(CampaignMailingSend.id, CampaignMailingSend.campaign_mailing_id).where(
            CampaignMailingSend.id.in_(wanted)
        )
    )
    return {row[0]: row[1] for row in rows}


# --- rebuild -----------------------------------------------------------------------------------


def _message_aggregates() -> list[Any]:
    first_unsubscribe = (
        select(TrackingEvent.delivery_id, func.min(TrackingEvent.id).label("event_id"))
        .where(TrackingEvent.kind == tracking_service.UNSUBSCRIBE)
        .group_by(TrackingEvent.delivery_id)
        .subquery()
    )
    left_all_mail = (
        select(TrackingEvent.delivery_id)
        .join(first_unsubscribe, first_unsubscribe.c.event_id == TrackingEvent.id)
        .where(TrackingEvent.all_mail.is_(True))
        .correlate(None)
    )

    def count_if(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    return [
        count_if(Delivery.status.in_(SENT)).label("sent"),
        count_if(Delivery.status == DeliveryStatus.DELIVERED).label("delivered"),
        count_if(Delivery.status == DeliveryStatus.SOFT_BOUNCED).label("soft_bounced"),
        count_if(Delivery.status == DeliveryStatus.HARD_BOUNCED).label("hard_bounced"),
        func.count(Delivery.opened_at).label("viewed"),
        func.count(Delivery.human_opened_at).label("human_viewed"),
        func.count(Delivery.clicked_at).label("clicked"),
        func.count(Delivery.human_clicked_at).label("human_clicked"),
        func.count(Delivery.unsubscribed_at).label("unsubscribed"),
        count_if(
            Delivery.unsubscribed_at.is_not(None) & Delivery.id.in_(left_all_mail.scalar_subquery())
        ).label("global_unsubscribed"),
    ]


def rebuild(session: Session, account_id: int | None = None) -> None:
    """Recompute every counter (of one account, or of all) from the delivery and event rows:
    a repair, and the check the incremental counters are tested against."""
    mine = [] if account_id is None else [Delivery.account_id == account_id]
    for model in (SendCounter, DripEmailCounter, LinkCounter, SubscriberCounter, DailyCounter):
        stmt = delete(model)
        if account_id is not None:
            stmt = stmt.where(model.account_id == account_id)
        session.execute(stmt)
    sends = select(
        Delivery.send_id, Delivery.account_id, Delivery.campaign_mailing_id, *_message_aggregates()
    ).where(*mine, Delivery.kind == DeliveryKind.CAMPAIGN, Delivery.send_id.is_not(None))
    sends = sends.group_by(Delivery.send_id, Delivery.account_id, Delivery.campaign_mailing_id)
    session.execute(
        insert(SendCounter).from_select(
            ["send_id", "account_id", "campaign_mailing_id", *_COUNTS], sends
        )
    )
    drips = (
        select(
            DripEnrollment.drip_campaign_id,
            Delivery.drip_node_id,
            Delivery.account_id,
            *_message_aggregates(),
        )
        .join(DripEnrollment, DripEnrollment.id == Delivery.drip_enrollment_id)
        .where(*mine, Delivery.kind == DeliveryKind.DRIP, Delivery.drip_node_id.is_not(None))
        .group_by(DripEnrollment.drip_campaign_id, Delivery.drip_node_id, Delivery.account_id)
    )
    session.execute(
        insert(DripEmailCounter).from_select(
            ["drip_campaign_id", "drip_node_id", "account_id", *_COUNTS], drips
        )
    )
    aggregates = {a.name: a for a in _message_aggregates()}
    people = (
        select(
            Delivery.subscriber_id,
            Delivery.account_id,
            *(aggregates[name] for name in _SUBSCRIBER_COUNTS),
        )
        .where(
            *mine,
            Delivery.kind.in_([DeliveryKind.CAMPAIGN, DeliveryKind.DRIP]),
            Delivery.subscriber_id.is_not(None),
        )
        .group_by(Delivery.subscriber_id, Delivery.account_id)
    )
    session.execute(
        insert(SubscriberCounter).from_select(
            ["subscriber_id", "account_id", *_SUBSCRIBER_COUNTS], people
        )
    )
    html_id = func.coalesce(TrackingEvent.html_id, 0)
    url = func.coalesce(TrackingEvent.url, "")
    links = session.execute(
        select(
            Delivery.send_id,
            Delivery.account_id,
            html_id.label("html_id"),
            url.label("url"),
            func.count(func.distinct(TrackingEvent.delivery_id)).label("clicked"),
            func.count(
                func.distinct(case((TrackingEvent.machine.is_(False), TrackingEvent.delivery_id)))
            ).label("human_clicked"),
            func.count().label("clicks"),
        )
        .join(Delivery, Delivery.id == TrackingEvent.delivery_id)
        .where(
            *mine,
            TrackingEvent.kind == tracking_service.CLICK,
            Delivery.kind == DeliveryKind.CAMPAIGN,
            Delivery.send_id.is_not(None),
        )
        .group_by(Delivery.send_id, Delivery.account_id, html_id, url)
    )
    rows = [
        {
            "send_id": r.send_id,
            "account_id": r.account_id,
            "html_id": r.html_id,
            "url_hash": url_hash(r.url),
            "target_url": r.url,
            "clicked": r.clicked,
            "human_clicked": r.human_clicked,
            "clicks": r.clicks,
        }
        for r in links
    ]
    for start in range(0, len(rows), 1000):
        session.execute(insert(LinkCounter), rows[start : start + 1000])
    _rebuild_days(session, mine)


def _rebuild_days(session: Session, mine: list[Any]) -> None:
    """Each message on the day it was answered for good, first opened, clicked, unsubscribed."""
    ours = [*mine, Delivery.kind.in_([DeliveryKind.CAMPAIGN, DeliveryKind.DRIP])]
    days: dict[tuple[int, date], _Deltas] = {}

    def add(account_id: int, on: object, counts: Any) -> None:
        key = (account_id, date.fromisoformat(str(on)[:10]))
        wanted = {k: int(v) for k, v in counts.items() if k in _DAILY_COUNTS}
        _merge(days.setdefault(key, {}), wanted)

    finished = func.date(Delivery.finished_at)
    aggregates = {a.name: a for a in _message_aggregates()}
    for row in session.execute(
        select(
            Delivery.account_id,
            finished.label("on"),
            *(aggregates[n] for n in ("sent", "delivered", "soft_bounced", "hard_bounced")),
        )
        .where(*ours, Delivery.status.in_(SENT), Delivery.finished_at.is_not(None))
        .group_by(Delivery.account_id, finished)
    ):
        add(row.account_id, row.on, dict(row._mapping))
    for column, name in (
        (Delivery.opened_at, "viewed"),
        (Delivery.clicked_at, "clicked"),
        (Delivery.unsubscribed_at, "unsubscribed"),
    ):
        on = func.date(column)
        for account_id, when, n in session.execute(
            select(Delivery.account_id, on, func.count())
            .where(*ours, column.is_not(None))
            .group_by(Delivery.account_id, on)
        ):
            add(account_id, when, {name: n})
    rows = [
        {"account_id": account, "day": on, **{n: deltas.get(n, 0) for n in _DAILY_COUNTS}}
        for (account, on), deltas in sorted(days.items())
    ]
    for start in range(0, len(rows), 1000):
        session.execute(insert(DailyCounter), rows[start : start + 1000])
