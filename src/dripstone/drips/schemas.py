"""Wire shapes of the drips domain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
)

from dripstone.drips.graph import (
    MAX_CUSTOM_FIELD_NAME,
    MAX_CUSTOM_FIELD_VALUE,
    MAX_NODE_ID_LENGTH,
    MAX_NODES,
)
from dripstone.wire import NoNul, OneLine, Strict, Text, Uuid

MAX_GRAPH_LENGTH = 1_000_000


def _graph_text(value: Any) -> Any:
    """The graph travels as a JSON string; a client that sends the object gets the same."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _graph_length(value: str) -> str:
    if len(value) > MAX_GRAPH_LENGTH:
        raise ValueError(f"must be at most {MAX_GRAPH_LENGTH:,} characters, got {len(value):,}")
    return value


# The length is checked by hand: after a BeforeValidator Pydantic counts it in "items".
GraphText = Annotated[str, BeforeValidator(_graph_text), AfterValidator(_graph_length), NoNul]
CampaignName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul, OneLine
]
Trigger = Literal["existing", "subscription", "both"]


class CampaignFields(Strict):
    name: CampaignName | None = None
    subscription_list_id: Uuid | None = None
    start_trigger: Trigger | None = None
    drip_campaign_nodes: GraphText | None = None


class CampaignWrite(Strict):
    drip_campaign: CampaignFields


class CampaignListAttributes(BaseModel):
    name: str
    subscription_list_id: Text
    subscription_list_name: Text
    state: str
    created_at: datetime
    updated_at: datetime
    start_trigger: str
    subscriber_count: int
    subscriber_completed_count: int


class CampaignAttributes(CampaignListAttributes):
    drip_campaign_nodes: str
    drip_campaign_tree_blob: str


class CampaignListResource(BaseModel):
    id: str
    type: Literal["drip_campaign"] = "drip_campaign"
    attributes: CampaignListAttributes


class CampaignResource(BaseModel):
    id: str
    type: Literal["drip_campaign"] = "drip_campaign"
    attributes: CampaignAttributes


class Started(BaseModel):
    jids: list[str]


class Paused(BaseModel):
    drip_campaign_id: str
    status: Literal["paused"] = "paused"


class NodeReport(BaseModel):
    id: str
    type: str
    entered: int
    waiting: int
    completed: int
    exited: int
    emails_sent: int
    emails_opened: int
    emails_clicked: int


class EnrollmentReport(BaseModel):
    subscriber_id: str | None
    email: str | None
    state: str
    node_id: str
    next_run_at: datetime | None
    enrolled_at: datetime
    finished_at: datetime | None
    exit_reason: str | None


class Report(BaseModel):
    nodes: list[NodeReport]
    enrollments: list[EnrollmentReport]


def _known_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


NodeRef = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NODE_ID_LENGTH), NoNul]
FactName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CUSTOM_FIELD_NAME + 7), NoNul
]
FactValue = Annotated[str, StringConstraints(max_length=MAX_CUSTOM_FIELD_VALUE), NoNul]


class SimulatedFacts(Strict):
    """Facts typed in (with `subscriber_id`, they add to and override the subscriber's)."""

    opened: Annotated[list[NodeRef], Field(max_length=MAX_NODES)] = Field(
        default=[], description="email node ids whose message was opened"
    )
    clicked: Annotated[list[NodeRef], Field(max_length=MAX_NODES)] = Field(
        default=[], description="email node ids whose message was clicked (any link asked about)"
    )
    fields: Annotated[dict[FactName, FactValue | None], Field(max_length=200)] = Field(
        default={},
        description='field values by the names conditions use: "email", "first_name", '
        '"custom.<name>"',
    )
    lists: Annotated[list[Uuid], Field(max_length=200)] = Field(
        default=[], description="subscription lists the subscriber is on"
    )
    timezone: Annotated[str | None, AfterValidator(_known_zone)] = Field(
        default=None, max_length=64, description="IANA time zone, e.g. Europe/Paris"
    )


class SimulateBody(Strict):
    """Extension: simulate the campaign for a real subscriber or for typed facts."""

    subscriber_id: Uuid | None = None
    facts: SimulatedFacts = SimulatedFacts()
    start_at: AwareDatetime | None = Field(
        default=None, description="when the subscriber enters the trigger; now if absent"
    )


class SimulatedStep(BaseModel):
    node_id: str
    kind: str
    at: datetime
    what: str = Field(description="sent email X / waited until / branch yes|no / action / exit")
    branch: str | None
    until: datetime | None
    mailing_id: str | None


class Simulation(BaseModel):
    steps: list[SimulatedStep]
    outcome: Literal["completed", "exited", "unfinished"]
    reason: str | None
