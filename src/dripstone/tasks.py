"""Every domain's registrations: Huey tasks, job steps, what each kind of delivery says,
account set-up, message counts, the analytics counters. Importing this module registers them all."""

from dripstone.analytics import counters as analytics_counters
from dripstone.delivery import tasks as delivery_tasks
from dripstone.drips import outgoing as drips_outgoing
from dripstone.drips import tasks as drips_tasks
from dripstone.idempotency import tasks as idempotency_tasks
from dripstone.jobs import tasks as jobs_tasks
from dripstone.mailings import outgoing as mailings_outgoing
from dripstone.mailings import service as mailings_service
from dripstone.subscribers import bulk as subscribers_bulk
from dripstone.subscribers import importing as subscribers_importing
from dripstone.subscribers import subscriptions as subscriptions_service

__all__ = [
    "analytics_counters",
    "delivery_tasks",
    "drips_outgoing",
    "drips_tasks",
    "idempotency_tasks",
    "jobs_tasks",
    "mailings_outgoing",
    "mailings_service",
    "subscribers_bulk",
    "subscribers_importing",
    "subscriptions_service",
]
