"""How a campaign send is going while it runs, and the rates its numbers come to.

Cheap on a send of any size: the outcomes (delivered, bounced) are the send's counter row;
what is still waiting, skipped or failed is counted on the (send, status) index among those
statuses only, so the delivered rows of a finished send are never read; the number of
recipients is the send job's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select

from dripstone import clock
from dripstone.analytics import counters
from dripstone.db import AccountScope
from dripstone.delivery import outcomes
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import FINAL, Delivery, DeliveryStatus
from dripstone.jobs.models import Job, JobState
from dripstone.mailings.models import CampaignMailingSend, SendState

# The statuses that are not outcomes the counters keep.
_COUNTED_HERE = [s.value for s in DeliveryStatus if s not in FINAL] + [
    DeliveryStatus.SKIPPED.value,
    DeliveryStatus.FAILED.value,
]


@dataclass(frozen=True)
class SendProgress:
    """Where a send's messages stand."""

    state: SendState
    recipients: int  # messages the send makes (known once it has begun)
    queued: int  # waiting for a first attempt, or being handed to the relay
    deferred: int  # the relay said "later" (4xx): waiting for another attempt
    delivered: int
    bounced: int
    failed: int  # could not be rendered for the recipient
    skipped: int  # never sent: opted out, unsubscribed, suppressed or deleted meanwhile
    last_reply: str | None  # the relay's last answer to a deferred message
    last_reply_at: datetime | None  # when that message is tried again
    problem: str | None  # why the send stopped, when it failed
    send_at: datetime | None

    @property
    def done(self) -> int:
        """Messages with an outcome: delivered, bounced, failed or skipped."""
        return self.delivered + self.bounced + self.failed + self.skipped

    @property
    def running(self) -> bool:
        """Still moving: begun and not finished, or due to begin now."""
        if self.state in (SendState.QUEUEING, SendState.SENDING):
            return True
        due = self.send_at is None or self.send_at <= clock.now()
        return self.state == SendState.SCHEDULED and due


def send_progress(scope: AccountScope, send: CampaignMailingSend) -> SendProgress:
    """The send's progress now (three indexed reads and its counter row)."""
    rows = scope.session.execute(
        select(
            Delivery.status,
            func.count().label("n"),
            func.coalesce(func.sum(case((Delivery.attempts > 0, 1), else_=0)), 0).label("retried"),
        )
        .where(
            Delivery.send_id == send.id,
            Delivery.status.in_(_COUNTED_HERE),
            Delivery.kind == DeliveryKind.CAMPAIGN.value,
            Delivery.account_id == scope.account_id,
        )
        .group_by(Delivery.status)
    )
    by_status = {row.status: (row.n, row.retried) for row in rows}
    pending, retried = by_status.get(DeliveryStatus.PENDING.value, (0, 0))
    waiting = pending + sum(
        by_status.get(s.value, (0, 0))[0]
        for s in (DeliveryStatus.CLAIMED, DeliveryStatus.SENDING, DeliveryStatus.HELD)
    )
    totals = counters.send_totals(scope.session, scope.account_id, send.id)
    job = scope.session.scalars(scope.select(Job).where(Job.id == send.job_id)).one_or_none()
    last = (
        outcomes.last_deferral(scope.session.connection(), Delivery.send_id == send.id)
        if retried
        else None
    )
    failed = by_status.get(DeliveryStatus.FAILED.value, (0, 0))[0]
    skipped = by_status.get(DeliveryStatus.SKIPPED.value, (0, 0))[0]
    made = waiting + totals.sent + failed + skipped
    reply = f"{last.smtp_code or ''} {last.smtp_reply or ''}".strip() if last else None
    return SendProgress(
        state=SendState(send.state),
        recipients=max(job.total if job is not None else 0, made),
        queued=waiting - retried,
        deferred=retried,
        delivered=totals.delivered,
        bounced=totals.bounced,
        failed=failed,
        skipped=skipped,
        last_reply=reply or None,
        last_reply_at=last.next_attempt_at if last else None,
        problem=job.error if job is not None and job.state == JobState.FAILED else None,
        send_at=send.send_at,
    )


@dataclass(frozen=True)
class Rates:
    """A send's numbers as shares: delivered and bounced of those sent; opened, clicked and
    unsubscribed of those delivered. None where there is nothing to divide by yet."""

    delivered: float | None
    bounced: float | None
    opened: float | None
    human_opened: float | None
    clicked: float | None
    unsubscribed: float | None


def rates_of(totals: counters.Totals) -> Rates:
    """The rates of a send's (or a mailing's) totals."""

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return Rates(
        delivered=share(totals.delivered, totals.sent),
        bounced=share(totals.bounced, totals.sent),
        opened=share(totals.viewed, totals.delivered),
        human_opened=share(totals.human_viewed, totals.delivered),
        clicked=share(totals.clicked, totals.delivered),
        unsubscribed=share(totals.unsubscribed, totals.delivered),
    )
