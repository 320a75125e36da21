"""What the messages of campaign sends, previews and test emails say, for the dispatcher.

A send's messages carry the content the send froze when it began; a test email carries the
mailing as it is now, its subject marked. Drip steps use `mailing_contents` too, with their
node's overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from dripstone.delivery.kinds import Claimed, Content, DeliveryKind, Outgoing, reads_outgoing
from dripstone.mailings.models import CampaignMailing, CampaignMailingSend

TEST_SUBJECT_PREFIX = "[Test] "


@reads_outgoing(DeliveryKind.CAMPAIGN, DeliveryKind.PREVIEW)
def _sends(connection: Connection, claimed: Sequence[Claimed]) -> dict[int, Outgoing]:
    sends = connection.execute(
        select(
            CampaignMailingSend.id,
            CampaignMailingSend.subject,
            CampaignMailingSend.html_part,
            CampaignMailingSend.text_part,
            CampaignMailingSend.from_email,
            CampaignMailingSend.from_name,
            CampaignMailingSend.reply_to,
        ).where(CampaignMailingSend.id.in_({c.send_id for c in claimed}))
    )
    by_send = {
        send.id: Outgoing(
            content_key=("send", send.id),
            content=Content(
                subject=send.subject,
                html=send.html_part,
                text=send.text_part,
                from_email=send.from_email,
                from_name=send.from_name,
                reply_to=send.reply_to,
            ),
        )
        for send in sends
    }
    return {c.id: by_send[c.send_id] for c in claimed if c.send_id is not None}


@reads_outgoing(DeliveryKind.TEST)
def _tests(connection: Connection, claimed: Sequence[Claimed]) -> dict[int, Outgoing]:
    mailings = load_mailings(connection, {c.campaign_mailing_id for c in claimed})
    return {
        c.id: mailing_contents(
            mailings[c.campaign_mailing_id],
            subject=TEST_SUBJECT_PREFIX + mailings[c.campaign_mailing_id].subject,
        )
        for c in claimed
    }


def load_mailings(connection: Connection, mailing_ids: Iterable[int]) -> dict[int, Any]:
    """The rows of these mailings, with what a message needs of them."""
    rows = connection.execute(
        select(
            CampaignMailing.id,
            CampaignMailing.updated_at,
            CampaignMailing.subject,
            CampaignMailing.html_part,
            CampaignMailing.text_part,
            CampaignMailing.from_email,
            CampaignMailing.from_name,
            CampaignMailing.reply_to,
        ).where(CampaignMailing.id.in_(set(mailing_ids)))
    )
    return {row.id: row for row in rows}


def mailing_contents(
    mailing: Any,
    *,
    subject: str | None = None,
    from_email: str | None = None,
    from_name: str | None = None,
) -> Outgoing:
    """A message of `mailing` as it is now, with the given subject and sender overrides;
    kept under a key that changes whenever the mailing or an override does."""
    subject = subject or mailing.subject
    return Outgoing(
        content_key=("mailing", mailing.id, mailing.updated_at, subject, from_email, from_name),
        content=Content(
            subject=subject,
            html=mailing.html_part,
            text=mailing.text_part,
            from_email=from_email or mailing.from_email,
            from_name=from_name or mailing.from_name,
            reply_to=mailing.reply_to,
        ),
    )
