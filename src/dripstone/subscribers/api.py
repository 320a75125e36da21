"""Routes of the subscribers domain: subscribers, lists, subscriptions, segments, fields."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic import Field as PydanticField

from dripstone.db import AccountScope
from dripstone.errors import BadRequest, DripstoneError, Invalid, NotFound
from dripstone.http import (
    ERRORS_LIST_QUIRK,
    ERRORS_STRING_QUIRK,
    STANDARD_ERRORS,
    Data,
    Empty,
    ErrorsList,
    ErrorsString,
    ReadScope,
    WriteScope,
)
from dripstone.jobs.schemas import JidEnvelope, JidEnvelopeData
from dripstone.jobs.service import get_job
from dripstone.subscribers import (
    custom_fields,
    importing,
    lists,
    schemas,
    segments,
    service,
    staging,
    subscriptions,
)
from dripstone.subscribers.models import CustomFieldType, DynamicList, Subscriber, SubscriptionList
from dripstone.wire import UUID_PATTERN, Uuid, is_uuid

router = APIRouter(responses=STANDARD_ERRORS)

_uuid = TypeAdapter(Uuid)
SearchQuery = Annotated[
    str | None,
    Query(
        max_length=schemas.SEARCH_MAX_LENGTH,
        pattern=schemas.SEARCH_PATTERN,
        description="letters, digits and spaces; every word must match email or a name",
    ),
]


def _subscriber(s: Subscriber) -> schemas.SubscriberResource:
    return schemas.SubscriberResource(id=s.uuid, attributes=service.summary(s))


def _list(lst: SubscriptionList, count: int) -> schemas.ListResource:
    return schemas.ListResource(
        id=lst.uuid,
        attributes=schemas.ListAttributes(
            name=lst.name, is_default=lst.is_default, subscriber_count=count, form_id=lst.form_id
        ),
    )


# --- subscribers ---------------------------------------------------------------------------


@router.get("/subscribers", tags=["subscribers"])
def list_subscribers(
    scope: ReadScope,
    items: Annotated[int, Query(ge=1, le=1000)] = 50,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    search: SearchQuery = None,
    order_by: Literal[
        "first_name", "last_name", "email", "created_at", "updated_at"
    ] = "created_at",
    order: Literal["asc", "desc"] = "desc",
    subscription_list_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
) -> Data[list[schemas.SubscriberResource]]:
    """Subscribers of the account (or of one list), a page at a time."""
    found = service.list_subscribers(
        scope,
        items=items,
        page=page,
        search=search or "",
        order_by=order_by,
        order=order,
        list_id=subscription_list_id,
    )
    return Data(data=[_subscriber(s) for s in found])


@router.post("/subscribers", tags=["subscribers"])
def create_subscriber(
    body: schemas.SubscriberCreate, scope: WriteScope
) -> Data[schemas.SubscriberResource]:
    """Create a subscriber; it joins All contacts, and the given list if any."""
    created = service.create_subscriber(scope, body.subscriber, body.subscription_list_id)
    return Data(data=_subscriber(created))


@router.get("/subscribers/{id}", tags=["subscribers"])
def get_subscriber(
    id: str, scope: ReadScope, with_stats: bool = False
) -> Data[schemas.DetailedSubscriberResource]:
    """One subscriber with custom fields, lists and (with_stats) statistics."""
    subscriber = service.get_subscriber(scope, id)
    return Data(data=service.describe(scope, [subscriber], with_stats=with_stats)[0])


# One route per method, so that each operation gets its own operationId.
@router.put("/subscribers/{id}", tags=["subscribers"])
@router.patch("/subscribers/{id}", tags=["subscribers"])
def update_subscriber(
    id: str, body: schemas.SubscriberUpdate, scope: WriteScope
) -> Data[schemas.SubscriberResource]:
    """Change the fields sent; the others keep their values."""
    return Data(data=_subscriber(service.update_subscriber(scope, id, body.subscriber)))


@router.post("/subscribers_bulk_create", tags=["subscribers"])
def bulk_create_subscribers(
    body: schemas.BulkCreate, scope: WriteScope
) -> Data[schemas.BulkCreateResult]:
    """Add up to 10,000 subscribers at once. One invalid row rejects the whole request
    (422 naming the row); addresses already present are not duplicated."""
    added = service.bulk_create(scope, body.subscribers, body.subscription_list_id)
    return Data(data=schemas.BulkCreateResult(num_subscribers_added=added))


@router.delete("/subscribers_bulk_delete", tags=["subscribers"])
def bulk_delete_subscribers(
    scope: WriteScope,
    subscriber_ids: Annotated[str, Query(min_length=1, description="comma-separated ids")],
    subscription_list_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
) -> Empty:
    """Delete subscribers, or with subscription_list_id only take them off that list."""
    ids = [part.strip() for part in subscriber_ids.split(",") if part.strip()]
    for value in ids:
        try:
            _uuid.validate_python(value)
        except ValidationError:
            raise BadRequest(
                f"subscriber_ids: {value[:60]!r} is not a subscriber id", field="subscriber_ids"
            ) from None
    if not ids:
        raise BadRequest("subscriber_ids: give at least one id", field="subscriber_ids")
    service.bulk_delete(scope, ids, subscription_list_id)
    return Empty()


# --- custom field types --------------------------------------------------------------------


def _field_type(field_type: CustomFieldType) -> schemas.CustomFieldTypeResource:
    return schemas.CustomFieldTypeResource(
        id=field_type.uuid,
        attributes=schemas.CustomFieldTypeAttributes(
            name=field_type.name, created_at=field_type.created_at
        ),
    )


@router.get("/subscriber_custom_field_types", tags=["subscribers"])
def list_custom_field_types(scope: ReadScope) -> Data[list[schemas.CustomFieldTypeResource]]:
    """The account's custom fields."""
    return Data(data=[_field_type(f) for f in custom_fields.list_field_types(scope)])


@router.post("/subscriber_custom_field_types", tags=["subscribers"])
def create_custom_field_type(
    body: schemas.CustomFieldTypeWrite, scope: WriteScope
) -> Data[schemas.CustomFieldTypeResource]:
    """Define a custom field (fields named in subscriber custom_fields are created on use too)."""
    created = custom_fields.create_field_type(scope, body.subscriber_custom_field_type.name)
    return Data(data=_field_type(created))


# --- subscription lists --------------------------------------------------------------------


@router.get("/subscription_lists", tags=["subscription_lists"])
def list_subscription_lists(scope: ReadScope) -> Data[list[schemas.ListResource]]:
    """Every list of the account, the default list (All contacts) first."""
    return Data(data=[_list(lst, count) for lst, count in lists.list_lists(scope)])


@router.post("/subscription_lists", tags=["subscription_lists"])
def create_subscription_list(
    body: schemas.ListWrite, scope: WriteScope
) -> Data[schemas.ListResource]:
    """Create a list; names are unique in the account and may not be 'default'."""
    return Data(data=_list(lists.create_list(scope, body.list_name), 0))


@router.put("/subscription_lists/{id}", tags=["subscription_lists"])
@router.patch("/subscription_lists/{id}", tags=["subscription_lists"])
def rename_subscription_list(
    id: str, body: schemas.ListWrite, scope: WriteScope
) -> Data[schemas.ListResource]:
    """Rename a list."""
    lst = lists.rename_list(scope, id, body.list_name)
    return Data(data=_list(lst, lists.list_count(scope, lst)))


@router.delete("/subscription_lists/{id}", tags=["subscription_lists"])
def delete_subscription_list(id: str, scope: WriteScope) -> Empty:
    """Delete a list and its memberships (not its subscribers). The default list stays."""
    lists.delete_list(scope, id)
    return Empty()


# --- subscriptions -------------------------------------------------------------------------


@router.get("/subscriptions", tags=["subscriptions"])
def list_subscriptions(scope: ReadScope) -> Data[list[schemas.SubscriptionRecord]]:
    """Every subscription (subscriber-list membership) of the account, not paginated."""
    return Data(data=subscriptions.list_subscriptions(scope))


@router.post("/subscriptions", tags=["subscriptions"], openapi_extra=ERRORS_LIST_QUIRK)
def create_subscription(
    body: schemas.SubscriptionCreate, scope: WriteScope
) -> Data[schemas.SubscriptionRecord] | ErrorsList:
    """Subscribe a subscriber to a list. Refusals answer 200 with `errors`, as Paubox does."""
    try:
        record = subscriptions.create_subscription(
            scope, body.subscription.subscription_list_id, body.subscription.subscriber_id
        )
    except DripstoneError as exc:
        return ErrorsList(errors=[exc.message])
    return Data(data=record)


@router.get("/subscriptions/{uuid}", tags=["subscriptions"])
def get_subscription(uuid: str, scope: ReadScope) -> Data[schemas.SubscriptionRecord]:
    """One subscription."""
    return Data(data=subscriptions.get_subscription(scope, uuid))


@router.delete("/subscriptions/{uuid}", tags=["subscriptions"])
def delete_subscription(uuid: str, scope: WriteScope) -> Data[schemas.SubscriptionRecord]:
    """Unsubscribe: stamps unsubscribed_at and keeps the record."""
    return Data(data=subscriptions.cancel_subscription(scope, uuid))


def _change(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    subscriber_ids: list[str],
    list_ids: list[str] | None,
) -> Data[list[schemas.DetailedSubscriberResource]] | ErrorsString:
    try:
        changed = subscriptions.change_subscriptions(scope, action, subscriber_ids, list_ids)
    except DripstoneError as exc:
        scope.session.rollback()
        return ErrorsString(errors=exc.message)
    return Data(data=service.describe(scope, changed))


@router.post("/subscriptions/subscribe", tags=["subscriptions"], openapi_extra=ERRORS_STRING_QUIRK)
def subscribe(
    body: schemas.SubscribeRequest, scope: WriteScope
) -> Data[list[schemas.DetailedSubscriberResource]] | ErrorsString:
    """Opt in: to the given lists, and always out of a global opt-out."""
    return _change(scope, "subscribe", body.subscriber_ids, body.subscription_list_ids)


@router.post(
    "/subscriptions/unsubscribe", tags=["subscriptions"], openapi_extra=ERRORS_STRING_QUIRK
)
def unsubscribe(
    body: schemas.SubscribeRequest, scope: WriteScope
) -> Data[list[schemas.DetailedSubscriberResource]] | ErrorsString:
    """Opt out: of the given lists only, or without lists globally (no marketing mail)."""
    return _change(scope, "unsubscribe", body.subscriber_ids, body.subscription_list_ids)


def _bulk(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    body: schemas.BulkSelection,
    *,
    dynamic: bool,
) -> Data[list[schemas.DetailedSubscriberResource]] | ErrorsString | JidEnvelope:
    if body.subscriber_ids is not None:
        return _change(scope, action, body.subscriber_ids, None)
    assert body.from_subscription_list_id is not None  # the schema requires one of the two
    request = subscriptions.BulkSelectionRequest(
        list_id=body.from_subscription_list_id,
        search=body.search,
        filters=[[c.model_dump() for c in group] for group in body.filters],
        except_ids=body.except_ids,
    )
    try:
        job = subscriptions.start_bulk_change(scope, action, request, dynamic=dynamic)
    except DripstoneError as exc:
        scope.session.rollback()
        return ErrorsString(errors=exc.message)
    return JidEnvelope(data=JidEnvelopeData(jid=job.id))


BulkAnswer = Data[list[schemas.DetailedSubscriberResource]] | ErrorsString | JidEnvelope


@router.post(
    "/subscriptions/bulk_global_subscribe",
    tags=["subscriptions"],
    openapi_extra=ERRORS_STRING_QUIRK,
)
def bulk_global_subscribe(body: schemas.BulkSelection, scope: WriteScope) -> BulkAnswer:
    """Lift the global opt-out of the given subscribers, or of everyone selected (a job)."""
    return _bulk(scope, "subscribe", body, dynamic=False)


@router.post(
    "/subscriptions/bulk_global_unsubscribe",
    tags=["subscriptions"],
    openapi_extra=ERRORS_STRING_QUIRK,
)
def bulk_global_unsubscribe(body: schemas.BulkSelection, scope: WriteScope) -> BulkAnswer:
    """Opt out globally the given subscribers, or everyone selected (a job)."""
    return _bulk(scope, "unsubscribe", body, dynamic=False)


@router.post(
    "/subscriptions/dynamic_bulk_subscribe",
    tags=["subscriptions"],
    openapi_extra=ERRORS_STRING_QUIRK,
)
def dynamic_bulk_subscribe(body: schemas.BulkSelection, scope: WriteScope) -> BulkAnswer:
    """As bulk_global_subscribe, selecting the members of a dynamic list."""
    return _bulk(scope, "subscribe", body, dynamic=True)


@router.post(
    "/subscriptions/dynamic_bulk_unsubscribe",
    tags=["subscriptions"],
    openapi_extra=ERRORS_STRING_QUIRK,
)
def dynamic_bulk_unsubscribe(body: schemas.BulkSelection, scope: WriteScope) -> BulkAnswer:
    """As bulk_global_unsubscribe, selecting the members of a dynamic list."""
    return _bulk(scope, "unsubscribe", body, dynamic=True)


# --- dynamic lists (Dripstone extension) ------------------------------------------------------


def _dynamic(scope: AccountScope, segment: DynamicList) -> schemas.DynamicListResource:
    return schemas.DynamicListResource(
        id=segment.uuid,
        attributes=schemas.DynamicListAttributes(
            name=segment.name,
            subscription_list_id=lists.list_uuid(scope, segment.subscription_list_id),
            search=segment.search,
            filters=segment.filters,
            subscriber_count=segments.dynamic_list_count(scope, segment),
            created_at=segment.created_at,
            updated_at=segment.updated_at,
        ),
    )


@router.get("/dynamic_lists", tags=["dynamic_lists"])
def list_dynamic_lists(scope: ReadScope) -> Data[list[schemas.DynamicListResource]]:
    """Saved segments with their live subscriber counts."""
    return Data(data=[_dynamic(scope, d) for d in segments.list_dynamic_lists(scope)])


@router.post("/dynamic_lists", tags=["dynamic_lists"])
def create_dynamic_list(
    body: schemas.DynamicListWrite, scope: WriteScope
) -> Data[schemas.DynamicListResource]:
    """Save a segment: a list (default: All contacts) narrowed by search and filters."""
    return Data(data=_dynamic(scope, segments.save_dynamic_list(scope, body.dynamic_list)))


@router.get("/dynamic_lists/{id}", tags=["dynamic_lists"])
def get_dynamic_list(id: str, scope: ReadScope) -> Data[schemas.DynamicListResource]:
    """One segment."""
    return Data(data=_dynamic(scope, segments.get_dynamic_list(scope, id)))


@router.put("/dynamic_lists/{id}", tags=["dynamic_lists"])
def update_dynamic_list(
    id: str, body: schemas.DynamicListWrite, scope: WriteScope
) -> Data[schemas.DynamicListResource]:
    """Replace a segment's definition."""
    return Data(data=_dynamic(scope, segments.save_dynamic_list(scope, body.dynamic_list, id)))


@router.delete("/dynamic_lists/{id}", tags=["dynamic_lists"])
def delete_dynamic_list(id: str, scope: WriteScope) -> Empty:
    """Delete a segment (its subscribers stay)."""
    segments.delete_dynamic_list(scope, id)
    return Empty()


# --- import (Dripstone extension) ------------------------------------------------------


def _mapping(raw: str | None) -> dict[str, str] | None:
    if raw is None or not raw.strip():
        return None
    try:
        decoded = _import_mapping.validate_json(raw)
    except ValidationError:
        raise Invalid(
            'mapping: expected a JSON object of CSV header to field, e.g. {"E-mail": "email"}',
            field="mapping",
        ) from None
    return decoded


_import_mapping = TypeAdapter(dict[str, str])


class UploadForm(BaseModel):
    """An upload of a CSV file to import later (multipart/form-data)."""

    model_config = ConfigDict(extra="forbid")

    file: UploadFile = PydanticField(description="the CSV file; its first line names the columns")


class UploadAttributes(BaseModel):
    url: str = PydanticField(description="where the upload is; name it as `upload` to import it")
    header: list[str]
    rows: int
    sample: list[list[str]] = PydanticField(description=f"the first {staging.SAMPLE_ROWS} rows")
    suggested_mapping: dict[str, str] = PydanticField(
        description="for each column, the field it most likely feeds, as `mapping` takes it"
    )


class UploadData(BaseModel):
    id: str
    type: Literal["subscribers_upload"] = "subscribers_upload"
    attributes: UploadAttributes


class UploadEnvelope(BaseModel):
    data: UploadData


def _upload_envelope(scope: AccountScope, staged: staging.StagedUpload, url: str) -> UploadEnvelope:
    fields = [f.name for f in custom_fields.list_field_types(scope)]
    suggested = staging.suggested_mapping(staged.header, fields)
    return UploadEnvelope(
        data=UploadData(
            id=staged.token,
            attributes=UploadAttributes(
                url=url,
                header=staged.header,
                rows=staged.rows,
                sample=staged.sample,
                suggested_mapping=dict(zip(staged.header, suggested, strict=True)),
            ),
        )
    )


@router.post("/subscribers_uploads", tags=["subscribers"], status_code=201)
def upload_subscribers(
    form: Annotated[UploadForm, Form()], scope: WriteScope, request: Request
) -> UploadEnvelope:
    """Keep a CSV file, checked whole, to import it later (within a day) by its URL: see its
    columns and first rows first, then map them."""
    staged = staging.stage_upload(scope, form.file.file)
    return _upload_envelope(scope, staged, f"{request.url.path.rstrip('/')}/{staged.token}")


@router.get("/subscribers_uploads/{upload_id}", tags=["subscribers"])
def get_upload(upload_id: str, scope: ReadScope, request: Request) -> UploadEnvelope:
    """An upload waiting for its import: its columns, rows and suggested mapping."""
    return _upload_envelope(scope, staging.staged_upload(scope, upload_id), request.url.path)


class ImportForm(BaseModel):
    """The fields of an import (multipart/form-data): the file itself, or an upload's URL."""

    model_config = ConfigDict(extra="forbid")

    file: UploadFile | None = PydanticField(
        None, description="the CSV file; its first line names the columns"
    )
    upload: str | None = PydanticField(
        None,
        max_length=2000,
        description="instead of file: the url (or id) of a file sent to /subscribers_uploads",
    )
    subscription_list_id: str | None = PydanticField(
        None, pattern=UUID_PATTERN, description="a list to add every imported row to"
    )
    existing: Literal["skip", "update"] = PydanticField(
        "skip",
        description="addresses already subscribed: leave them as they are, or update them",
    )
    mapping: str | None = PydanticField(
        None,
        max_length=100_000,
        description="JSON object from CSV header to email, first_name, last_name, "
        'phone_number or custom.<name> ("" ignores a column); by default columns named '
        "like a field feed it and the others feed custom fields of their name",
    )


def _upload_id(reference: str) -> str:
    """The id in an upload's URL (absolute, or its path), or the id itself."""
    return reference.strip().rstrip("/").rsplit("/subscribers_uploads/", 1)[-1]


@router.post("/subscribers_import", tags=["subscribers"])
def import_subscribers(form: Annotated[ImportForm, Form()], scope: WriteScope) -> JidEnvelope:
    """Import subscribers from a CSV file in a background job; follow it at /jobs/{jid}. Send
    the file, or name a file sent to /subscribers_uploads by its URL."""
    options = importing.ImportOptions(
        list_id=form.subscription_list_id, existing=form.existing, mapping=_mapping(form.mapping)
    )
    if form.upload is not None and form.file is None:
        job = staging.start_staged_import(scope, _upload_id(form.upload), options)
    elif form.file is not None and form.upload is None:
        upload = importing.keep_upload(form.file.file)
        try:
            job = importing.start_import(scope, upload, options, owned=True)
        except DripstoneError:
            upload.unlink(missing_ok=True)
            raise
    else:
        raise Invalid(
            "file: send the CSV file as file, or name an upload with upload (not both)",
            field="file",
        )
    return JidEnvelope(data=JidEnvelopeData(jid=job.id))


@router.get(
    "/subscribers_import/{jid}/rejected",
    tags=["subscribers"],
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "line, reason, the row's cells"}},
)
def rejected_rows(jid: str, scope: ReadScope) -> FileResponse:
    """The rows an import rejected, each with its line number and the reason."""
    job = get_job(scope, jid) if is_uuid(jid) else None
    path = importing.rejected_rows_path(job) if job is not None else None
    if path is None:
        raise NotFound(f"import job {jid} not found", field="jid")
    return FileResponse(path, media_type="text/csv", filename=f"rejected-{jid}.csv")
