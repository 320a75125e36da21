"""Route of the jobs domain: the status of a background job (Dripstone extension)."""

from __future__ import annotations

from fastapi import APIRouter

from dripstone.errors import NotFound
from dripstone.http import STANDARD_ERRORS, ReadScope
from dripstone.jobs import service
from dripstone.jobs.schemas import JobAttributes, JobEnvelope, JobResource
from dripstone.wire import is_uuid

router = APIRouter(responses=STANDARD_ERRORS, tags=["jobs"])


@router.get("/jobs/{jid}")
def get_job(jid: str, scope: ReadScope) -> JobEnvelope:
    """Kind, state and progress of a background job this API returned."""
    # Job ids are UUIDs; anything else names no job and is not looked up (PostgreSQL refuses
    # text holding a NUL character, which a path can carry as %00).
    job = service.get_job(scope, jid) if is_uuid(jid) else None
    if job is None:
        raise NotFound(f"job {jid} not found", field="jid")
    return JobEnvelope(
        data=JobResource(
            id=job.id,
            attributes=JobAttributes(
                kind=job.kind,
                state=job.state,
                total=job.total,
                done=job.done,
                failed=job.failed,
                counts=job.payload.get("counts"),
                error=job.error,
                created_at=job.created_at,
                started_at=job.started_at,
                finished_at=job.finished_at,
            ),
        )
    )
