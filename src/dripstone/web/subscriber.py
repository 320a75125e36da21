"""One subscriber's page: their fields and custom fields, lists and timeline; edit them (as
the API's update validates), and unsubscribe them from one list or from all mail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from dripstone.analytics.timeline import TimelineKind, timeline
from dripstone.db import AccountScope
from dripstone.errors import DripstoneError
from dripstone.http import ReadSession, WriteSession
from dripstone.subscribers import custom_fields, schemas, service
from dripstone.subscribers.subscriptions import change_subscriptions
from dripstone.web.auth import Editor, SignedIn
from dripstone.web.forms import errors_of, typed
from dripstone.web.subscribers import notice_of
from dripstone.web.templating import render

# Included after the subscribers pages' router: /subscribers/bulk is not a subscriber.
router = APIRouter(include_in_schema=False)

TIMELINE_LABELS = {
    TimelineKind.CREATED: "Added",
    TimelineKind.JOINED: "Joined",
    TimelineKind.UNSUBSCRIBED: "Unsubscribed",
    TimelineKind.DELIVERED: "Delivered",
    TimelineKind.BOUNCED: "Bounced",
    TimelineKind.OPENED: "Opened",
    TimelineKind.CLICKED: "Clicked",
    TimelineKind.DRIP_ENTERED: "Entered drip",
    TimelineKind.DRIP_STEP: "Drip step",
    TimelineKind.DRIP_LEFT: "Left drip",
}
assert TIMELINE_LABELS.keys() == set(TimelineKind)
_custom_fields = TypeAdapter(schemas.CustomFields)


def _subscriber_context(scope: AccountScope, subscriber_id: str) -> tuple[dict[str, Any], Any]:
    subscriber = service.get_subscriber(scope, subscriber_id)
    described = service.describe(scope, [subscriber], with_stats=True)[0]
    return {
        "subscriber": subscriber,
        "described": described.attributes,
        "timeline": timeline(scope, subscriber),
        "labels": TIMELINE_LABELS,
    }, subscriber


def _values_of(attributes: schemas.DetailedSubscriberAttributes) -> dict[str, str]:
    return {
        "email": attributes.email,
        "first_name": attributes.first_name,
        "last_name": attributes.last_name,
        "phone_number": attributes.phone_number or "",
    }


@router.get("/subscribers/{subscriber_id}")
def subscriber_page_view(
    subscriber_id: str, request: Request, viewer: SignedIn, session: ReadSession
) -> Response:
    context, _ = _subscriber_context(viewer.scope(session), subscriber_id)
    attributes = context["described"]
    custom = [(c.custom_field_name, c.custom_field_value) for c in attributes.custom_fields]
    return render(
        request,
        "subscribers/detail.html",
        {
            "title": attributes.email or attributes.phone_number or "Subscriber",
            "values": _values_of(attributes),
            "custom": custom,
            "errors": {},
            "notice": notice_of(request),
            **context,
        },
    )


def _typed_fields(form: FormData) -> dict[str, str | None]:
    return {
        name: (str(form.get(name) or "").strip() or None)
        for name in ("email", "first_name", "last_name", "phone_number")
    }


def _typed_custom(form: FormData) -> list[tuple[str, str]]:
    names = [str(v) for v in form.getlist("custom_name")]
    values = [str(v) for v in form.getlist("custom_value")]
    pairs = [(n, values[i] if i < len(values) else "") for i, n in enumerate(names)]
    new_name = str(form.get("new_custom_name") or "").strip()
    if new_name:
        pairs.append((new_name, str(form.get("new_custom_value") or "")))
    return pairs


@router.post("/subscribers/{subscriber_id}")
async def edit_subscriber(
    subscriber_id: str, request: Request, viewer: Editor, session: WriteSession
) -> Response:
    """Save the fields and custom fields, all or nothing, as the API's update validates them."""
    scope = viewer.scope(session)
    form = await request.form()
    fields = _typed_fields(form)
    custom = _typed_custom(form)
    errors: dict[str, str] = {}
    checked: schemas.SubscriberUpdateFields | None = None
    try:
        checked = schemas.SubscriberUpdateFields(**fields)
    except ValidationError as exc:
        errors.update(errors_of(exc))
    try:
        _custom_fields.validate_python([{name: value} for name, value in custom])
    except ValidationError as exc:
        for error in exc.errors():
            where = error["loc"][0] if error["loc"] else 0
            errors.setdefault(f"custom-{where}", str(error["msg"]).removeprefix("Value error, "))
    if checked is not None and not errors:
        try:
            service.update_subscriber(scope, subscriber_id, checked)
            subscriber = service.get_subscriber(scope, subscriber_id)
            for name, value in custom:
                custom_fields.set_custom_field(scope, subscriber.id, name.strip(), value)
        except DripstoneError as exc:
            session.rollback()
            if exc.status != 422:
                raise
            errors = {k.removeprefix("subscriber."): v for k, v in errors_of(exc).items()}
    if not errors:
        return RedirectResponse(f"/subscribers/{subscriber_id}?notice=saved", status_code=303)
    context, _ = _subscriber_context(scope, subscriber_id)
    values = {name: value or "" for name, value in fields.items()}
    values.update({k: v for k, v in typed(form).items() if k in values})
    return render(
        request,
        "subscribers/detail.html",
        {
            "title": context["described"].email or "Subscriber",
            "values": values,
            "custom": custom,
            "errors": errors,
            "notice": "",
            **context,
        },
        status_code=422,
    )


@router.post("/subscribers/{subscriber_id}/unsubscribe")
async def unsubscribe_subscriber(
    subscriber_id: str, request: Request, viewer: Editor, session: WriteSession
) -> Response:
    """Unsubscribe from one list (`list`), or without one from all mail."""
    scope = viewer.scope(session)
    form = await request.form()
    list_id = str(form.get("list") or "")
    subscriber = service.get_subscriber(scope, subscriber_id)
    change_subscriptions(scope, "unsubscribe", [subscriber.uuid], [list_id] if list_id else None)
    notice = "unsubscribed_list" if list_id else "unsubscribed_all"
    return RedirectResponse(f"/subscribers/{subscriber.uuid}?notice={notice}", 303)
