"""Drip campaigns: save and check graphs, start and pause, enroll subscribers, and advance
enrollments through the engine, exactly once.

Exactly once. A batch of due enrollments is taken with `FOR UPDATE SKIP LOCKED` (SQLite has
one writer) and advanced in the same transaction that records what the steps did: the
delivery rows of email nodes (unique per enrollment and node), the node visits (unique per
enrollment and node), actions, and each enrollment's new position. A crash rolls all of it
back and the batch is simply due again; a redelivered task or a second worker finds the rows
locked or no longer due.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn

from sqlalchemy import and_, exists, func, literal, or_, select, text, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.accounts.models import Account
from dripstone.db import (
    AccountScope,
    Database,
    RowLock,
    UTCDateTime,
    insert_ignoring_duplicates,
    locked,
    matches_regex,
    searched,
)
from dripstone.delivery import service as delivery
from dripstone.delivery.mime import fits_in_a_header
from dripstone.delivery.models import Delivery, Suppression
from dripstone.delivery.template import check_templates
from dripstone.drips import engine
from dripstone.drips.graph import Graph, GraphError, parse_graph, relocate
from dripstone.drips.models import DripCampaign, DripEnrollment, DripNodeVisit
from dripstone.errors import Invalid, NotFound
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers import service as subscribers
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from dripstone.subscribers.schemas import normalize_email
from dripstone.subscribers.selection import membership_condition
from dripstone.tracking.models import TrackingEvent

log = logging.getLogger(__name__)

DRAFT, STARTED, PAUSED = "draft", "started", "paused"
ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"
EXISTING, SUBSCRIPTION, BOTH = "existing", "subscription", "both"
ENROLL_JOB = "drip_enroll"
# Subscriber ids per enrollment job, and per transaction within one.
ENROLL_JOB_IDS = 250_000
ENROLL_BATCH_IDS = 20_000
ADVANCE_BATCH = 500
ADVANCE_BUDGET_SECONDS = 5.0
TIMEZONE_FIELD = "timezone"
NODES_FIELD = "drip_campaign_nodes"


# --- campaigns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignFields:
    """A campaign as written; None means "not sent" on update."""

    name: str | None
    subscription_list_id: str | None
    start_trigger: str | None
    nodes: str | None


def checked_graph(scope: AccountScope, text: str) -> Graph:
    """The graph in `text`, or 422 naming the JSON path or node of the first problem,
    including references to mailings or lists this account does not have."""
    try:
        graph = parse_graph(text)
    except GraphError as exc:
        raise Invalid(
            f"{NODES_FIELD}: {exc}", field=NODES_FIELD, path=exc.path, node=exc.node_id
        ) from None
    for node_id, kind, value in graph.references():
        if kind == "campaign_mailing_id":
            mailing = scope.by_uuid(CampaignMailing, value)
            if mailing is None:
                _bad_node(node_id, f"no campaign mailing {value} in this account")
            node = graph.nodes[node_id].data
            _check_sender(node_id, node)
            subject = getattr(node, "subject", None) or mailing.subject
            problems = check_templates(subject, mailing.html_part, mailing.text_part)
            if problems:
                _bad_node(node_id, f"its mailing does not render: {problems[0]}")
        elif scope.by_uuid(SubscriptionList, value) is None:
            _bad_node(node_id, f"no subscription list {value} in this account")
    return graph


def _check_sender(node_id: str, node: object) -> None:
    """An email node's sender overrides go into headers as they are: refuse what cannot."""
    from_email, from_name = getattr(node, "from_email", None), getattr(node, "from_name", None)
    if from_email is not None:
        try:
            normalize_email(from_email)
        except ValueError as exc:
            _bad_node(node_id, f"from_email: {exc}")
    if from_name is not None and not fits_in_a_header(from_name):
        _bad_node(node_id, "from_name: must not contain line breaks or control characters")


def _bad_node(node_id: str, message: str) -> NoReturn:
    raise Invalid(f"{NODES_FIELD}: node {node_id!r}: {message}", field=NODES_FIELD, node=node_id)


def create_campaign(scope: AccountScope, fields: CampaignFields) -> DripCampaign:
    """A new campaign in `draft`."""
    missing = [
        name
        for name, value in (
            ("name", fields.name),
            ("subscription_list_id", fields.subscription_list_id),
            ("start_trigger", fields.start_trigger),
            (NODES_FIELD, fields.nodes),
        )
        if value is None
    ]
    if missing:
        raise Invalid(f"{missing[0]}: is required", field=missing[0])
    campaign = DripCampaign(account_id=scope.account_id, state=DRAFT)
    _apply(scope, campaign, fields)
    scope.session.add(campaign)
    scope.session.flush()
    return campaign


def update_campaign(
    scope: AccountScope, campaign: DripCampaign, fields: CampaignFields
) -> DripCampaign:
    """Change the fields sent. On a started or paused campaign a new graph applies at once:
    enrollments keep their node if it is still there, move to the node that replaced theirs,
    or leave the campaign (see `relocate`)."""
    old_graph = parse_graph(campaign.nodes)
    _apply(scope, campaign, fields)
    if campaign.state != DRAFT and fields.nodes is not None:
        _move_enrollments(scope.session, campaign, old_graph, parse_graph(campaign.nodes))
    campaign.updated_at = clock.now()
    return campaign


def _apply(scope: AccountScope, campaign: DripCampaign, fields: CampaignFields) -> None:
    if fields.name is not None:
        campaign.name = fields.name
    if fields.subscription_list_id is not None:
        lst = subscribers.referenced_list(
            scope, fields.subscription_list_id, "subscription_list_id"
        )
        if campaign.state != DRAFT and campaign.subscription_list_id not in (None, lst.id):
            raise Invalid(
                "subscription_list_id: the list of a started campaign cannot change",
                field="subscription_list_id",
            )
        campaign.subscription_list_id = lst.id
    if fields.start_trigger is not None:
        campaign.start_trigger = fields.start_trigger
    if fields.nodes is not None:
        graph = checked_graph(scope, fields.nodes)
        campaign.nodes = graph.to_json()
        campaign.tree_blob = json.dumps(graph.tree_blob(), separators=(",", ":"))


def _move_enrollments(session: Session, campaign: DripCampaign, old: Graph, new: Graph) -> None:
    now = clock.now()
    at_nodes = session.execute(
        select(DripEnrollment.node_id, func.count())
        .where(DripEnrollment.drip_campaign_id == campaign.id, DripEnrollment.state == ACTIVE)
        .group_by(DripEnrollment.node_id)
    ).all()
    for node_id, _count in at_nodes:
        if node_id not in old.nodes:  # left over from an earlier edit: nowhere to go
            target = None
        elif node_id in new.nodes and new.nodes[node_id].kind == old.nodes[node_id].kind:
            target = node_id
        else:
            target = relocate(old, new, node_id)
        where = and_(
            DripEnrollment.drip_campaign_id == campaign.id,
            DripEnrollment.state == ACTIVE,
            DripEnrollment.node_id == node_id,
        )
        if target is None:
            session.execute(
                update(DripEnrollment)
                .where(where)
                .values(
                    state=EXITED,
                    finished_at=now,
                    exit_reason=f"its step {node_id!r} was removed from the campaign",
                )
            )
        elif target == node_id:
            # Looked at again now: a changed delay or time takes effect from the arrival.
            session.execute(update(DripEnrollment).where(where).values(next_run_at=now))
        else:
            session.execute(
                update(DripEnrollment)
                .where(where)
                .values(node_id=target, arrived_at=now, next_run_at=now)
            )


def get_campaign(
    scope: AccountScope, campaign_id: str, lock: RowLock | None = None
) -> DripCampaign:
    """The campaign; `lock="change"` holds it until the transaction ends, so that edits,
    starts and pauses take turns with each other, and the runner and the enrollment jobs
    (which hold it shared) never place anyone by a graph that is being replaced."""
    found = scope.by_uuid(DripCampaign, campaign_id, lock)
    if found is None or found.deleted_at is not None:
        raise NotFound(f"drip campaign {campaign_id} not found", field="id")
    return found


ORDERABLE = {
    "name": DripCampaign.name,
    "created_at": DripCampaign.created_at,
    "updated_at": DripCampaign.updated_at,
    "state": DripCampaign.state,
}


def list_campaigns(
    scope: AccountScope, *, search: str | None, order_by: str, order: Literal["asc", "desc"]
) -> list[DripCampaign]:
    stmt = scope.select(DripCampaign).where(DripCampaign.deleted_at.is_(None))
    if search:
        stmt = stmt.where(matches_regex(scope.session, DripCampaign.name, search))
    column = ORDERABLE[order_by]
    direction = (
        (column.asc(), DripCampaign.id.asc())
        if order == "asc"
        else (
            column.desc(),
            DripCampaign.id.desc(),
        )
    )
    stmt = stmt.order_by(*direction)
    return searched(scope.session, stmt) if search else list(scope.session.scalars(stmt))


def delete_campaign(scope: AccountScope, campaign: DripCampaign) -> None:
    """Delete a campaign that is not started; its enrollments and emails stay in analytics."""
    if campaign.state == STARTED:
        raise Invalid("the campaign is started: pause it before deleting it", field="state")
    campaign.deleted_at = clock.now()
    delivery.release_held(
        scope.session, _enrollment_ids(campaign), reason="the drip campaign was deleted"
    )


def _enrollment_ids(campaign: DripCampaign) -> Any:
    return select(DripEnrollment.id).where(DripEnrollment.drip_campaign_id == campaign.id)


def _still_in() -> Any:
    """SQL over DripEnrollment joined to Subscriber and DripCampaign: the subscriber may
    still be mailed and is still on the campaign's list (they leave at their next step)."""
    on_list = exists().where(
        Subscription.subscriber_id == Subscriber.id,
        Subscription.subscription_list_id == DripCampaign.subscription_list_id,
        Subscription.unsubscribed_at.is_(None),
    )
    is_default = exists().where(
        SubscriptionList.id == DripCampaign.subscription_list_id,
        SubscriptionList.is_default.is_(True),
    )
    return and_(delivery.reachable_subscriber(), or_(is_default, on_list))


def counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Per campaign: (subscribers in it now, subscribers who completed it)."""
    if not campaign_ids:
        return {}
    waiting = session.execute(
        select(DripEnrollment.drip_campaign_id, func.count())
        .join(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .join(DripCampaign, DripCampaign.id == DripEnrollment.drip_campaign_id)
        .where(
            DripEnrollment.drip_campaign_id.in_(campaign_ids),
            DripEnrollment.state == ACTIVE,
            _still_in(),
        )
        .group_by(DripEnrollment.drip_campaign_id)
    ).all()
    completed = session.execute(
        select(DripEnrollment.drip_campaign_id, func.count())
        .where(
            DripEnrollment.drip_campaign_id.in_(campaign_ids),
            DripEnrollment.state == COMPLETED,
        )
        .group_by(DripEnrollment.drip_campaign_id)
    ).all()
    found = dict.fromkeys(campaign_ids, (0, 0))
    for cid, n in waiting:
        found[cid] = (n, found[cid][1])
    for cid, n in completed:
        found[cid] = (found[cid][0], n)
    return found


# --- lifecycle ------------------------------------------------------------------------------------


def start(scope: AccountScope, campaign: DripCampaign) -> list[str]:
    """Start (from draft) or resume (from paused); returns the jids of the enrollment jobs."""
    if campaign.state == STARTED:
        raise Invalid("the campaign is already started", field="state")
    graph = checked_graph(scope, campaign.nodes)
    if not graph.email_node_ids():
        raise Invalid(f"{NODES_FIELD}: the campaign has no email step", field=NODES_FIELD)
    first_start = campaign.state == DRAFT
    campaign.state = STARTED
    campaign.updated_at = clock.now()
    if not first_start:
        delivery.release_held(scope.session, _enrollment_ids(campaign))
        return []
    campaign.started_at = clock.now()
    jobs = []
    if campaign.start_trigger in (EXISTING, BOTH):
        jobs = _enrollment_jobs(scope, campaign, graph)
    campaign.enroll_events_after = _last_join(scope.session)
    return [job.id for job in jobs]


def _last_join(session: Session) -> int:
    """The id of the last subscription event so far: later ones are joins after the start.
    On PostgreSQL ids are taken before their transactions commit, so first wait for joins
    in flight to commit, and hold new ones back until this start commits (SQLite has one
    writer, and no join is in flight)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE subscription_events IN SHARE MODE"))
    return session.scalar(select(func.max(SubscriptionEvent.id))) or 0


def pause(campaign: DripCampaign) -> None:
    if campaign.state != STARTED:
        raise Invalid(f"the campaign is {campaign.state}, not started", field="state")
    campaign.state = PAUSED
    campaign.updated_at = clock.now()


def _members(scope: AccountScope, list_id: int) -> Any:
    lst = scope.by_id(SubscriptionList, list_id)
    condition = membership_condition(None if lst is None or lst.is_default else lst.id)
    return and_(
        Subscriber.account_id == scope.account_id, condition, delivery.reachable_subscriber()
    )


def _enrollment_jobs(scope: AccountScope, campaign: DripCampaign, graph: Graph) -> list[Job]:
    """One job per range of subscriber ids, so a large list starts in parallel."""
    members = _members(scope, campaign.subscription_list_id)
    low, high = scope.session.execute(
        select(func.min(Subscriber.id), func.max(Subscriber.id)).where(members)
    ).one()
    if low is None:
        return []
    jobs = []
    for start_id in range(low, high + 1, ENROLL_JOB_IDS):
        end_id = min(start_id + ENROLL_JOB_IDS - 1, high)
        total = scope.session.scalar(
            select(func.count()).where(members, Subscriber.id.between(start_id, end_id))
        )
        job = create_job(
            scope.session,
            scope.account_id,
            ENROLL_JOB,
            {"campaign_id": campaign.id, "to_id": end_id},
            total=total or 0,
        )
        job.cursor = start_id - 1
        jobs.append(job)
    return jobs


@job_step(ENROLL_JOB)
def _enroll_batch(session: Session, job: Job, _batch_size: int) -> StepResult:
    """Enroll the list's members with ids in the next slice of the job's range (one INSERT)."""
    scope = AccountScope(session, job.account_id)
    campaign = scope.by_id(DripCampaign, job.payload["campaign_id"], lock="share")
    end_id = int(job.payload["to_id"])
    if campaign is None or campaign.deleted_at is not None:
        return StepResult(0, 0, job.cursor, finished=False, failed_with="campaign deleted")
    graph = parse_graph(campaign.nodes)
    upto = min(job.cursor + ENROLL_BATCH_IDS, end_id)
    added = enroll(
        scope,
        campaign,
        graph,
        and_(
            _members(scope, campaign.subscription_list_id),
            Subscriber.id > job.cursor,
            Subscriber.id <= upto,
        ),
    )
    return StepResult(added, 0, upto, finished=upto >= end_id)


def enroll(scope: AccountScope, campaign: DripCampaign, graph: Graph, who: Any) -> int:
    """Enroll the subscribers `who` selects, unless already enrolled. They start at the
    trigger; when the first step is the same for everyone (the trigger leads straight to a
    delay), the engine takes it once for all and they start at the delay, with their visits
    written set-based too, rather than a million identical steps for the runner."""
    moment = clock.now()
    now = literal(moment, UTCDateTime())
    opening = _opening_step(graph, moment)
    node_id, wake_at = graph.trigger_id, moment
    if opening is not None and opening.position is not None and opening.wake_at is not None:
        node_id, wake_at = opening.position.node_id, opening.wake_at
    rows = select(
        literal(scope.account_id),
        literal(campaign.id),
        Subscriber.id,
        literal(ACTIVE),
        literal(node_id),
        now,
        literal(wake_at, UTCDateTime()),
        now,
    ).where(who)
    stmt = insert_ignoring_duplicates(
        scope.session, DripEnrollment, "drip_campaign_id", "subscriber_id"
    ).from_select(
        [
            "account_id",
            "drip_campaign_id",
            "subscriber_id",
            "state",
            "node_id",
            "arrived_at",
            "next_run_at",
            "enrolled_at",
        ],
        rows,
    )
    result = scope.session.execute(stmt, execution_options={"preserve_rowcount": True})
    added = max(int(result.rowcount), 0)  # type: ignore[attr-defined]
    if node_id != graph.trigger_id and added:
        for visited in (graph.trigger_id, node_id):
            scope.session.execute(
                insert_ignoring_duplicates(
                    scope.session, DripNodeVisit, "enrollment_id", "node_id"
                ).from_select(
                    ["enrollment_id", "node_id", "drip_campaign_id", "entered_at"],
                    select(
                        DripEnrollment.id, literal(visited), DripEnrollment.drip_campaign_id, now
                    ).where(
                        DripEnrollment.drip_campaign_id == campaign.id,
                        DripEnrollment.enrolled_at == now,
                        DripEnrollment.node_id == node_id,
                    ),
                )
            )
    return added


def _opening_step(graph: Graph, now: datetime) -> engine.Step | None:
    """The first step, if it is the same for every subscriber: trigger, then a delay."""
    first = graph.next(graph.trigger_id)
    if first is None or graph.nodes[first].kind != "delay":
        return None
    step = engine.advance(
        graph, engine.Position(graph.trigger_id, now), engine.Facts(subscriber_key=""), now
    )
    return None if step.effects else step


def enroll_new_members(database: Database, limit: int = 1000) -> int:
    """Consume subscription events: enroll each joiner in the started or paused campaigns of
    that list whose trigger takes new members. Returns how many events were consumed."""
    with database.transaction() as session:
        events = session.execute(
            select(
                SubscriptionEvent.id,
                SubscriptionEvent.account_id,
                SubscriptionEvent.subscriber_id,
                SubscriptionEvent.subscription_list_id,
                SubscriptionEvent.occurred_at,
            )
            .where(SubscriptionEvent.consumed_at.is_(None))
            .order_by(SubscriptionEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not events:
            return 0
        list_ids = {e.subscription_list_id for e in events}
        campaigns = session.scalars(
            locked(
                select(DripCampaign).where(
                    DripCampaign.subscription_list_id.in_(list_ids),
                    DripCampaign.state.in_((STARTED, PAUSED)),
                    DripCampaign.start_trigger.in_((SUBSCRIPTION, BOTH)),
                    DripCampaign.deleted_at.is_(None),
                ),
                "share",
            )
        ).all()
        for campaign in campaigns:
            joined = [
                e.subscriber_id
                for e in events
                if e.subscription_list_id == campaign.subscription_list_id
                and e.id > campaign.enroll_events_after
            ]
            if joined:
                scope = AccountScope(session, campaign.account_id)
                enroll(
                    scope,
                    campaign,
                    parse_graph(campaign.nodes),
                    and_(
                        _members(scope, campaign.subscription_list_id),
                        Subscriber.id.in_(joined),
                    ),
                )
        session.execute(
            update(SubscriptionEvent)
            .where(SubscriptionEvent.id.in_([e.id for e in events]))
            .values(consumed_at=clock.now())
        )
        return len(events)


def has_new_members(database: Database) -> bool:
    with database.reader.connect() as connection:
        return (
            connection.execute(
                select(SubscriptionEvent.id).where(SubscriptionEvent.consumed_at.is_(None)).limit(1)
            ).first()
            is not None
        )


# --- the runner -----------------------------------------------------------------------------------


def _due() -> Any:
    return and_(
        DripEnrollment.state == ACTIVE,
        DripEnrollment.next_run_at <= clock.now(),
        DripEnrollment.drip_campaign_id.in_(
            select(DripCampaign.id).where(DripCampaign.state == STARTED)
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
class _Subject:
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
                DripCampaign.state == STARTED,  # not paused since the enrollments were read
            )
            .with_for_update(read=True, skip_locked=True)
        )
    }
    enrollments = [e for e in enrollments if e.drip_campaign_id in campaigns]
    graphs = {cid: _graph(c) for cid, c in campaigns.items()}
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
    people = _subjects(session, [e.subscriber_id for e in enrollments if e.subscriber_id])
    suppressed = _suppressed(session, enrollments, people)
    members = _list_members(session, campaigns.values(), people)
    opened, clicked = _engagement(session, [e.id for e in enrollments])
    deliveries: list[dict[str, Any]] = []
    visits: list[dict[str, Any]] = []
    for enrollment in enrollments:
        campaign, graph = (
            campaigns[enrollment.drip_campaign_id],
            graphs[enrollment.drip_campaign_id],
        )
        person = people.get(enrollment.subscriber_id or 0)
        reason = _exit_reason(enrollment, campaign, person, suppressed, members)
        if reason is not None or person is None:
            _leave(enrollment, EXITED, now, reason)
            continue
        if enrollment.node_id not in graph.nodes:  # the graph changed under a running batch
            _leave(enrollment, EXITED, now, f"its step {enrollment.node_id!r} no longer exists")
            continue
        facts = engine.Facts(
            subscriber_key=person.uuid,
            fields=person.fields,
            lists=frozenset(person.lists),
            opened=frozenset(opened.get(enrollment.id, ())),
            clicked={k: frozenset(v) for k, v in clicked.get(enrollment.id, {}).items()},
            timezone=person.timezone,
        )
        step = engine.advance(
            graph,
            engine.Position(enrollment.node_id, enrollment.arrived_at),
            facts,
            now,
            zones.get(campaign.account_id) or "UTC",
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
        left = False
        for effect in step.effects:
            if isinstance(effect, engine.SendEmail):
                deliveries.append(
                    _delivery_row(
                        session,
                        campaign,
                        enrollment,
                        person,
                        effect,
                        now,
                        leaves.get(campaign.subscription_list_id),
                    )
                )
            elif _act(session, campaign, person, effect):
                left = True  # the subscriber unsubscribed: nothing after this is carried out
                break
        if left:
            _leave(enrollment, EXITED, now, "unsubscribed by the campaign's action")
        elif step.position is None:
            _leave(enrollment, COMPLETED, now, None)
        else:
            enrollment.node_id = step.position.node_id
            enrollment.arrived_at = step.position.arrived_at
            enrollment.next_run_at = step.wake_at or now
    if visits:
        session.execute(
            insert_ignoring_duplicates(session, DripNodeVisit, "enrollment_id", "node_id"), visits
        )
    if deliveries:
        session.execute(
            insert_ignoring_duplicates(session, Delivery, "drip_enrollment_id", "drip_node_id"),
            deliveries,
        )
    return len(enrollments)


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


def _exit_reason(
    enrollment: DripEnrollment,
    campaign: DripCampaign,
    person: _Subject | None,
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


def _subjects(session: Session, subscriber_ids: Sequence[int]) -> dict[int, _Subject]:
    people: dict[int, _Subject] = {}
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
        people[row.id] = _Subject(
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
        people[subscriber_id].fields[f"custom.{name}"] = value
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
    session: Session, enrollments: Sequence[DripEnrollment], people: dict[int, _Subject]
) -> set[int]:
    emails = {p.email for p in people.values() if p.email}
    if not emails:
        return set()
    accounts = {e.account_id for e in enrollments}
    bounced = set(
        session.scalars(
            select(Suppression.email).where(
                Suppression.account_id.in_(accounts), Suppression.email.in_(emails)
            )
        )
    )
    return {p.id for p in people.values() if p.email in bounced}


def _list_members(
    session: Session, campaigns: Iterable[DripCampaign], people: dict[int, _Subject]
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
    """Which email nodes each enrollment opened, and what it clicked in each."""
    opened: dict[int, set[str]] = {}
    clicked: dict[int, dict[str, set[str]]] = {}
    for enrollment_id, node_id in session.execute(
        select(Delivery.drip_enrollment_id, Delivery.drip_node_id).where(
            Delivery.drip_enrollment_id.in_(enrollment_ids), Delivery.opened_at.is_not(None)
        )
    ):
        if enrollment_id is not None and node_id is not None:
            opened.setdefault(enrollment_id, set()).add(node_id)
    for enrollment_id, node_id, url in session.execute(
        select(Delivery.drip_enrollment_id, Delivery.drip_node_id, TrackingEvent.url)
        .join(TrackingEvent, TrackingEvent.delivery_id == Delivery.id)
        .where(Delivery.drip_enrollment_id.in_(enrollment_ids), TrackingEvent.kind == "click")
    ):
        if enrollment_id is not None and node_id is not None and url is not None:
            clicked.setdefault(enrollment_id, {}).setdefault(node_id, set()).add(url)
    return opened, clicked


def _delivery_row(
    session: Session,
    campaign: DripCampaign,
    enrollment: DripEnrollment,
    person: _Subject,
    effect: engine.SendEmail,
    now: datetime,
    leaves_list: int | None,
) -> dict[str, Any]:
    mailing_id = _mailing_id(session, campaign.account_id, effect.mailing_id)
    return {
        "account_id": campaign.account_id,
        "kind": delivery.DRIP,
        "campaign_mailing_id": mailing_id,
        "subscriber_id": person.id,
        "subscription_list_id": leaves_list,
        "drip_enrollment_id": enrollment.id,
        "drip_node_id": effect.node_id,
        "subject": effect.subject,
        "from_email": effect.from_email,
        "from_name": effect.from_name,
        "email": person.email,
        "tracked": True,
        "status": delivery.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


_mailing_ids: dict[tuple[int, str], int] = {}


def _mailing_id(session: Session, account_id: int, mailing_uuid: str) -> int:
    key = (account_id, mailing_uuid)
    found = _mailing_ids.get(key)
    if found is None:
        found = session.scalar(
            select(CampaignMailing.id).where(
                CampaignMailing.account_id == account_id, CampaignMailing.uuid == mailing_uuid
            )
        )
        if found is None:
            raise LookupError(f"campaign mailing {mailing_uuid} was deleted")
        _mailing_ids[key] = found
    return found


def _act(
    session: Session, campaign: DripCampaign, person: _Subject, effect: engine.RunAction
) -> bool:
    """Carry out an action node; True when the subscriber has left (unsubscribe)."""
    scope = AccountScope(session, campaign.account_id)
    if effect.do == "unsubscribe":
        subscribers.change_subscriptions(scope, "unsubscribe", [person.uuid], None)
        return True
    if effect.do == "set_field" and effect.name is not None:
        subscribers.set_custom_field(scope, person.id, effect.name, effect.value or "")
        person.fields[f"custom.{effect.name}"] = effect.value
        return False
    lst = scope.by_uuid(SubscriptionList, effect.list_id or "")
    if lst is None:
        log.warning("drip action %s: list %s no longer exists", effect.node_id, effect.list_id)
        return False
    if effect.do == "add_to_list":
        subscribers.add_to_list(scope, lst, [person.id])
        person.lists.add(lst.uuid)
    elif effect.do == "remove_from_list":
        subscribers.change_subscriptions(scope, "unsubscribe", [person.uuid], [lst.uuid])
        person.lists.discard(lst.uuid)
    return False


# --- the report ---------------------------------------------------------------------------------


def report(
    scope: AccountScope, campaign: DripCampaign, *, items: int, page: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per node: entered, waiting now, completed, exited there, emails sent/opened/clicked;
    and a page of enrollments with their current node and next step time."""
    session = scope.session
    graph = parse_graph(campaign.nodes)
    entered = {
        row[0]: row[1]
        for row in session.execute(
            select(DripNodeVisit.node_id, func.count())
            .where(DripNodeVisit.drip_campaign_id == campaign.id)
            .group_by(DripNodeVisit.node_id)
        )
    }
    here: dict[tuple[str, str], int] = {}
    for node_id, state, n in session.execute(
        select(DripEnrollment.node_id, DripEnrollment.state, func.count())
        .outerjoin(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .join(DripCampaign, DripCampaign.id == DripEnrollment.drip_campaign_id)
        .where(
            DripEnrollment.drip_campaign_id == campaign.id,
            or_(DripEnrollment.state != ACTIVE, _still_in()),
        )
        .group_by(DripEnrollment.node_id, DripEnrollment.state)
    ):
        here[(node_id, state)] = n
    emails: dict[str | None, tuple[int, int, int]] = {}
    for email_node, sent, opened, clicked in session.execute(
        select(
            Delivery.drip_node_id,
            func.count(Delivery.sent_at),
            func.count(Delivery.opened_at),
            func.count(Delivery.clicked_at),
        )
        .join(DripEnrollment, DripEnrollment.id == Delivery.drip_enrollment_id)
        .where(DripEnrollment.drip_campaign_id == campaign.id)
        .group_by(Delivery.drip_node_id)
    ):
        emails[email_node] = (sent, opened, clicked)
    nodes = []
    for node_id, node in graph.nodes.items():
        waiting = here.get((node_id, ACTIVE), 0)
        exited = here.get((node_id, EXITED), 0)
        count = entered.get(node_id, 0)
        sent, opened, clicked = emails.get(node_id, (0, 0, 0))
        nodes.append(
            {
                "id": node_id,
                "type": node.kind,
                "entered": count,
                "waiting": waiting,
                "completed": max(count - waiting - exited, 0),
                "exited": exited,
                "emails_sent": sent,
                "emails_opened": opened,
                "emails_clicked": clicked,
            }
        )
    rows = session.execute(
        select(DripEnrollment, Subscriber.uuid, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .where(DripEnrollment.drip_campaign_id == campaign.id)
        .order_by(DripEnrollment.id)
        .limit(items)
        .offset((page - 1) * items)
    ).all()
    enrollments = [
        {
            "subscriber_id": uuid,
            "email": email,
            "state": e.state,
            "node_id": e.node_id,
            "next_run_at": e.next_run_at if e.state == ACTIVE else None,
            "enrolled_at": e.enrolled_at,
            "finished_at": e.finished_at,
            "exit_reason": e.exit_reason,
        }
        for e, uuid, email in rows
    ]
    return nodes, enrollments
