"""What a drip campaign has done: per node, who entered, waits, moved on and left, and the
emails sent, opened and clicked; and its enrollments, a page at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from dripstone.db import (
    AccountScope,
)
from dripstone.delivery import audience
from dripstone.drips import counters
from dripstone.drips.graph import (
    node_order,
    parse_graph,
)
from dripstone.drips.models import (
    DripCampaign,
    DripEnrollment,
    DripNodeCounter,
    DripNodeVisit,
    EnrollmentState,
)
from dripstone.errors import NotFound
from dripstone.subscribers.models import (
    Subscriber,
    Subscription,
    SubscriptionList,
)

# Per email node of a drip campaign: its messages' counts (sent, opened, clicked, ...). They
# are the analytics domain's counters, above this one, so it registers how they are read.
EmailCounts = Callable[[Session, int, int], dict[str, dict[str, int]]]
_email_counts: EmailCounts | None = None


def counts_emails_with(count: EmailCounts) -> EmailCounts:
    """Register how a campaign's email nodes are counted (done once, by analytics)."""
    global _email_counts
    _email_counts = count
    return count


def _emails(session: Session, account_id: int, campaign_id: int) -> dict[str, dict[str, int]]:
    if _email_counts is None:
        raise RuntimeError("no drip email counter registered: import dripstone.tasks first")
    return _email_counts(session, account_id, campaign_id)


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
    return and_(audience.reachable_subscriber(), or_(is_default, on_list))


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
            DripEnrollment.state == EnrollmentState.ACTIVE,
            _still_in(),
        )
        .group_by(DripEnrollment.drip_campaign_id)
    )
    return _by_campaign(campaign_ids, dict(waiting.all()), _completed(session, campaign_ids))


def step_counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Per campaign: (waiting at its steps, completed), as its drawing counts them: the kept
    counters' waiting (everyone at a step until the runner takes them on, as `node_counts`)
    and the completed enrollments by the (campaign, state, node) index. The dashboard's lists
    read these: as cheap on a million enrollments as on ten, where `counts` reads every
    active enrollment."""
    if not campaign_ids:
        return {}
    waiting = session.execute(
        select(DripNodeCounter.drip_campaign_id, func.sum(DripNodeCounter.waiting))
        .where(DripNodeCounter.drip_campaign_id.in_(campaign_ids))
        .group_by(DripNodeCounter.drip_campaign_id)
    )
    return _by_campaign(campaign_ids, dict(waiting.all()), _completed(session, campaign_ids))


def _completed(session: Session, campaign_ids: Sequence[int]) -> dict[int, int]:
    found = session.execute(
        select(DripEnrollment.drip_campaign_id, func.count())
        .where(
            DripEnrollment.drip_campaign_id.in_(campaign_ids),
            DripEnrollment.state == EnrollmentState.COMPLETED,
        )
        .group_by(DripEnrollment.drip_campaign_id)
    )
    return dict(found.all())


def _by_campaign(
    campaign_ids: Sequence[int], waiting: dict[int, int], completed: dict[int, int]
) -> dict[int, tuple[int, int]]:
    return {cid: (int(waiting.get(cid) or 0), completed.get(cid, 0)) for cid in campaign_ids}


def node_counts(scope: AccountScope, campaign: DripCampaign) -> list[dict[str, Any]]:
    """Per node of the campaign's graph, in graph order: entered, waiting now, completed,
    exited there, emails sent/opened/clicked (by people). From kept counters, so as cheap on
    a million enrollments as on ten: waiting counts everyone at the node until the runner
    takes them on (someone who opted out or left the list leaves at their next step)."""
    session = scope.session
    graph = parse_graph(campaign.nodes)
    kept = counters.read(session, campaign.id)
    emails = _emails(session, campaign.account_id, campaign.id)
    nodes = []
    for node_id, node in graph.nodes.items():
        counts = kept.get(node_id, {})
        entered, waiting = counts.get("entered", 0), counts.get("waiting", 0)
        exited = counts.get("exited", 0)
        email = emails.get(node_id, {})
        nodes.append(
            {
                "id": node_id,
                "type": node.kind,
                "entered": entered,
                "waiting": waiting,
                "completed": max(entered - waiting - exited, 0),
                "exited": exited,
                "emails_sent": email.get("sent", 0),
                # People, not image proxies or link scanners: what the drip's conditions see.
                "emails_opened": email.get("human_opened", 0),
                "emails_clicked": email.get("human_clicked", 0),
            }
        )
    return nodes


def report(
    scope: AccountScope, campaign: DripCampaign, *, items: int, page: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per node: entered, waiting now, completed, exited there, emails sent/opened/clicked;
    and a page of enrollments with their current node and next step time."""
    nodes = node_counts(scope, campaign)
    rows = scope.session.execute(
        select(DripEnrollment, Subscriber.uuid, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .where(DripEnrollment.drip_campaign_id == campaign.id)
        .order_by(DripEnrollment.id)
        .limit(items)
        .offset((page - 1) * items)
    ).all()
    return nodes, [_enrollment(e, uuid, email) for e, uuid, email in rows]


def _enrollment(e: DripEnrollment, uuid: str | None, email: str | None) -> dict[str, Any]:
    return {
        "subscriber_id": uuid,
        "email": email,
        "state": e.state,
        "node_id": e.node_id,
        "next_run_at": e.next_run_at if e.state == EnrollmentState.ACTIVE else None,
        "enrolled_at": e.enrolled_at,
        "finished_at": e.finished_at,
        "exit_reason": e.exit_reason,
    }


def enrollments_page(
    scope: AccountScope, campaign: DripCampaign, *, after: int | None, items: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the campaign's enrollments in subscriber order, after the subscriber with
    internal id `after`; and the `after` of the next page (None on the last). Keyset paging
    on the (campaign, subscriber) unique index: as cheap on page 10,000 as on page 1.
    Enrollments whose subscriber was deleted have no one to show and are left out."""
    stmt = (
        select(DripEnrollment, Subscriber.uuid, Subscriber.email)
        .join(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .where(
            DripEnrollment.drip_campaign_id == campaign.id,
            DripEnrollment.account_id == scope.account_id,
        )
        .order_by(DripEnrollment.subscriber_id)
        .limit(items + 1)
    )
    if after is not None:
        stmt = stmt.where(DripEnrollment.subscriber_id > after)
    rows = scope.session.execute(stmt).all()
    more = len(rows) > items
    rows = rows[:items]
    next_after = rows[-1][0].subscriber_id if more and rows else None
    return [_enrollment(e, uuid, email) for e, uuid, email in rows], next_after


def waiting_at(
    scope: AccountScope,
    campaign: DripCampaign,
    node_id: str,
    after: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """The subscribers waiting at `node_id` now, with when they are next looked at, in
    enrollment order after the enrollment `after`; and the `after` of the next page (None on
    the last). Keyset paging on the (campaign, state, node) index. 404 for a node the
    campaign's graph does not have."""
    if node_id not in parse_graph(campaign.nodes).nodes:
        raise NotFound(f"the campaign has no node {node_id!r}", field="node_id")
    stmt = (
        select(DripEnrollment.id, Subscriber.uuid, Subscriber.email, DripEnrollment.next_run_at)
        .join(Subscriber, Subscriber.id == DripEnrollment.subscriber_id)
        .where(
            DripEnrollment.drip_campaign_id == campaign.id,
            DripEnrollment.account_id == scope.account_id,
            DripEnrollment.state == EnrollmentState.ACTIVE,
            DripEnrollment.node_id == node_id,
        )
        .order_by(DripEnrollment.id)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(DripEnrollment.id > after)
    rows = scope.session.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    found = [{"id": uuid, "email": email, "next_run_at": at} for _, uuid, email, at in rows]
    return found, rows[-1][0] if more and rows else None


def enrollment_path(
    scope: AccountScope, campaign: DripCampaign, subscriber_id: str
) -> dict[str, Any]:
    """The nodes the subscriber's enrollment entered, in order, with when; where it is now
    (None once it has left) and its state. 404 if they were never enrolled."""
    subscriber = scope.by_uuid(Subscriber, subscriber_id)
    enrollment = (
        None
        if subscriber is None
        else scope.session.scalars(
            select(DripEnrollment).where(
                DripEnrollment.drip_campaign_id == campaign.id,
                DripEnrollment.subscriber_id == subscriber.id,
            )
        ).first()
    )
    if enrollment is None:
        raise NotFound(
            f"subscriber {subscriber_id} is not enrolled in this campaign", field="subscriber_id"
        )
    # The nodes of one step are entered at the same instant: the graph orders them.
    order = node_order(parse_graph(campaign.nodes))
    visits = sorted(
        scope.session.execute(
            select(DripNodeVisit.node_id, DripNodeVisit.entered_at).where(
                DripNodeVisit.enrollment_id == enrollment.id
            )
        ).all(),
        key=lambda visit: (visit[1], order.get(visit[0], len(order)), visit[0]),
    )
    active = enrollment.state == EnrollmentState.ACTIVE
    return {
        "visits": [{"node_id": node_id, "at": at} for node_id, at in visits],
        "current": enrollment.node_id if active else None,
        "state": enrollment.state,
        "next_run_at": enrollment.next_run_at if active else None,
    }
