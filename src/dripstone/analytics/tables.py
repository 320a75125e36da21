"""The rows of the analytics tables, read a batch at a time so any size streams in constant
memory.

Ids in and out are public uuids; an id that is not this account's names nothing, so its
table is empty and its totals are zero. Rows are plain dicts in the shape the API answers
with; a property with no value (a name never given, a link never clicked) is left out rather
than sent as null. A table read with `Page(items=None)` is every row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dripstone import db
from dripstone.analytics import counters
from dripstone.db import AccountScope, ordering
from dripstone.delivery import pipeline
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import BOUNCED, Delivery, DeliveryStatus
from dripstone.delivery.prepare import PreparedMailing
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import TemplateError
from dripstone.errors import BadRequest
from dripstone.mailings.models import CampaignMailing, CampaignMailingSend
from dripstone.subscribers.models import CustomFieldType, CustomFieldValue, Subscriber
from dripstone.tracking.models import TrackingEvent
from dripstone.tracking.service import CLICK
from dripstone.wire import is_uuid

Order = Literal["asc", "desc"]
SendOrder = Literal[
    "created_at", "sent_at", "campaign_mailing_created_at", "subscription_list_name"
]
LinkOrder = Literal["created_at", "html_id", "target_url", "clicked"]
SubscriberOrder = Literal["created_at", "email", "first_name", "last_name"]
TrackingLinkOrder = Literal["created_at"]

BATCH = 1000
"""Rows fetched from the database cursor at a time (and deliveries whose clicks are looked
up in one query)."""

SEARCHABLE = ("id", "campaign_mailing_id", "marketing_email_id", "subscription_list_name")
_LINK_TOKENS = TrackingTokens("analytics-links-" + "x" * 32, "https://example.invalid")

Row = dict[str, Any]
AnySelect = Select[*tuple[Any, ...]]
S = TypeVar("S", bound=AnySelect)


@dataclass(frozen=True)
class Page:
    """`items` rows from page `page` (1 is the first); items None: every row."""

    items: int | None = None
    page: int = 1

    def apply(self, stmt: S) -> S:
        if self.items is None:
            return stmt
        return stmt.limit(self.items).offset((self.page - 1) * self.items)


def stream(read: Callable[[Session], Iterator[Row]]) -> Iterator[Row]:
    """The rows of `read`, on a read session of its own that lives as long as the stream
    (a response streams after the request's own session has closed)."""
    with db.database().read_sessions() as session:
        yield from read(session)


def iso(moment: datetime) -> str:
    """A timestamp as the rest of the API writes it: RFC 3339 in UTC, with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- ids ---------------------------------------------------------------------------------------


def send_of(scope: AccountScope, send_id: str) -> CampaignMailingSend | None:
    return scope.by_uuid(CampaignMailingSend, send_id)


def mailing_of(scope: AccountScope, mailing_id: str) -> CampaignMailing | None:
    return scope.by_uuid(CampaignMailing, mailing_id)


# --- totals and links --------------------------------------------------------------------------


def send_totals(scope: AccountScope, send_id: str | None) -> counters.Totals:
    """One send's totals (zero for a send that is not the account's), or the account's."""
    if send_id is None:
        return counters.send_totals(scope.session, scope.account_id, None)
    send = send_of(scope, send_id)
    if send is None:
        return counters.Totals.zero()
    return counters.send_totals(scope.session, scope.account_id, send.id)


@lru_cache(maxsize=256)
def links_in(html: str | None) -> Mapping[int, str]:
    """html_id -> href as written, for the tracked links of a send's HTML, in document order
    (numbered as the messages' click URLs number them)."""
    if html is None or not html.strip():
        return {}
    try:
        prepared = PreparedMailing(subject="-", html=html, text=None, tokens=_LINK_TOKENS)
    except TemplateError:
        return {}
    return dict(prepared.links)


def unique_links(scope: AccountScope, send_id: str, order_by: LinkOrder, order: Order) -> list[Row]:
    """Every tracked link of the send's HTML with who clicked it (links never clicked too)."""
    send = send_of(scope, send_id)
    if send is None:
        return []
    clicks = {c.html_id: c for c in counters.link_clicks(scope.session, scope.account_id, send.id)}
    rows: list[Row] = []
    for html_id, href in {**dict.fromkeys(clicks, ""), **links_in(send.html_part)}.items():
        counted = clicks.get(html_id)
        target = href or (counted.target_url if counted else "")
        rows.append(
            {
                "html_id": html_id,
                "target_url": target,
                "clicked": counted.clicked if counted else 0,
                "human_clicked": counted.human_clicked if counted else 0,
                "clicks": counted.clicks if counted else 0,
            }
        )
    key = "html_id" if order_by == "created_at" else order_by
    rows.sort(key=lambda row: (row[key], row["html_id"]), reverse=order == "desc")
    return rows


# --- the sends table ---------------------------------------------------------------------------


def parse_search(text: str | None) -> dict[str, str]:
    """The `{"field": "value", ...}` filter of the sends table; BadRequest naming `search`."""
    if text is None or not text.strip():
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        raise BadRequest(
            'search: not valid JSON; send an object such as {"subscription_list_name": "News"}',
            field="search",
        ) from None
    if not isinstance(found, dict):
        raise BadRequest("search: must be a JSON object of field: value pairs", field="search")
    for name, value in found.items():
        if name not in SEARCHABLE:
            raise BadRequest(
                f"search: cannot search on {name!r}; searchable are {', '.join(SEARCHABLE)}",
                field="search",
            )
        if not isinstance(value, str) or "\x00" in value:
            raise BadRequest(f"search: the value of {name!r} must be text", field="search")
    return found


def sends_table(
    session: Session,
    account_id: int,
    search: Mapping[str, str],
    order_by: SendOrder,
    order: Order,
    page: Page,
) -> Iterator[Row]:
    """The account's campaign sends that have begun, one row each."""
    columns = {
        "created_at": CampaignMailingSend.created_at,
        "sent_at": CampaignMailingSend.started_at,
        "campaign_mailing_created_at": CampaignMailing.created_at,
        "subscription_list_name": CampaignMailingSend.list_name,
    }
    stmt = (
        select(
            CampaignMailingSend.uuid,
            CampaignMailingSend.started_at,
            CampaignMailingSend.list_name,
            CampaignMailing.uuid.label("mailing_uuid"),
            CampaignMailing.created_at.label("mailing_created_at"),
        )
        .join(CampaignMailing, CampaignMailing.id == CampaignMailingSend.campaign_mailing_id)
        .where(
            CampaignMailingSend.account_id == account_id,
            CampaignMailingSend.started_at.is_not(None),
        )
        .order_by(*ordering(columns[order_by], CampaignMailingSend.id, order))
    )
    for name, value in search.items():
        if name == "id":
            stmt = stmt.where(CampaignMailingSend.uuid == value.lower())
        elif name in ("campaign_mailing_id", "marketing_email_id"):
            stmt = stmt.where(CampaignMailing.uuid == value.lower())
        else:
            pattern = "%" + value.lower().replace("\\", "\\\\").replace("%", "\\%") + "%"
            pattern = pattern.replace("_", "\\_")
            stmt = stmt.where(func.lower(CampaignMailingSend.list_name).like(pattern, escape="\\"))
    for row in session.execute(page.apply(stmt).execution_options(yield_per=BATCH)):
        yield {
            "id": row.uuid,
            "marketing_email_id": row.mailing_uuid,
            "campaign_mailing_id": row.mailing_uuid,
            "campaign_mailing_created_at": iso(row.mailing_created_at),
            "sent_at": iso(row.started_at),
            "subscription_list_name": row.list_name,
        }


# --- who clicked a link ------------------------------------------------------------------------


def subscriber_columns(session: Session, account_id: int) -> list[tuple[str, str]]:
    """(uuid, name) of the account's custom fields, in the order they were made."""
    rows = session.execute(
        select(CustomFieldType.uuid, CustomFieldType.name)
        .where(CustomFieldType.account_id == account_id)
        .order_by(CustomFieldType.id)
    )
    return [(row.uuid, row.name) for row in rows]


def link_clickers(
    session: Session,
    account_id: int,
    send_id: int | None,
    html_id: int,
    order_by: SubscriberOrder,
    order: Order,
    page: Page,
) -> Iterator[Row]:
    """The subscribers who clicked link `html_id` of the send, each once."""
    if send_id is None:
        return
    clicked = _clicked(account_id, send_id, html_id)
    column = getattr(Subscriber, order_by)
    stmt = (
        select(
            Subscriber.id,
            Subscriber.uuid,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.last_name,
        )
        .where(Subscriber.account_id == account_id, Subscriber.id.in_(clicked))
        .order_by(*ordering(column, Subscriber.id, order))
    )
    result = session.execute(page.apply(stmt).execution_options(yield_per=BATCH))
    for batch in result.partitions():
        values = _custom_values(session, [row.id for row in batch])
        for row in batch:
            # Strings, never null, like every subscriber answer of the API.
            attributes: Row = {
                "email": row.email or "",
                "first_name": row.first_name or "",
                "last_name": row.last_name or "",
                "custom_fields": values.get(row.id, []),
            }
            yield {"id": row.uuid, "type": "subscriber", "attributes": attributes}


def _campaign_deliveries(account_id: int, send_id: int) -> list[Any]:
    return [
        Delivery.account_id == account_id,
        Delivery.send_id == send_id,
        Delivery.kind == DeliveryKind.CAMPAIGN.value,
    ]


def _click_on(html_id: int) -> list[Any]:
    """The click events on link `html_id`: with the campaign deliveries of a send, the one
    rule of who clicked a link."""
    return [TrackingEvent.kind == CLICK, TrackingEvent.html_id == html_id]


def _clicked(account_id: int, send_id: int, html_id: int) -> AnySelect:
    """The ids of the subscribers who clicked link `html_id` of the send."""
    return (
        select(Delivery.subscriber_id)
        .join(TrackingEvent, TrackingEvent.delivery_id == Delivery.id)
        .where(*_campaign_deliveries(account_id, send_id), *_click_on(html_id))
    )


@dataclass(frozen=True)
class Clicker:
    """A subscriber who clicked a link, for a page of them."""

    id: str
    email: str
    first_name: str
    last_name: str


CLICKED_PER_PAGE = 5000
"""Clicked deliveries one page of who clicked a link looks through at most."""


def clickers_after(
    scope: AccountScope, send_id: int, html_id: int, after: str | None, items: int
) -> tuple[list[Clicker], str | None]:
    """Up to `items` subscribers who clicked link `html_id` of the send, in subscriber order,
    after the subscriber whose public id is `after` (None: from the first); and the public
    id to ask for the next page with (None: this was the last).

    It walks the send's clicked deliveries on the (send, subscriber) index (one delivery per
    subscriber), looking for a click on the link in each, and looks through at most
    `CLICKED_PER_PAGE` of them: a page costs the same however rarely the link was clicked,
    and a page of a rarely clicked link may hold fewer than `items` (even none) with more
    to come.
    """
    size = _window(scope, send_id, html_id, items)
    walk = (
        select(Delivery.id, Delivery.subscriber_id)
        .where(
            *_campaign_deliveries(scope.account_id, send_id),
            Delivery.clicked_at.is_not(None),  # set by a delivery's first click of any link
        )
        .order_by(Delivery.subscriber_id)
        .limit(size)
    )
    window = _after(scope, walk, after, Delivery.subscriber_id).subquery()
    clicked_link = (
        select(TrackingEvent.id)
        .where(TrackingEvent.delivery_id == window.c.id, *_click_on(html_id))
        .exists()
    )
    stmt = (
        select(
            Subscriber.id,
            Subscriber.uuid,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.last_name,
        )
        .select_from(window)
        .join(Subscriber, Subscriber.id == window.c.subscriber_id)
        .where(clicked_link)
        .order_by(window.c.subscriber_id)
        .limit(items + 1)
    )
    rows = list(scope.session.execute(stmt))
    found = [
        Clicker(row.uuid, row.email or "", row.first_name or "", row.last_name or "")
        for row in rows[:items]
    ]
    if len(rows) > items:
        return found, found[-1].id
    # Fewer than a page: the window ended the walk, or the window was full and more clicked
    # deliveries follow it.
    looked = scope.session.execute(
        select(func.count(), func.max(window.c.subscriber_id)).select_from(window)
    ).one()
    if looked[0] < size:
        return found, None
    last = scope.session.scalar(
        scope.select(Subscriber, Subscriber.uuid).where(Subscriber.id == looked[1])
    )
    return found, last


def _window(scope: AccountScope, send_id: int, html_id: int, items: int) -> int:
    """How many clicked deliveries to look through for a page: from the counters, about
    twice what holds `items` clickers of this link, within `CLICKED_PER_PAGE`."""
    link = sum(
        c.clicked
        for c in counters.link_clicks(scope.session, scope.account_id, send_id)
        if c.html_id == html_id
    )
    clicked = counters.send_totals(scope.session, scope.account_id, send_id).clicked
    wanted = 2 * (items + 1) * -(-max(clicked, 1) // max(link, 1))
    return max(items + 1, min(CLICKED_PER_PAGE, wanted))


def _after(scope: AccountScope, stmt: S, after: str | None, column: Any = Subscriber.id) -> S:
    """Keyset paging by subscriber: rows past the subscriber with public id `after` (one
    lookup by its unique id; an id of no subscriber of the account starts from the first)."""
    if after is None or not is_uuid(after):
        return stmt
    found = scope.session.scalar(
        scope.select(Subscriber, Subscriber.id).where(Subscriber.uuid == after.lower())
    )
    return stmt if found is None else stmt.where(column > found)


@dataclass(frozen=True)
class DeliveryState:
    """One delivery of a send as its page shows it: where it stands and the relay's last
    answer."""

    subscriber_id: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    smtp_code: int | None
    smtp_reply: str | None
    viewed: bool
    clicked: bool
    unsubscribed: bool

    @property
    def deferred(self) -> bool:
        """Waiting for another attempt after the relay said "later"."""
        return self.status == DeliveryStatus.PENDING and self.attempts > 0


def deliveries_after(
    scope: AccountScope, send_id: int, after: str | None, items: int
) -> tuple[list[DeliveryState], str | None]:
    """Up to `items` campaign deliveries of the send with their states, in subscriber order,
    after the one to the subscriber whose public id is `after`; and the public id to ask for
    the next page with (None: this was the last).

    A send makes its deliveries batch after batch in subscriber order, so this is about the
    order they were made in; paging by subscriber walks the (send, subscriber) index, so
    every page costs the same on a send of any size. Deliveries whose subscriber has since
    been deleted are in the deliveries table (and its CSV) only.
    """
    stmt = (
        select(
            Delivery.email,
            Delivery.status,
            Delivery.attempts,
            Delivery.smtp_code,
            Delivery.smtp_reply,
            Delivery.opened_at,
            Delivery.clicked_at,
            Delivery.unsubscribed_at,
            Subscriber.uuid,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.account_id == scope.account_id,
            Delivery.send_id == send_id,
            Delivery.kind == DeliveryKind.CAMPAIGN.value,
        )
    )
    stmt = _after(scope, stmt, after, Delivery.subscriber_id)
    rows = list(scope.session.execute(stmt.order_by(Delivery.subscriber_id).limit(items + 1)))
    found = [
        DeliveryState(
            subscriber_id=row.uuid,
            recipient=row.email,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            smtp_code=row.smtp_code,
            smtp_reply=row.smtp_reply,
            viewed=row.opened_at is not None or row.clicked_at is not None,
            clicked=row.clicked_at is not None,
            unsubscribed=row.unsubscribed_at is not None,
        )
        for row in rows[:items]
    ]
    return found, (found[-1].subscriber_id if len(rows) > items else None)


def _custom_values(session: Session, subscriber_ids: Sequence[int]) -> dict[int, list[Row]]:
    found: dict[int, list[Row]] = defaultdict(list)
    rows = session.execute(
        select(CustomFieldValue.subscriber_id, CustomFieldType.uuid, CustomFieldValue.value)
        .join(CustomFieldType, CustomFieldType.id == CustomFieldValue.field_type_id)
        .where(CustomFieldValue.subscriber_id.in_(subscriber_ids))
        .order_by(CustomFieldValue.subscriber_id, CustomFieldType.id)
    )
    for row in rows:
        found[row.subscriber_id].append(
            {"subscriber_custom_field_type_id": row.uuid, "value": row.value}
        )
    return found


# --- deliveries and their links ----------------------------------------------------------------


def _deliveries(
    session: Session, account_id: int, send_id: int | None, mailing_id: int | None, order: Order
) -> AnySelect:
    stmt = select(
        Delivery.id,
        Delivery.email,
        Delivery.status,
        Delivery.created_at,
        Delivery.opened_at,
        Delivery.clicked_at,
        Delivery.unsubscribed_at,
    ).where(Delivery.account_id == account_id, Delivery.kind == DeliveryKind.CAMPAIGN.value)
    # In id order, the order they were made. The (send_id, status) and (mailing, status)
    # indexes would make SQLite sort every row before the first comes out; `+ 0` keeps it on
    # the account's index, which is in id order, so rows stream from the first fetch.
    # PostgreSQL plans a cursor for its first rows by itself.
    sqlite = session.get_bind().dialect.name == "sqlite"
    send_key = Delivery.send_id + 0 if sqlite else Delivery.send_id
    mailing_key = Delivery.campaign_mailing_id + 0 if sqlite else Delivery.campaign_mailing_id
    if send_id is not None:
        stmt = stmt.where(send_key == send_id)
    if mailing_id is not None:
        stmt = stmt.where(mailing_key == mailing_id)
    return stmt.order_by(Delivery.id.asc() if order == "asc" else Delivery.id.desc())


def _clicks_by_delivery(session: Session, delivery_ids: Sequence[int], key: Any) -> list[Any]:
    return list(
        session.execute(
            select(
                TrackingEvent.delivery_id,
                key.label("key"),
                func.count().label("clicks"),
                func.min(TrackingEvent.occurred_at).label("first"),
                func.min(TrackingEvent.url).label("url"),
            )
            .where(TrackingEvent.delivery_id.in_(delivery_ids), TrackingEvent.kind == CLICK)
            .group_by(TrackingEvent.delivery_id, key)
        )
    )


def deliveries_table(
    session: Session, account_id: int, send_id: int | None, mailing_id: int | None, page: Page
) -> Iterator[Row]:
    """One row per campaign delivery of the send (or of every send of the mailing), in the
    order they were made, with its clicks per URL. Both ids None: no rows."""
    if send_id is None and mailing_id is None:
        return
    stmt = page.apply(_deliveries(session, account_id, send_id, mailing_id, "asc"))
    result = session.execute(stmt.execution_options(yield_per=BATCH))
    for batch in result.partitions():
        links: dict[int, dict[str, str]] = defaultdict(dict)
        for click in _clicks_by_delivery(session, [row.id for row in batch], TrackingEvent.url):
            links[click.delivery_id][click.key or ""] = str(click.clicks)
        for row in batch:
            yield {
                "recipient": row.email,
                "created_at": iso(row.created_at),
                "delivered": row.status == DeliveryStatus.DELIVERED,
                "viewed": row.opened_at is not None or row.clicked_at is not None,
                "clicked": row.clicked_at is not None,
                "bounced": row.status in BOUNCED,
                "unsubscribed": row.unsubscribed_at is not None,
                "tracking_links": links.get(row.id, {}),
            }


def tracking_links(
    session: Session,
    account_id: int,
    send_id: int | None,
    html: str | None,
    order: Order,
    page: Page,
) -> Iterator[Row]:
    """One row per tracked link of each campaign delivery of the send: its clicks, and when
    it was first clicked. Deliveries in the order they were made (then html_id), `order`
    choosing the direction."""
    written = links_in(html)
    if send_id is None or not written:
        return
    html_ids = sorted(written, reverse=order == "desc")
    per_delivery = page.items and -(-page.items // len(html_ids))
    skip = 0
    stmt = _deliveries(session, account_id, send_id, None, order)
    if page.items is not None and per_delivery:
        # Page over (delivery, link) rows: fetch the deliveries that page touches.
        first_row = (page.page - 1) * page.items
        skip = first_row % len(html_ids)
        stmt = stmt.offset(first_row // len(html_ids)).limit(per_delivery + 1)
    left = page.items
    public_id = pipeline.pipeline().tokens.public_id
    result = session.execute(stmt.execution_options(yield_per=BATCH))
    for batch in result.partitions():
        clicks = {
            (click.delivery_id, click.key): click
            for click in _clicks_by_delivery(
                session, [row.id for row in batch], TrackingEvent.html_id
            )
        }
        for row in batch:
            delivery_id = public_id(row.id)
            for html_id in html_ids:
                if skip:
                    skip -= 1
                    continue
                if left is not None:
                    if left == 0:
                        return
                    left -= 1
                click = clicks.get((row.id, html_id))
                attributes: Row = {
                    "target_url": (click.url if click is not None else None) or written[html_id],
                    "clicked": click.clicks if click is not None else 0,
                    "campaign_mailing_delivery_id": delivery_id,
                }
                if click is not None:
                    attributes["opened_at"] = iso(click.first)
                yield {
                    "id": f"{delivery_id}-{html_id}",
                    "type": "tracking_link",
                    "attributes": attributes,
                }


def either_id_required(send_id: str | None, mailing_id: str | None) -> None:
    if send_id is None and mailing_id is None:
        raise BadRequest(
            "campaign_mailing_send_id: give campaign_mailing_send_id or campaign_mailing_id",
            field="campaign_mailing_send_id",
        )
