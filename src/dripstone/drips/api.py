"""Routes of the drips domain: drip campaigns, their lifecycle and their report."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from dripstone.db import AccountScope
from dripstone.drips import builder, campaigns, lifecycle, report, schemas
from dripstone.drips.models import DripCampaign
from dripstone.http import STANDARD_ERRORS, Data, Empty, ReadScope, WriteScope
from dripstone.subscribers.models import SubscriptionList

router = APIRouter(responses=STANDARD_ERRORS, tags=["drip campaigns"])


def _attributes(
    scope: AccountScope, campaign: DripCampaign, counts: tuple[int, int]
) -> schemas.CampaignListAttributes:
    lst = scope.by_id(SubscriptionList, campaign.subscription_list_id)
    return schemas.CampaignListAttributes(
        name=campaign.name,
        subscription_list_id=lst.uuid if lst else None,
        subscription_list_name=lst.name if lst else None,
        state=campaign.state,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        start_trigger=campaign.start_trigger,
        subscriber_count=counts[0],
        subscriber_completed_count=counts[1],
    )


def _campaign(scope: AccountScope, campaign: DripCampaign) -> schemas.CampaignResource:
    counts = report.counts(scope.session, [campaign.id])[campaign.id]
    listed = _attributes(scope, campaign, counts)
    return schemas.CampaignResource(
        id=campaign.uuid,
        attributes=schemas.CampaignAttributes(
            **listed.model_dump(),
            drip_campaign_nodes=campaign.nodes,
            drip_campaign_tree_blob=campaign.tree_blob,
        ),
    )


def _fields(body: schemas.CampaignWrite) -> campaigns.CampaignFields:
    fields = body.drip_campaign
    return campaigns.CampaignFields(
        name=fields.name,
        subscription_list_id=fields.subscription_list_id,
        start_trigger=fields.start_trigger,
        nodes=fields.drip_campaign_nodes,
    )


@router.get("/drip_campaigns")
def list_campaigns(
    scope: ReadScope,
    search: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="regex on name")
    ] = None,
    order_by: Literal["name", "created_at", "updated_at", "state"] = "created_at",
    order: Literal["asc", "desc"] = "desc",
) -> Data[list[schemas.CampaignListResource]]:
    """The account's drip campaigns, with live subscriber counts."""
    found = campaigns.list_campaigns(scope, search=search, order_by=order_by, order=order)
    counts = report.counts(scope.session, [c.id for c in found])
    return Data(
        data=[
            schemas.CampaignListResource(id=c.uuid, attributes=_attributes(scope, c, counts[c.id]))
            for c in found
        ]
    )


@router.post("/drip_campaigns")
def create_campaign(
    body: schemas.CampaignWrite, scope: WriteScope
) -> Data[schemas.CampaignResource]:
    """Create a campaign in `draft`; the graph is checked now and again at start."""
    return Data(data=_campaign(scope, campaigns.create_campaign(scope, _fields(body))))


@router.get("/drip_campaigns/{id}")
def get_campaign(id: str, scope: ReadScope) -> Data[schemas.CampaignResource]:
    """One campaign, with its graph and tree as JSON strings."""
    return Data(data=_campaign(scope, campaigns.get_campaign(scope, id)))


@router.put("/drip_campaigns/{id}")
def update_campaign(
    id: str, body: schemas.CampaignWrite, scope: WriteScope
) -> Data[schemas.CampaignResource]:
    """Change the fields sent; a new graph applies to a running campaign at once."""
    campaign = campaigns.get_campaign(scope, id, lock="change")
    return Data(data=_campaign(scope, campaigns.update_campaign(scope, campaign, _fields(body))))


@router.delete("/drip_campaigns/{id}")
def delete_campaign(id: str, scope: WriteScope) -> Empty:
    """Delete a campaign that is not started (pause it first)."""
    campaigns.delete_campaign(scope, campaigns.get_campaign(scope, id, lock="change"))
    return Empty()


@router.post("/drip_campaigns/{id}/start")
def start_campaign(id: str, scope: WriteScope) -> Data[schemas.Started]:
    """Start (or resume) the campaign; `jids` are the jobs enrolling the list's members."""
    jids = lifecycle.start(scope, campaigns.get_campaign(scope, id, lock="change"))
    return Data(data=schemas.Started(jids=jids))


@router.post("/drip_campaigns/{id}/pause")
def pause_campaign(id: str, scope: WriteScope) -> Data[schemas.Paused]:
    """Pause: nothing is sent and no one advances until it is started again."""
    campaign = campaigns.get_campaign(scope, id, lock="change")
    lifecycle.pause(campaign)
    return Data(data=schemas.Paused(drip_campaign_id=campaign.uuid))


@router.get("/drip_campaigns/{id}/report")
def campaign_report(
    id: str,
    scope: ReadScope,
    items: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Data[schemas.Report]:
    """Per node: entered, waiting now, completed, exited, emails sent/opened/clicked; and a
    page of enrollments with their current node and next step time."""
    campaign = campaigns.get_campaign(scope, id)
    nodes, enrollments = report.report(scope, campaign, items=items, page=page)
    return Data(
        data=schemas.Report(
            nodes=[schemas.NodeReport(**n) for n in nodes],
            enrollments=[schemas.EnrollmentReport(**e) for e in enrollments],
        )
    )


def simulation(
    scope: AccountScope, campaign: DripCampaign, body: schemas.SimulateBody
) -> schemas.Simulation:
    """The simulate service's answer in its wire shape (the dashboard answers the same)."""
    facts = body.facts
    run = builder.simulate_campaign(
        scope,
        campaign,
        subscriber_id=body.subscriber_id,
        described=builder.DescribedFacts(
            opened=facts.opened,
            clicked=facts.clicked,
            fields=facts.fields,
            lists=facts.lists,
            timezone=facts.timezone,
        ),
        start=body.start_at,
    )
    return schemas.Simulation(
        steps=[
            schemas.SimulatedStep(
                node_id=s.node_id,
                kind=s.kind,
                at=s.at,
                what=s.what,
                branch=s.branch,
                until=s.until,
                mailing_id=s.mailing_id,
            )
            for s in run.steps
        ],
        outcome=run.outcome,
        reason=run.reason,
    )


@router.post("/drip_campaigns/{id}/simulate")
def simulate_campaign(
    id: str, body: schemas.SimulateBody, scope: ReadScope
) -> Data[schemas.Simulation]:
    """Extension: the path the engine would take, step by step with dates, for a subscriber
    (`subscriber_id`) or typed facts; nothing is sent or recorded."""
    return Data(data=simulation(scope, campaigns.get_campaign(scope, id), body))
