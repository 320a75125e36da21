"""Wire shapes of the subscribers domain, with the Paubox field names."""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

from dripstone.wire import Email, Name, NoNul, OneLine, Strict, Text, Uuid

MAX_BULK_ROWS = 10_000
MAX_FILTER_TERMS = 500  # keeps SQLite under its expression depth limit of 1000
# A search: words of letters and digits, each of which must match the email or a name.
SEARCH_PATTERN = r"^[^\W_]+( +[^\W_]+)*$"
SEARCH_MAX_LENGTH = 255


# Parsing a number costs a few hundred microseconds and depends on the text alone; the same
# number recurs across a list (an office's switchboard, say) and is checked once.
@functools.lru_cache(maxsize=4096)
def normalize_phone(value: str) -> str:
    """An E.164 number such as +14155550123."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not an E.164 phone number (expected e.g. +14155550123)") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number (expected E.164, e.g. +14155550123)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _custom_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number, not NaN or Infinity")
    if isinstance(value, int | float):
        return str(value)
    raise ValueError("custom field values must be strings, numbers or booleans")


Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize_phone)]
FieldName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul
]
CustomValue = Annotated[
    str, BeforeValidator(_custom_value), StringConstraints(max_length=10_000), NoNul
]
CustomFields = Annotated[list[dict[FieldName, CustomValue]], Field(max_length=200)]
ListName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul, OneLine
]


# --- subscribers -------------------------------------------------------------------------


class SubscriberCreateFields(Strict):
    email: Email | None = None
    phone_number: Phone | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    custom_fields: CustomFields = []

    @model_validator(mode="after")
    def _reachable(self) -> SubscriberCreateFields:
        if self.email is None and self.phone_number is None:
            raise ValueError("email or phone_number is required")
        return self


class SubscriberCreate(Strict):
    subscriber: SubscriberCreateFields
    subscription_list_id: Uuid | None = None


class SubscriberUpdateFields(Strict):
    email: Email | None = None
    phone_number: Phone | None = None
    first_name: Name | None = None
    last_name: Name | None = None


class SubscriberUpdate(Strict):
    subscriber: SubscriberUpdateFields


class BulkSubscriberRow(Strict):
    email: Email
    first_name: Name | None = None
    last_name: Name | None = None
    custom_fields: CustomFields = []


class BulkCreate(Strict):
    subscribers: Annotated[list[BulkSubscriberRow], Field(min_length=1, max_length=MAX_BULK_ROWS)]
    subscription_list_id: Uuid | None = None


class SubscriberAttributes(BaseModel):
    email: Text  # "" for a subscriber known by phone only
    phone_number: str | None
    first_name: Text
    last_name: Text
    unsubscribed: bool


class CustomFieldValueOut(BaseModel):
    subscriber_custom_field_type_id: str
    custom_field_name: str
    custom_field_value: str


class MembershipOut(BaseModel):
    id: str
    name: str
    unsubscribed: bool


class SubscriberStatistics(BaseModel):
    deliveries: int
    delivered: int
    opened: int
    clicked: int
    soft_bounced: int
    hard_bounced: int
    unsubscribed: int
    global_unsubscribed: int


class DetailedSubscriberAttributes(SubscriberAttributes):
    created_at: datetime
    updated_at: datetime
    custom_fields: list[CustomFieldValueOut]
    subscription_lists: list[MembershipOut]
    # Present only when asked for (`with_stats=true`), as the contract says.
    statistics: SubscriberStatistics | None = Field(default=None, exclude_if=lambda v: v is None)


class SubscriberResource(BaseModel):
    id: str
    type: Literal["subscriber"] = "subscriber"
    attributes: SubscriberAttributes


class DetailedSubscriberResource(BaseModel):
    id: str
    type: Literal["subscriber"] = "subscriber"
    attributes: DetailedSubscriberAttributes


class BulkCreateResult(BaseModel):
    num_subscribers_added: int


# --- subscription lists --------------------------------------------------------------------


class ListFields(Strict):
    name: ListName


class ListWrite(Strict):
    """`{"name": ...}` as Paubox documents it, or wrapped as `{"subscription_list": {...}}`."""

    name: ListName | None = None
    subscription_list: ListFields | None = None

    @model_validator(mode="after")
    def _one_name(self) -> ListWrite:
        if (self.name is None) == (self.subscription_list is None):
            raise ValueError('send the list\'s name as {"name": "..."}')
        return self

    @property
    def list_name(self) -> str:
        return self.name if self.name is not None else self.subscription_list.name  # type: ignore[union-attr]


class ListAttributes(BaseModel):
    name: str
    is_default: bool
    subscriber_count: int
    form_id: Text


class ListResource(BaseModel):
    id: str
    type: Literal["subscription_list"] = "subscription_list"
    attributes: ListAttributes


# --- subscriptions -------------------------------------------------------------------------


class SubscriptionFields(Strict):
    subscription_list_id: Uuid
    subscriber_id: Annotated[int, Field(ge=1, le=2**63 - 1)]


class SubscriptionCreate(Strict):
    subscription: SubscriptionFields


class SubscriptionRecord(BaseModel):
    id: int
    uuid: str
    subscription_list_id: str | None
    dynamic_list_id: str | None
    subscriber_id: int
    unsubscribed_at: datetime | None
    delete_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscribeRequest(Strict):
    subscriber_ids: Annotated[list[Uuid], Field(min_length=1, max_length=MAX_BULK_ROWS)]
    subscription_list_ids: Annotated[list[Uuid], Field(max_length=1000)] | None = None


# --- selections (select-all and segments) ---------------------------------------------------

FilterOp = Literal[
    "is",
    "is_not",
    "contains",
    "does_not_contain",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
]
SearchText = Annotated[
    str, StringConstraints(max_length=255, pattern=r"^(\*|[^\W_]+( +[^\W_]+)*)?$")
]


class FilterCondition(Strict):
    field: FieldName
    op: FilterOp
    terms: Annotated[
        list[Annotated[str, StringConstraints(max_length=1000), NoNul]], Field(max_length=100)
    ] = []

    @model_validator(mode="after")
    def _terms_needed(self) -> FilterCondition:
        if self.op not in ("is_empty", "is_not_empty") and not self.terms:
            raise ValueError(f"op {self.op!r} needs at least one term")
        return self


FilterGroup = Annotated[list[FilterCondition], Field(min_length=1, max_length=50)]


def _decode_filters(value: Any) -> Any:
    """Filters arrive as URL-encoded JSON text (as Paubox sends them) or as plain JSON."""
    if isinstance(value, str):
        try:
            return json.loads(unquote(value)) if value.strip() else []
        except json.JSONDecodeError:
            raise ValueError("filters must be URL-encoded JSON: [[{field, op, terms}]]") from None
    return value


def _within_query_limits(groups: list[list[FilterCondition]]) -> list[list[FilterCondition]]:
    """Each condition and term becomes SQL parameters; past a bound the databases refuse the
    query (SQLite and PostgreSQL both cap the parameters of one statement)."""
    weight = sum(max(1, len(condition.terms)) for group in groups for condition in group)
    if weight > MAX_FILTER_TERMS:
        raise ValueError(
            f"filters may hold at most {MAX_FILTER_TERMS} terms in all "
            "(a condition without terms counts as one)"
        )
    return groups


Filters = Annotated[
    list[FilterGroup],
    BeforeValidator(_decode_filters),
    Field(max_length=50),
    AfterValidator(_within_query_limits),
]


class BulkSelection(Strict):
    """Either explicit `subscriber_ids`, or select-all from a list with search and filters."""

    subscriber_ids: Annotated[list[Uuid], Field(min_length=1, max_length=MAX_BULK_ROWS)] | None = (
        None
    )
    from_subscription_list_id: Uuid | None = None
    search: SearchText = "*"
    filters: Filters = []
    except_ids: Annotated[list[Uuid], Field(max_length=MAX_BULK_ROWS)] = []

    @model_validator(mode="after")
    def _something_selected(self) -> BulkSelection:
        if self.subscriber_ids is None and self.from_subscription_list_id is None:
            raise ValueError("send subscriber_ids, or from_subscription_list_id to select all")
        return self


# --- dynamic lists and custom field types ----------------------------------------------------


class DynamicListFields(Strict):
    name: ListName
    subscription_list_id: Uuid | None = None
    search: SearchText = "*"
    filters: Filters = []


class DynamicListWrite(Strict):
    dynamic_list: DynamicListFields


class DynamicListAttributes(BaseModel):
    name: str
    subscription_list_id: str | None
    search: str
    filters: list[list[FilterCondition]]
    subscriber_count: int
    created_at: datetime
    updated_at: datetime


class DynamicListResource(BaseModel):
    id: str
    type: Literal["dynamic_list"] = "dynamic_list"
    attributes: DynamicListAttributes


class CustomFieldTypeFields(Strict):
    name: FieldName


class CustomFieldTypeWrite(Strict):
    subscriber_custom_field_type: CustomFieldTypeFields


class CustomFieldTypeAttributes(BaseModel):
    name: str
    created_at: datetime


class CustomFieldTypeResource(BaseModel):
    id: str
    type: Literal["subscriber_custom_field_type"] = "subscriber_custom_field_type"
    attributes: CustomFieldTypeAttributes
