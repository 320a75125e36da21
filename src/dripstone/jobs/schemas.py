"""Wire shapes of the jobs domain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class JobAttributes(BaseModel):
    kind: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    total: int
    done: int
    failed: int
    # Jobs whose rows have several outcomes count each (an import: added, updated, ...).
    counts: dict[str, int] | None = None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobResource(BaseModel):
    id: str
    type: Literal["job"] = "job"
    attributes: JobAttributes


class JobEnvelope(BaseModel):
    data: JobResource


class JidEnvelopeData(BaseModel):
    jid: str


class JidEnvelope(BaseModel):
    data: JidEnvelopeData
