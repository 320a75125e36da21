"""What an account's first page sums up: its latest sends with their rates, its drip
campaigns with who is waiting in them, its last 30 days of mail and its bounce rate against
the line mailbox providers hold senders to, and what to do first when there is nothing yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dripstone import clock
from dripstone.analytics import counters
from dripstone.db import AccountScope
from dripstone.drips import campaigns, report
from dripstone.drips.models import DripCampaign
from dripstone.mailings import service as mailings
from dripstone.mailings.models import CampaignMailing, CampaignMailingSend
from dripstone.subscribers.models import Subscriber

RECENT_SENDS = 10
DRIPS_SHOWN = 10
DAYS = 30


@dataclass(frozen=True)
class RecentSend:
    send: CampaignMailingSend
    totals: counters.Totals


@dataclass(frozen=True)
class DripSummary:
    campaign: DripCampaign
    waiting: int  # subscribers in it now, waiting for their next step
    completed: int


@dataclass(frozen=True)
class Month:
    """The last `DAYS` days of campaign and drip messages."""

    days: list[counters.Day]
    sent: int
    bounced: int
    bounce_rate: float | None
    over_the_line: bool  # the bounce rate is above what mailbox providers accept


@dataclass(frozen=True)
class Overview:
    sends: list[RecentSend]
    drips: list[DripSummary]
    more_drips: bool
    month: Month
    has_subscribers: bool
    has_mailings: bool


def month(scope: AccountScope, today: date | None = None) -> Month:
    """The last 30 UTC days to `today` (default: now), from the daily counters."""
    days = counters.daily_totals(scope.session, scope.account_id, DAYS, today or clock.now().date())
    sent = sum(d.sent for d in days)
    bounced = sum(d.bounced for d in days)
    rate = counters.share(bounced, sent)
    over = rate is not None and rate > counters.MAILBOX_PROVIDER_LIMIT
    return Month(days, sent, bounced, rate, over)


def overview(scope: AccountScope) -> Overview:
    """The overview of the account: a fixed handful of indexed queries whatever its size
    (the latest sends by the (account, id) index, their counters by key, the daily counters
    by key range; drip campaign counts read their kept step counters and the enrollments'
    (campaign, state, node) index)."""
    sends = mailings.list_sends(scope, items=RECENT_SENDS, page=1)
    totals = counters.send_totals_by_id(scope.session, scope.account_id, [s.id for s in sends])
    found = campaigns.list_campaigns(scope, search=None, order_by="updated_at", order="desc")
    shown = found[:DRIPS_SHOWN]
    counts = report.step_counts(scope.session, [c.id for c in shown])
    return Overview(
        sends=[RecentSend(s, totals[s.id]) for s in sends],
        drips=[DripSummary(c, *counts[c.id]) for c in shown],
        more_drips=len(found) > DRIPS_SHOWN,
        month=month(scope),
        has_subscribers=bool(sends) or _has(scope, Subscriber),
        has_mailings=bool(sends) or _has(scope, CampaignMailing),
    )


def _has(scope: AccountScope, model: type[Subscriber] | type[CampaignMailing]) -> bool:
    """Whether the account has at least one such row (the first one by the account index)."""
    stmt = scope.select(model, model.id).limit(1)
    return scope.session.scalar(stmt) is not None
