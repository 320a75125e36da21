"""Route of the audit domain: the account's audit log (Dripstone extension)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dripstone.audit import service
from dripstone.audit.schemas import AuditEventAttributes, AuditEventResource
from dripstone.http import STANDARD_ERRORS, Data, ReadScope

router = APIRouter(responses=STANDARD_ERRORS, tags=["audit"])


@router.get("/audit_events")
def list_audit_events(
    scope: ReadScope,
    items: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Data[list[AuditEventResource]]:
    """Changes made to the account through the API, newest first: who, when, which route,
    which ids. Any key of the account may read them."""
    events = service.list_events(scope, items=items, page=page)
    return Data(
        data=[
            AuditEventResource(
                id=event.id,
                attributes=AuditEventAttributes(
                    occurred_at=event.occurred_at,
                    actor_type="user" if event.actor_type == "user" else "api_key",
                    actor=event.actor,
                    action=event.action,
                    object_ids=event.object_ids,
                    status=event.status,
                    request_id=event.request_id,
                ),
            )
            for event in events
        ]
    )
