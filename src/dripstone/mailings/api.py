"""Routes of the mailings domain: campaign mailings, test emails, sends and schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

from dripstone.db import AccountScope
from dripstone.errors import DripstoneError
from dripstone.http import (
    ERRORS_LIST_QUIRK,
    ERRORS_STRING_QUIRK,
    STANDARD_ERRORS,
    Data,
    Empty,
    ErrorEnvelope,
    ErrorsList,
    ErrorsString,
    ReadScope,
    WriteScope,
)
from dripstone.mailings import schemas, service
from dripstone.mailings.models import CampaignMailing, CampaignMailingSend
from dripstone.subscribers.models import DynamicList, SubscriptionList
from dripstone.wire import Email, as_text

router = APIRouter(responses=STANDARD_ERRORS)

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
BAD_TIME = "Invalid time format provided, please use RFC3339 format."


def _mailing(m: CampaignMailing, *, with_images: bool) -> schemas.MailingResource:
    return schemas.MailingResource(
        id=m.uuid,
        attributes=schemas.MailingAttributes(
            subject=m.subject,
            default_subject=m.default_subject,
            template_type=m.template_type,
            created_at=m.created_at,
            updated_at=m.updated_at,
            form_data=m.form_data,
            html_part=m.html_part,
            text_part=service.text_part(m),
            from_=m.from_email,
            from_name=m.from_name,
            reply_to=m.reply_to,
            image_data=as_text(m.image_data) if with_images else None,
        ),
    )


def _send(scope: AccountScope, send: CampaignMailingSend) -> schemas.SendResource:
    session = scope.session
    mailing = scope.by_id(CampaignMailing, send.campaign_mailing_id)
    lst = scope.by_id(SubscriptionList, send.subscription_list_id or 0)
    segment = scope.by_id(DynamicList, send.dynamic_list_id or 0)
    counts = service.send_counts(session, scope.account_id, [send.id]).get(
        send.id
    ) or schemas.SendCounts(**dict.fromkeys(schemas.SendCounts.model_fields, 0))
    return schemas.SendResource(
        id=send.uuid,
        attributes=schemas.SendAttributes(
            campaign_mailing_id=mailing.uuid if mailing else "",
            subscription_list_id=lst.uuid if lst else None,
            dynamic_list_id=segment.uuid if segment else None,
            list_name=send.list_name,
            subject=send.subject,
            from_email=send.from_email,
            from_name=send.from_name,
            sender_email=send.sender_email,
            state=send.state,
            jid=send.job_id,
            send_at=send.send_at,
            created_at=send.created_at,
            started_at=send.started_at,
            finished_at=send.finished_at,
            counts=counts,
        ),
    )


@router.get("/campaign_mailings", tags=["campaign mailings"])
def list_mailings(
    scope: ReadScope,
    search: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="regex on subject")
    ] = None,
    template_type: Annotated[str | None, Query(max_length=32, pattern=r"^[^\x00]*$")] = None,
    order_by: Literal["subject", "created_at", "updated_at", "template_type"] | None = None,
    order: Literal["asc", "desc"] = "asc",
    items: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    pagination: bool = True,
) -> Data[list[schemas.MailingListResource]]:
    """The account's mailings with their delivery counts."""
    found = service.list_mailings(
        scope,
        search=search or None,
        template_type=template_type,
        order_by=order_by,
        order=order,
        items=items,
        page=page,
        paginate=pagination,
    )
    return Data(
        data=[schemas.MailingListResource(id=m.uuid, attributes=attrs) for m, attrs in found]
    )


@router.post("/campaign_mailings", tags=["campaign mailings"], openapi_extra=ERRORS_LIST_QUIRK)
def create_mailing(
    body: schemas.MailingWrite, scope: WriteScope
) -> Data[schemas.IdOnly] | ErrorsList:
    """Create a mailing. Refusals answer 200 with `errors`, as Paubox does; the unsubscribe
    footer is added to `html_part`."""
    try:
        mailing = service.save_mailing(scope, body.campaign_mailing, None)
    except service.MailingRefused as exc:
        return ErrorsList(errors=exc.errors)
    return Data(data=schemas.IdOnly(id=mailing.uuid))


@router.get("/campaign_mailings/{id}", tags=["campaign mailings"])
def get_mailing(
    id: str,
    scope: ReadScope,
    with_images: Annotated[
        str | None, Query(description="Any non-empty value adds `image_data`.")
    ] = None,
) -> Data[schemas.MailingResource]:
    """One mailing, with `html_part` as sent (footer included)."""
    mailing = service.get_mailing(scope, id)
    return Data(data=_mailing(mailing, with_images=bool(with_images)))


@router.put("/campaign_mailings/{id}", tags=["campaign mailings"], openapi_extra=ERRORS_LIST_QUIRK)
@router.patch(
    "/campaign_mailings/{id}", tags=["campaign mailings"], openapi_extra=ERRORS_LIST_QUIRK
)
def update_mailing(
    id: str, body: schemas.MailingWrite, scope: WriteScope
) -> Data[schemas.IdOnly] | ErrorsList:
    """Change the fields sent. Refusals answer 200 with `errors`."""
    current = service.get_mailing(scope, id)
    try:
        mailing = service.save_mailing(scope, body.campaign_mailing, current)
    except service.MailingRefused as exc:
        return ErrorsList(errors=exc.errors)
    return Data(data=schemas.IdOnly(id=mailing.uuid))


@router.delete(
    "/campaign_mailings_bulk_delete",
    tags=["campaign mailings"],
    openapi_extra=ERRORS_STRING_QUIRK,
)
def bulk_delete_mailings(
    scope: WriteScope, body: Annotated[schemas.BulkDelete | None, Body()] = None
) -> Empty | ErrorsString:
    """Delete mailings with their sends and deliveries. Without ids: nothing, 200 {}. An id
    that is unknown or a mailing a drip campaign sends: nothing is deleted, 200 `errors`."""
    if body is not None:
        try:
            service.bulk_delete_mailings(scope, body.campaign_mailing_ids)
        except DripstoneError as exc:
            scope.session.rollback()
            return ErrorsString(errors=exc.message)
    return Empty()


@router.get(
    "/campaign_mailings/{id}/send_test_email",
    tags=["campaign mailings"],
    status_code=204,
    response_class=Response,
)
def send_test_email(id: str, scope: WriteScope, to_email: Annotated[Email, Query()]) -> Response:
    """Send one copy to `to_email`, subject prefixed `[Test]`, untracked, not counted."""
    service.send_test_email(scope, id, to_email)
    return Response(status_code=204)


@router.post("/campaign_mailing_sends", tags=["campaign mailing sends"])
def create_send(body: schemas.SendCreate, scope: WriteScope) -> Data[schemas.SendStarted]:
    """Send a mailing to a list now; `jid` follows it at GET /jobs/{jid}."""
    mailing = service.referenced_mailing(scope, body.campaign_mailing_id, "campaign_mailing_id")
    fields = body.campaign_mailing_send
    send = service.start_send(
        scope,
        mailing,
        service.SendRequest(
            sender_email=fields.sender_email,
            subscription_list_id=fields.subscription_list_id,
            dynamic_list_id=fields.dynamic_list_id,
            recipient_emails=fields.recipient_emails,
            customer_name=fields.customer_name,
            from_email=fields.from_email,
            from_name=fields.from_name,
            subject=fields.subject,
        ),
    )
    return Data(data=schemas.SendStarted(campaign_mailing_send_id=send.uuid, jid=send.job_id))


@router.post(
    "/campaign_mailing_schedules",
    tags=["campaign mailing sends"],
    response_model=Data[schemas.ScheduleStarted],
    responses={400: {"model": ErrorsString | ErrorEnvelope}},
)
def create_schedule(
    body: schemas.ScheduleCreate, scope: WriteScope
) -> Data[schemas.ScheduleStarted] | JSONResponse:
    """Send a mailing to a list at `send_at` (RFC 3339). Cancel with DELETE on its jid."""
    try:
        if not RFC3339.fullmatch(body.send_at):
            raise ValueError(body.send_at)
        send_at = datetime.fromisoformat(body.send_at.replace("z", "Z")).astimezone(UTC)
    except ValueError:  # the shape, or a date that does not exist (13th month, 25:00)
        return JSONResponse({"errors": BAD_TIME}, status_code=400)
    if body.campaign_mailing_id is not None:
        mailing = service.referenced_mailing(scope, body.campaign_mailing_id, "campaign_mailing_id")
        subject = body.subject
    else:
        mailing = service.mailing_by_subject(scope, body.subject)
        subject = None
    send = service.start_send(
        scope,
        mailing,
        service.SendRequest(
            sender_email=body.sender_email,
            subscription_list_id=body.subscription_list_id,
            dynamic_list_id=body.dynamic_list_id,
            recipient_emails=body.recipient_emails,
            customer_name=body.customer_name,
            from_email=body.from_email,
            from_name=body.from_name,
            subject=subject,
            send_at=send_at,
        ),
    )
    return Data(
        data=schemas.ScheduleStarted(
            send_at=send_at,
            send_at_timestamp=str(int(send_at.timestamp())),
            jid=send.job_id,
            campaign_mailing_send_id=send.uuid,
        )
    )


@router.delete("/campaign_mailing_schedules/{jid}", tags=["campaign mailing sends"])
def cancel_schedule(jid: str, scope: WriteScope) -> Data[schemas.SendResource]:
    """Cancel a scheduled send that has not begun."""
    return Data(data=_send(scope, service.cancel_schedule(scope, jid)))


@router.get("/campaign_mailing_sends", tags=["campaign mailing sends"])
def list_sends(
    scope: ReadScope,
    items: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Data[list[schemas.SendResource]]:
    """Sends, newest first, with how their deliveries stand."""
    return Data(data=[_send(scope, s) for s in service.list_sends(scope, items=items, page=page)])


@router.get("/campaign_mailing_sends/{id}", tags=["campaign mailing sends"])
def get_send(id: str, scope: ReadScope) -> Data[schemas.SendResource]:
    """One send with how its deliveries stand."""
    return Data(data=_send(scope, service.get_send(scope, id)))
