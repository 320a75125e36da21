"""What a drip step's message says, and whether its campaign lets it go now: held while the
campaign is paused, dropped once it is deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, select

from dripstone.delivery.kinds import Claimed, DeliveryKind, Outgoing, reads_outgoing
from dripstone.drips.models import DripCampaign, DripEnrollment, DripState
from dripstone.mailings.outgoing import load_mailings, mailing_contents


@reads_outgoing(DeliveryKind.DRIP)
def _drip_steps(connection: Connection, claimed: Sequence[Claimed]) -> dict[int, Outgoing]:
    mailings = load_mailings(connection, {c.campaign_mailing_id for c in claimed})
    campaigns = {
        row.enrollment_id: row
        for row in connection.execute(
            select(
                DripEnrollment.id.label("enrollment_id"),
                DripCampaign.state,
                DripCampaign.deleted_at,
            )
            .join(DripCampaign, DripCampaign.id == DripEnrollment.drip_campaign_id)
            .where(DripEnrollment.id.in_({c.drip_enrollment_id for c in claimed}))
        )
    }
    found = {}
    for c in claimed:
        outgoing = mailing_contents(
            mailings[c.campaign_mailing_id],
            subject=c.subject,
            from_email=c.from_email,
            from_name=c.from_name,
        )
        campaign = campaigns.get(c.drip_enrollment_id or 0)
        if campaign is not None and campaign.deleted_at is not None:
            outgoing = replace(outgoing, skip_reason="the drip campaign was deleted")
        elif campaign is not None and campaign.state == DripState.PAUSED:
            outgoing = replace(outgoing, held=True)
        found[c.id] = outgoing
    return found
