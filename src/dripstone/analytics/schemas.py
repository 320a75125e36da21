"""What the analytics endpoints answer with, for the OpenAPI document. The tables stream
these shapes row by row; a property with no value is left out of a row."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema


class SendTotals(BaseModel):
    delivered: int
    viewed: int = Field(description="distinct recipients who opened or clicked")
    clicked: int = Field(description="distinct recipients who clicked any link")
    bounced: int = Field(description="soft_bounced + hard_bounced")
    soft_bounced: int
    hard_bounced: int
    unsubscribed: int = Field(description="distinct recipients who left through this message")
    global_unsubscribed: int = Field(description="of those, the ones who left all mail")
    sent: int = Field(description="extension: handed to a mail server that answered for good")
    human_viewed: int = Field(description="extension: viewed by a person")
    machine_viewed: int = Field(description="extension: viewed only by machines")
    human_clicked: int = Field(description="extension: clicked by a person")
    bot_clicked: int = Field(description="extension: clicked only by bots")


class SendRow(BaseModel):
    id: str = Field(description="the send's id")
    marketing_email_id: str = Field(description="the mailing's id (as campaign_mailing_id)")
    campaign_mailing_id: str
    campaign_mailing_created_at: datetime
    sent_at: datetime = Field(description="when the send began")
    subscription_list_name: str


class LinkRow(BaseModel):
    html_id: int = Field(description="the link's number in the HTML, in document order")
    target_url: str
    clicked: int = Field(description="distinct recipients who clicked it")
    human_clicked: int = Field(description="extension: of those, people")
    clicks: int = Field(description="extension: every click on it")


class ClickerCustomField(BaseModel):
    subscriber_custom_field_type_id: str
    value: str


class ClickerAttributes(BaseModel):
    email: str = Field(description='"" for a subscriber known by phone only')
    first_name: str
    last_name: str
    custom_fields: list[ClickerCustomField]


class ClickerRow(BaseModel):
    id: str
    type: Literal["subscriber"] = "subscriber"
    attributes: ClickerAttributes


class DeliveryRow(BaseModel):
    recipient: str
    created_at: datetime
    delivered: bool
    viewed: bool = Field(description="opened or clicked")
    clicked: bool
    bounced: bool
    unsubscribed: bool
    tracking_links: dict[str, str] = Field(
        description="clicks per URL clicked, as text, keyed by the URL"
    )


class TrackingLinkAttributes(BaseModel):
    target_url: str
    opened_at: datetime | SkipJsonSchema[None] = Field(
        default=None, description="the link's first click; absent when never clicked"
    )
    clicked: int = Field(description="clicks on this link of this delivery")
    campaign_mailing_delivery_id: str


class TrackingLinkRow(BaseModel):
    id: str = Field(description="the delivery's id and the link's html_id")
    type: Literal["tracking_link"] = "tracking_link"
    attributes: TrackingLinkAttributes
