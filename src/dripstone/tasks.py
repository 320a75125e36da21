"""Every domain's Huey tasks and job steps; importing this module registers them all."""

from dripstone.jobs import tasks as jobs_tasks
from dripstone.subscribers import service as subscribers_service

__all__ = ["jobs_tasks", "subscribers_service"]
