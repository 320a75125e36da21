"""Advancing due enrollments through the engine, exactly once.

A batch of due enrollments is taken with `FOR UPDATE SKIP LOCKED` (SQLite has one writer) and
advanced in the same transaction that records what the steps did: the delivery rows of email
nodes (unique per enrollment and node), the node visits (unique per enrollment and node),
actions, and each enrollment's new position. A crash rolls all of it back and the batch is
simply due again; a redelivered task or a second worker finds the rows locked or no longer
due. An enrollment whose step cannot be carried out is set aside with its reason and never
holds up the rest of its batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.accounts.models import Account
from dripstone.db import (
    AccountScope,
    Database,
    insert_ignoring_duplicates,
)
from dripstone.delivery import audience
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import Delivery, due_delivery
from dripstone.drips import counters, engine
from dripstone.drips.graph import (
    CUSTOM_FIELD_PREFIX,
    Graph,
    GraphError,
    custom_field_name,
    parse_graph,
)
from dripstone.drips.models import (
    DripCampaign,
    DripEnrollment,
    DripNodeVisit,
    DripState,
    EnrollmentState,
)
from dripstone.errors import DripstoneError
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers import custom_fields, membership, subscriptions
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
    Subscription,
    SubscriptionList,
)
from dripstone.tracking.models import TrackingEvent
from dripstone.tracking.service import CLICK

log = logging.getLogger(__name__)


ADVANCE_BATCH = 500


ADVANCE_BUDGET_SECONDS = 5.0


TIMEZONE_FIELD = "timezone"


def _due() -> Any:
    return and_(
        DripEnrollment.state == EnrollmentState.ACTIVE,
        DripEnrollment.next_run_at <= clock.now(),
        DripEnrollment.drip_campaign_id.in_(
            select(DripCampaign.id).where(DripCampaign.state == DripState.STARTED)
        ),
    )


def has_due_steps(database: Database) -> bool:
    with database.reader.connect() as connection:
        return (
            connection.execute(select(DripEnrollment.id).where(_due()).limit(1)).first() is not None
        )


def advance_due(database: Database, batch_size: int = ADVANCE_BATCH) -> int:
    """Advance due enrollments, a batch per transaction, until none is due or the time budget
    is spent. Returns how many enrollments were advanced."""
    started = time.monotonic()
    advanced = 0
    while time.monotonic() - started < ADVANCE_BUDGET_SECONDS:
        with database.transaction() as session:
            done = _advance_batch(session, batch_size)
        advanced += done
        if done == 0:
            break
    return advanced


@dataclass
class Subject:
    """What the runner knows of an enrollment's subscriber."""

    id: int
    uuid: str
    email: str | None
    opted_out: bool
    fields: dict[str, str | None]
    lists: set[str]
    timezone: str | None = None


def _advance_batch(session: Session, batch_size: int) -> int:
    enrollments = session.scalars(
        select(DripEnrollment)
        .where(_due())
        .order_by(DripEnrollment.next_run_at, DripEnrollment.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    if not enrollments:
        return 0
    now = clock.now()
    # Held shared, so no edit replaces a graph this batch steps by. A campaign being edited
    # is skipped rather than waited for (the edit waits for this batch's enrollments: that
    # would deadlock); its enrollments are simply due again.
    campaigns = {
        c.id: c
        for c in session.scalars(
            select(DripCampaign)
            .where(
                DripCampaign.id.in_({e.drip_campaign_id for e in enrollments}),
                DripCampaign.state
                == DripState.STARTED,  # not paused since the enrollments were read
            )
            .with_for_update(read=True, skip_locked=True)
        )
    }
    enrollments = [e for e in enrollments if e.drip_campaign_id in campaigns]
    was_at = {e.id: e.node_id for e in enrollments}
    graphs: dict[int, Graph] = {}
    broken: dict[int, str] = {}
    for cid, c in campaigns.items():
        try:
            graphs[cid] = _graph(c)
        except GraphError as exc:
            broken[cid] = f"the campaign's graph is no longer valid: {exc}"
    mailing_ids = _mailing_ids(session, campaigns.values(), graphs)
    # The list an unsubscribe from a campaign's email leaves (None: All contacts, all mail).
    leaves = {
        row[0]: None if row[1] else row[0]
        for row in session.execute(
            select(SubscriptionList.id, SubscriptionList.is_default).where(
                SubscriptionList.id.in_({c.subscription_list_id for c in campaigns.values()})
            )
        )
    }
    zones = {
        row[0]: row[1]
        for row in session.execute(
            select(Account.id, Account.timezone).where(
                Account.id.in_({c.account_id for c in campaigns.values()})
            )
        )
    }
    people = subjects(session, [e.subscriber_id for e in enrollments if e.subscriber_id])
    suppressed = _suppressed(session, enrollments, people)
    members = _list_members(session, campaigns.values(), people)
    opened, clicked = _engagement(session, [e.id for e in enrollments])
    deliveries: list[dict[str, Any]] = []
    visits: list[dict[str, Any]] = []
    for enrollment in enrollments:
        campaign = campaigns[enrollment.drip_campaign_id]
        person = people.get(enrollment.subscriber_id or 0)
        reason = _exit_reason(enrollment, campaign, person, suppressed, members)
        if reason is not None or person is None:
            _leave(enrollment, EnrollmentState.EXITED, now, reason)
            continue
        if campaign.id in broken:
            _set_aside(enrollment, now, broken[campaign.id])
            continue
        graph = graphs[campaign.id]
        if enrollment.node_id not in graph.nodes:  # the graph changed under a running batch
            _leave(
                enrollment,
                EnrollmentState.EXITED,
                now,
                f"its step {enrollment.node_id!r} no longer exists",
            )
            continue
        facts = engine.Facts(
            subscriber_key=person.uuid,
            fields=person.fields,
            lists=frozenset(person.lists),
            opened=frozenset(opened.get(enrollment.id, ())),
            clicked={k: frozenset(v) for k, v in clicked.get(enrollment.id, {}).items()},
            timezone=person.timezone,
        )
        try:
            step = engine.advance(
                graph,
                engine.Position(enrollment.node_id, enrollment.arrived_at),
                facts,
                now,
                zones.get(campaign.account_id) or "UTC",
            )
        except ValueError as exc:
            _set_aside(enrollment, now, f"its step {enrollment.node_id!r} cannot be taken: {exc}")
            continue
        unsent = next(
            (
                effect
                for effect in step.effects
                if isinstance(effect, engine.SendEmail)
                and (campaign.account_id, effect.mailing_id) not in mailing_ids
            ),
            None,
        )
        if unsent is not None:
            _set_aside(
                enrollment,
                now,
                f"its email step {unsent.node_id!r} sends the campaign mailing "
                f"{unsent.mailing_id}, which was deleted",
            )
            continue
        try:
            emails, left = _carry_out(session, step.effects, campaign, person)
        except _ActionFailed as exc:
            _set_aside(enrollment, now, str(exc))
            continue
        deliveries.extend(
            _delivery_row(
                campaign,
                enrollment,
                person,
                email,
                mailing_ids[(campaign.account_id, email.mailing_id)],
                now,
                leaves.get(campaign.subscription_list_id),
            )
            for email in emails
        )
        for node_id in (enrollment.node_id, *step.visited):
            visits.append(
                {
                    "enrollment_id": enrollment.id,
                    "node_id": node_id,
                    "drip_campaign_id": campaign.id,
                    "entered_at": now,
                }
            )
        if left:
            _leave(enrollment, EnrollmentState.EXITED, now, "unsubscribed by the campaign's action")
        elif step.position is None:
            _leave(enrollment, EnrollmentState.COMPLETED, now, None)
        else:
            enrollment.node_id = step.position.node_id
            enrollment.arrived_at = step.position.arrived_at
            enrollment.next_run_at = step.wake_at or now
    deltas = counters.Deltas()
    for enrollment in enrollments:
        if (
            enrollment.state != EnrollmentState.ACTIVE
            or enrollment.node_id != was_at[enrollment.id]
        ):
            deltas.move(enrollment.drip_campaign_id, was_at[enrollment.id], "waiting", -1)
            deltas.left(enrollment.drip_campaign_id, enrollment.node_id, enrollment.state)
    visits = _new_visits(session, visits)
    for visit in visits:
        deltas.move(visit["drip_campaign_id"], visit["node_id"], "entered")
    if visits:
        session.execute(
            insert_ignoring_duplicates(session, DripNodeVisit, "enrollment_id", "node_id"), visits
        )
    if deliveries:
        session.execute(
            insert_ignoring_duplicates(session, Delivery, "drip_enrollment_id", "drip_node_id"),
            deliveries,
        )
    # Last, so that runners stepping the same campaign wait on its counter rows only briefly.
    counters.add(session, deltas)
    return len(enrollments)


def _new_visits(session: Session, visits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visits not recorded yet, each once: every step records the node it starts from
    again, and a live edit can send an enrollment back to a node it entered before."""
    if not visits:
        return []
    known = {
        (row[0], row[1])
        for row in session.execute(
            select(DripNodeVisit.enrollment_id, DripNodeVisit.node_id).where(
                DripNodeVisit.enrollment_id.in_({v["enrollment_id"] for v in visits})
            )
        )
    }
    fresh: dict[tuple[int, str], dict[str, Any]] = {}
    for visit in visits:
        key = (visit["enrollment_id"], visit["node_id"])
        if key not in known:
            fresh.setdefault(key, visit)
    return list(fresh.values())


_graphs: dict[tuple[int, str], Graph] = {}


def _graph(campaign: DripCampaign) -> Graph:
    key = (campaign.id, campaign.nodes)
    found = _graphs.get(key)
    if found is None:
        if len(_graphs) > 512:
            _graphs.clear()
        found = _graphs[key] = parse_graph(campaign.nodes)
    return found


def _leave(enrollment: DripEnrollment, state: str, now: datetime, reason: str | None) -> None:
    enrollment.state = state
    enrollment.finished_at = now
    enrollment.exit_reason = reason


def _set_aside(enrollment: DripEnrollment, now: datetime, reason: str) -> None:
    """Take out an enrollment whose step cannot be carried out, nothing of the step done,
    so that it never holds up the rest of its batch; the reason shows in the report."""
    log.warning(
        "drip campaign %s: enrollment %s set aside: %s",
        enrollment.drip_campaign_id,
        enrollment.id,
        reason,
    )
    _leave(enrollment, EnrollmentState.EXITED, now, reason[:255])


class _ActionFailed(Exception):
    """An action node of a step could not be carried out (the message says which, and why)."""


def _carry_out(
    session: Session,
    effects: Sequence[engine.Effect],
    campaign: DripCampaign,
    person: Subject,
) -> tuple[list[engine.SendEmail], bool]:
    """Carry out a step's actions in order, in a savepoint, so that a failing action undoes
    the step's other actions and nothing else. Returns the emails to send and whether the
    subscriber has left (unsubscribed): nothing after that is carried out."""
    emails: list[engine.SendEmail] = []
    if not any(isinstance(effect, engine.RunAction) for effect in effects):
        return [cast(engine.SendEmail, effect) for effect in effects], False
    node_id = ""
    try:
        with session.begin_nested():
            for effect in effects:
                node_id = effect.node_id
                if isinstance(effect, engine.SendEmail):
                    emails.append(effect)
                elif _act(session, campaign, person, effect):
                    return emails, True
    except (DripstoneError, IntegrityError, DataError, LookupError, ValueError) as exc:
        raise _ActionFailed(f"its action step {node_id!r} failed: {exc}") from exc
    return emails, False


def _mailing_ids(
    session: Session, campaigns: Iterable[DripCampaign], graphs: dict[int, Graph]
) -> dict[tuple[int, str], int]:
    """Cross-account: the internal id of each mailing the batch's graphs send, keyed by
    (account, mailing uuid), in one query per batch; a deleted mailing is missing."""
    wanted = {
        (campaign.account_id, mailing)
        for campaign in campaigns
        if campaign.id in graphs
        for mailing in graphs[campaign.id].mailing_ids()
    }
    if not wanted:
        return {}
    rows = session.execute(
        select(CampaignMailing.account_id, CampaignMailing.uuid, CampaignMailing.id).where(
            CampaignMailing.account_id.in_({account_id for account_id, _ in wanted}),
            CampaignMailing.uuid.in_({mailing for _, mailing in wanted}),
        )
    )
    return {
        (account_id, mailing): mailing_id
        for account_id, mailing, mailing_id in rows
        if (account_id, mailing) in wanted
    }


def _exit_reason(
    enrollment: DripEnrollment,
    campaign: DripCampaign,
    person: Subject | None,
    suppressed: set[int],
    members: dict[int, set[int]],
) -> str | None:
    if person is None or person.email is None:
        return "the subscriber was deleted"
    if person.opted_out:
        return "the subscriber opted out of all mail"
    if person.id in suppressed:
        return "the address hard-bounced and is suppressed"
    on_list = members.get(campaign.subscription_list_id)
    if on_list is not None and person.id not in on_list:
        return "the subscriber left the campaign's list"
    return None


def subjects(session: Session, subscriber_ids: Sequence[int]) -> dict[int, Subject]:
    people: dict[int, Subject] = {}
    if not subscriber_ids:
        return people
    for row in session.execute(
        select(
            Subscriber.id,
            Subscriber.uuid,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.last_name,
            Subscriber.phone_number,
            Subscriber.opted_out_on,
        ).where(Subscriber.id.in_(subscriber_ids))
    ):
        people[row.id] = Subject(
            id=row.id,
            uuid=row.uuid,
            email=row.email,
            opted_out=row.opted_out_on is not None,
            fields={
                "email": row.email,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "phone_number": row.phone_number,
            },
            lists=set(),
        )
    for subscriber_id, name, value in session.execute(
        select(CustomFieldValue.subscriber_id, CustomFieldType.name, CustomFieldValue.value)
        .join(CustomFieldType, CustomFieldType.id == CustomFieldValue.field_type_id)
        .where(CustomFieldValue.subscriber_id.in_(subscriber_ids))
    ):
        people[subscriber_id].fields[CUSTOM_FIELD_PREFIX + name] = value
        if name == TIMEZONE_FIELD:
            people[subscriber_id].timezone = value
    for subscriber_id, list_uuid in session.execute(
        select(Subscription.subscriber_id, SubscriptionList.uuid)
        .join(SubscriptionList, SubscriptionList.id == Subscription.subscription_list_id)
        .where(
            Subscription.subscriber_id.in_(subscriber_ids), Subscription.unsubscribed_at.is_(None)
        )
    ):
        people[subscriber_id].lists.add(list_uuid)
    return people


def _suppressed(
    session: Session, enrollments: Sequence[DripEnrollment], people: dict[int, Subject]
) -> set[int]:
    """The subscribers among `people` whose own account suppressed their address."""
    addresses = {
        (e.account_id, person.email): person.id
        for e in enrollments
        if (person := people.get(e.subscriber_id or 0)) is not None and person.email
    }
    blocked = audience.unsendable(session, addresses)
    return {
        subscriber_id
        for address, subscriber_id in addresses.items()
        if blocked.get(address) is audience.Unsendable.SUPPRESSED
    }


def _list_members(
    session: Session, campaigns: Iterable[DripCampaign], people: dict[int, Subject]
) -> dict[int, set[int]]:
    """For each campaign list that is not All contacts: which of `people` are on it."""
    list_ids = {c.subscription_list_id for c in campaigns}
    defaults = set(
        session.scalars(
            select(SubscriptionList.id).where(
                SubscriptionList.id.in_(list_ids), SubscriptionList.is_default.is_(True)
            )
        )
    )
    uuids = {
        row[0]: row[1]
        for row in session.execute(
            select(SubscriptionList.id, SubscriptionList.uuid).where(
                SubscriptionList.id.in_(list_ids - defaults)
            )
        )
    }
    return {lid: {p.id for p in people.values() if uuid in p.lists} for lid, uuid in uuids.items()}


def _engagement(
    session: Session, enrollment_ids: Sequence[int]
) -> tuple[dict[int, set[str]], dict[int, dict[str, set[str]]]]:
    """Which email nodes each enrollment opened, and what it clicked in each: a person's
    opens and clicks only, never an image proxy's prefetch or a link scanner's."""
    opened: dict[int, set[str]] = {}
    clicked: dict[int, dict[str, set[str]]] = {}
    for enrollment_id, node_id in session.execute(
        select(Delivery.drip_enrollment_id, Delivery.drip_node_id).where(
            Delivery.drip_enrollment_id.in_(enrollment_ids),
            Delivery.human_opened_at.is_not(None),
        )
    ):
        if enrollment_id is not None and node_id is not None:
            opened.setdefault(enrollment_id, set()).add(node_id)
    for enrollment_id, node_id, url in session.execute(
        select(Delivery.drip_enrollment_id, Delivery.drip_node_id, TrackingEvent.url)
        .join(TrackingEvent, TrackingEvent.delivery_id == Delivery.id)
        .where(
            Delivery.drip_enrollment_id.in_(enrollment_ids),
            TrackingEvent.kind == CLICK,
            TrackingEvent.machine.is_(False),
        )
    ):
        if enrollment_id is not None and node_id is not None and url is not None:
            clicked.setdefault(enrollment_id, {}).setdefault(node_id, set()).add(url)
    return opened, clicked


def _delivery_row(
    campaign: DripCampaign,
    enrollment: DripEnrollment,
    person: Subject,
    effect: engine.SendEmail,
    mailing_id: int,
    now: datetime,
    leaves_list: int | None,
) -> dict[str, Any]:
    return due_delivery(
        account_id=campaign.account_id,
        kind=DeliveryKind.DRIP,
        campaign_mailing_id=mailing_id,
        email=person.email,
        tracked=True,
        now=now,
        subscriber_id=person.id,
        subscription_list_id=leaves_list,
        drip_enrollment_id=enrollment.id,
        drip_node_id=effect.node_id,
        subject=effect.subject,
        from_email=effect.from_email,
        from_name=effect.from_name,
    )


def _act(
    session: Session, campaign: DripCampaign, person: Subject, effect: engine.RunAction
) -> bool:
    """Carry out an action node; True when the subscriber has left (unsubscribe)."""
    scope = AccountScope(session, campaign.account_id)
    if effect.do == "unsubscribe":
        subscriptions.change_subscriptions(scope, "unsubscribe", [person.uuid], None)
        return True
    if effect.do == "set_field" and effect.name is not None:
        field_name = custom_field_name(effect.name)
        custom_fields.set_custom_field(scope, person.id, field_name, effect.value or "")
        person.fields[effect.name] = effect.value
        if field_name == TIMEZONE_FIELD:
            person.timezone = effect.value
        return False
    lst = scope.by_uuid(SubscriptionList, effect.list_id or "")
    if lst is None:
        log.warning("drip action %s: list %s no longer exists", effect.node_id, effect.list_id)
        return False
    if effect.do == "add_to_list":
        membership.add_to_list(scope, lst, [person.id])
        person.lists.add(lst.uuid)
    elif effect.do == "remove_from_list":
        subscriptions.change_subscriptions(scope, "unsubscribe", [person.uuid], [lst.uuid])
        person.lists.discard(lst.uuid)
    return False
