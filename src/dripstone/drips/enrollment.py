"""Enrolling subscribers: a started campaign's existing members, one job per slice of ids and
one INSERT ... SELECT per batch; and whoever joins its list later, from subscription events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import (
    AccountScope,
    Database,
    UTCDateTime,
    insert_ignoring_duplicates,
    locked,
)
from dripstone.delivery import audience
from dripstone.drips import counters, engine
from dripstone.drips.graph import (
    Graph,
    parse_graph,
)
from dripstone.drips.models import (
    DripCampaign,
    DripEnrollment,
    DripNodeVisit,
    DripState,
    EnrollmentState,
    StartTrigger,
)
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.subscribers.models import (
    Subscriber,
    SubscriptionEvent,
    SubscriptionList,
)
from dripstone.subscribers.selection import membership_condition

ENROLL_JOB = "drip_enroll"


# Subscriber ids per enrollment job, and per transaction within one.
ENROLL_JOB_IDS = 250_000


ENROLL_BATCH_IDS = 20_000


def members_of(scope: AccountScope, list_id: int) -> Any:
    lst = scope.by_id(SubscriptionList, list_id)
    condition = membership_condition(None if lst is None or lst.is_default else lst.id)
    return and_(
        Subscriber.account_id == scope.account_id, condition, audience.reachable_subscriber()
    )


def enrollment_jobs(scope: AccountScope, campaign: DripCampaign, graph: Graph) -> list[Job]:
    """One job per range of subscriber ids, so a large list starts in parallel."""
    members = members_of(scope, campaign.subscription_list_id)
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
            members_of(scope, campaign.subscription_list_id),
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
        literal(EnrollmentState.ACTIVE.value),
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
    if added:
        deltas = counters.Deltas()
        deltas.move(campaign.id, node_id, "waiting", added)
        if node_id != graph.trigger_id:
            for visited in (graph.trigger_id, node_id):
                deltas.move(campaign.id, visited, "entered", added)
        counters.add(scope.session, deltas)
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
                    DripCampaign.state.in_((DripState.STARTED, DripState.PAUSED)),
                    DripCampaign.start_trigger.in_((StartTrigger.SUBSCRIPTION, StartTrigger.BOTH)),
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
                        members_of(scope, campaign.subscription_list_id),
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
