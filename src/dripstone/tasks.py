"""Every domain's Huey tasks and job steps; importing this module registers them all."""

from dripstone.delivery import tasks as delivery_tasks
from dripstone.drips import tasks as drips_tasks
from dripstone.idempotency import tasks as idempotency_tasks
from dripstone.jobs import tasks as jobs_tasks
from dripstone.mailings import service as mailings_service
from dripstone.subscribers import subscriptions as subscriptions_service

__all__ = [
    "delivery_tasks",
    "drips_tasks",
    "idempotency_tasks",
    "jobs_tasks",
    "mailings_service",
    "subscriptions_service",
]
