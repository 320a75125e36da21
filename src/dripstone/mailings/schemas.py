"""Wire shapes of the mailings domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints

from dripstone.wire import Email, HeaderName, Name, NoNul, Strict, Text, Uuid

MAX_RECIPIENT_EMAILS = 50
MAX_PART_LENGTH = 2_000_000

Subject = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=998), NoNul
]
Part = Annotated[str, StringConstraints(max_length=MAX_PART_LENGTH), NoNul]
TemplateType = Annotated[str, StringConstraints(min_length=1, max_length=32), NoNul]

SenderName = HeaderName


def _time_text(value: object) -> str:
    """`send_at` as text for the route to check; anything that cannot be a time becomes ""
    so that it gets the contract's 400 for a bad time, not a validation error."""
    return value if isinstance(value, str) and len(value) <= 64 else ""


class MailingFields(Strict):
    """A mailing's fields as written; on update only the fields sent change."""

    subject: Subject | None = None
    default_subject: Subject | None = None
    from_: Email | None = Field(default=None, alias="from")
    from_name: SenderName | None = None
    reply_to: Email | None = None
    html_part: Part | None = None
    text_part: Part | None = None
    form_data: Any = None
    image_data: Any = None
    template_type: TemplateType | None = None


class MailingWrite(Strict):
    campaign_mailing: MailingFields


class MailingListAttributes(BaseModel):
    subject: str
    default_subject: str | None
    template_type: str
    created_at: datetime
    updated_at: datetime
    sent_count: int
    delivered_count: int
    viewed_count: int
    clicked_count: int
    bounced_count: int
    unsubscribed_count: int


class MailingListResource(BaseModel):
    id: str
    type: Literal["campaign_mailing"] = "campaign_mailing"
    attributes: MailingListAttributes


class MailingAttributes(BaseModel):
    subject: str
    default_subject: str | None
    template_type: str
    created_at: datetime
    updated_at: datetime
    form_data: Text
    html_part: Text
    text_part: str | None
    from_: str | None = Field(serialization_alias="from")
    from_name: str | None
    reply_to: str | None
    # Only with `with_images`: the images as JSON text ("" when the mailing has none).
    image_data: str | None = Field(default=None, exclude_if=lambda v: v is None)


class MailingResource(BaseModel):
    id: str
    type: Literal["campaign_mailing"] = "campaign_mailing"
    attributes: MailingAttributes


class IdOnly(BaseModel):
    id: str


class BulkDelete(Strict):
    campaign_mailing_ids: Annotated[list[Uuid], Field(max_length=1000)] = []


RecipientEmails = Annotated[list[Email], Field(max_length=MAX_RECIPIENT_EMAILS)]


class SendFields(Strict):
    sender_email: Email
    subscription_list_id: Uuid | None = None
    dynamic_list_id: Uuid | None = None
    recipient_emails: RecipientEmails = []
    customer_name: Name | None = None
    from_email: Email | None = None
    from_name: SenderName | None = None
    subject: Subject | None = None


class SendCreate(Strict):
    campaign_mailing_id: Uuid
    campaign_mailing_send: SendFields


class ScheduleCreate(Strict):
    """A send at `send_at`. The mailing is `campaign_mailing_id`, else the one titled `subject`."""

    send_at: Annotated[str, BeforeValidator(_time_text)]
    sender_email: Email
    subscription_list_id: Uuid | None = None
    dynamic_list_id: Uuid | None = None
    campaign_mailing_id: Uuid | None = None
    subject: Subject | None = None
    from_email: Email | None = None
    from_name: SenderName | None = None
    customer_name: Name | None = None
    recipient_emails: RecipientEmails = []


class SendStarted(BaseModel):
    campaign_mailing_send_id: str
    jid: str


class ScheduleStarted(BaseModel):
    send_at: datetime
    send_at_timestamp: str
    jid: str
    campaign_mailing_send_id: str


class SendCounts(BaseModel):
    recipients: int
    pending: int
    delivered: int
    soft_bounced: int
    hard_bounced: int
    skipped: int
    failed: int
    opened: int
    clicked: int
    unsubscribed: int


class SendAttributes(BaseModel):
    campaign_mailing_id: str
    subscription_list_id: str | None
    dynamic_list_id: str | None
    list_name: str
    subject: str
    from_email: str
    from_name: str | None
    sender_email: str
    state: str
    jid: str
    send_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: SendCounts


class SendResource(BaseModel):
    id: str
    type: Literal["campaign_mailing_send"] = "campaign_mailing_send"
    attributes: SendAttributes
