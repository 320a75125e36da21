"""Starting, pausing and resuming a drip campaign."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import (
    AccountScope,
)
from dripstone.delivery import dispatcher
from dripstone.drips.campaigns import NODES_FIELD, checked_graph, enrollment_ids
from dripstone.drips.enrollment import enrollment_jobs
from dripstone.drips.models import (
    DripCampaign,
    DripState,
    StartTrigger,
)
from dripstone.errors import Invalid
from dripstone.subscribers.models import (
    SubscriptionEvent,
)


def start(scope: AccountScope, campaign: DripCampaign) -> list[str]:
    """Start (from draft) or resume (from paused); returns the jids of the enrollment jobs."""
    if campaign.state == DripState.STARTED:
        raise Invalid("the campaign is already started", field="state")
    graph = checked_graph(scope, campaign.nodes)
    if not graph.email_node_ids():
        raise Invalid(f"{NODES_FIELD}: the campaign has no email step", field=NODES_FIELD)
    first_start = campaign.state == DripState.DRAFT
    campaign.state = DripState.STARTED
    campaign.updated_at = clock.now()
    if not first_start:
        dispatcher.release_held(scope.session, enrollment_ids(campaign))
        return []
    campaign.started_at = clock.now()
    jobs = []
    if campaign.start_trigger in (StartTrigger.EXISTING, StartTrigger.BOTH):
        jobs = enrollment_jobs(scope, campaign, graph)
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
    if campaign.state != DripState.STARTED:
        raise Invalid(f"the campaign is {campaign.state}, not started", field="state")
    campaign.state = DripState.PAUSED
    campaign.updated_at = clock.now()
