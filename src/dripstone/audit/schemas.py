"""Wire shapes of the audit domain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AuditEventAttributes(BaseModel):
    occurred_at: datetime
    actor_type: Literal["api_key", "user"]
    actor: str = Field(description="the API key's prefix (or the user's id)")
    action: str = Field(description='method and route, as in "PUT /subscribers/{id}"')
    object_ids: dict[str, str | list[str]] = Field(
        description="ids the change named in its path or query, and those its answer returned"
    )
    status: int
    request_id: str | None


class AuditEventResource(BaseModel):
    id: str
    type: Literal["audit_event"] = "audit_event"
    attributes: AuditEventAttributes
