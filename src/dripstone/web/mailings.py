"""The mailings pages: the list, the editor with its live preview, test emails, sending now or
later with a confirmation of how many will receive it, and cancelling a schedule.

Every rule is the mailings service's, the one the API calls: saving, the template checks, who
a send reaches, what a test email may be sent to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import lxml.html
from fastapi import APIRouter, Form, Request
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dripstone.accounts.models import Account
from dripstone.audit.middleware import ACTOR
from dripstone.db import AccountScope
from dripstone.delivery.footer import without_unsubscribe_footer
from dripstone.errors import DripstoneError, Invalid
from dripstone.http import ReadSession, WriteSession
from dripstone.mailings import preview, schemas, service
from dripstone.mailings.models import CampaignMailing, SendState
from dripstone.subscribers.models import DynamicList, SubscriptionList
from dripstone.users.service import Action
from dripstone.web.auth import Editor, SignedIn, Viewer
from dripstone.web.forms import FORM, errors_of
from dripstone.web.templating import render, templates
from dripstone.wire import Email

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
SENDS_SHOWN = 10
# The preview is the mailing's own HTML: it may run no script, load nothing but images, and
# be framed by the dashboard alone. It replaces the dashboard's policy (see DashboardHeaders).
PREVIEW_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "frame-ancestors 'self'"
)
EMAIL = TypeAdapter(Email)
MAILING_FIELDS = ("subject", "from_name", "from", "html_part", "text_part")
NOTICES = {
    "saved": "Saved.",
    "created": "Mailing created.",
    "test": "Test email queued; it arrives within a few seconds.",
    "cancelled": "The scheduled send was cancelled; nothing was sent.",
}

Text = Annotated[str, Form()]
TO = "to"  # the send form's list or segment: "list:UUID" or "segment:UUID"


# --- the list ----------------------------------------------------------------------------------


@router.get("/mailings")
def mailings_list(
    request: Request, viewer: SignedIn, session: ReadSession, before: str | None = None
) -> Response:
    scope = viewer.scope(session)
    mailings = service.mailings_page(scope, before=before, items=PAGE_SIZE + 1)
    more = len(mailings) > PAGE_SIZE
    mailings = mailings[:PAGE_SIZE]
    last = service.last_sends(scope, [m.id for m in mailings])
    return render(
        request,
        "mailings/list.html",
        {
            "title": "Mailings",
            "rows": [(m, last.get(m.id)) for m in mailings],
            "next_page": mailings[-1].uuid if more else None,
            "first_page": before is not None,
        },
    )


# --- the editor --------------------------------------------------------------------------------


def _values_of(mailing: CampaignMailing | None) -> dict[str, str]:
    if mailing is None:
        return dict.fromkeys(MAILING_FIELDS, "")
    return {
        "subject": mailing.subject,
        "from_name": mailing.from_name or "",
        "from": mailing.from_email or "",
        # The footer is the server's, added again on every save; the preview shows it.
        "html_part": without_unsubscribe_footer(mailing.html_part or ""),
        "text_part": mailing.text_part or "",
    }


def _zone(scope: AccountScope) -> ZoneInfo:
    account = scope.session.get(Account, scope.account_id)
    try:
        return ZoneInfo(account.timezone if account else "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _editor(
    request: Request,
    viewer: Viewer,
    scope: AccountScope,
    mailing: CampaignMailing | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    warnings: list[str] | None = None,
    send_values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The editor page: the form as typed (or as saved), with its errors."""
    lists = list(
        scope.session.scalars(
            scope.select(SubscriptionList).order_by(SubscriptionList.name, SubscriptionList.id)
        )
    )
    segments = list(
        scope.session.scalars(scope.select(DynamicList).order_by(DynamicList.name, DynamicList.id))
    )
    notice = NOTICES.get(request.query_params.get("notice", ""))
    if warnings is None and mailing is not None and values is None:
        # A saved mailing renders; what it may not mean is shown each time it is opened.
        saved = _values_of(mailing)
        warnings = preview.template_warnings(
            mailing.subject, saved["html_part"] or None, mailing.text_part
        )
    return render(
        request,
        "mailings/editor.html",
        {
            "title": mailing.subject if mailing else "New mailing",
            "mailing": mailing,
            "values": values if values is not None else _values_of(mailing),
            "errors": errors or {},
            "warnings": warnings or [],
            "generated_text": service.text_part(mailing)
            if mailing and not mailing.text_part
            else None,
            "editable": viewer.may(Action.EDIT_CONTENT),
            "merge_tags": preview.merge_tags(),
            "preview_emails": preview.preview_subscribers(scope),
            "lists": lists,
            "segments": segments,
            "sends": service.sends_of(scope, mailing, SENDS_SHOWN) if mailing else [],
            "scheduled": SendState.SCHEDULED,
            "zone": _zone(scope).key,
            "send_values": send_values or {"when": "now"},
            "notice": notice,
        },
        status_code=status,
    )


@router.get("/mailings/new")
def new_mailing(request: Request, viewer: Editor, session: ReadSession) -> Response:
    return _editor(request, viewer, viewer.scope(session), None)


def _fields(values: dict[str, str]) -> schemas.MailingFields:
    """What was typed, as the API's schema takes it: a blank field is no value."""
    return schemas.MailingFields.model_validate(
        {name: (value if value.strip() else None) for name, value in values.items()}
    )


def _save(
    request: Request,
    viewer: Viewer,
    session: Session,
    current: CampaignMailing | None,
    values: dict[str, str],
) -> Response:
    scope = viewer.scope(session)
    try:
        mailing = service.save_mailing(scope, _fields(values), current)
    except ValidationError as exc:
        return _editor(
            request, viewer, scope, current, values=values, errors=errors_of(exc), status=422
        )
    except service.MailingRefused as exc:
        session.rollback()
        return _editor(
            request, viewer, scope, current, values=values, errors=exc.by_field(), status=422
        )
    notice = "created" if current is None else "saved"
    return RedirectResponse(f"/mailings/{mailing.uuid}?notice={notice}", status_code=303)


@router.post("/mailings/new")
def create_mailing(
    request: Request,
    viewer: Editor,
    session: WriteSession,
    subject: Text = "",
    from_name: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
    html_part: Text = "",
    text_part: Text = "",
) -> Response:
    values = {"subject": subject, "from_name": from_name, "from": from_, "html_part": html_part}
    return _save(request, viewer, session, None, {**values, "text_part": text_part})


@router.post("/mailings/preview")
def preview_mailing(
    request: Request,
    viewer: SignedIn,
    session: ReadSession,
    subject: Text = "",
    html_part: Text = "",
    text_part: Text = "",
    preview_subscriber: Text = "",
    preview_email: Text = "",
) -> Response:
    # A preview changes nothing: it stays out of the audit log, which records changes.
    if hasattr(request.state, ACTOR):
        delattr(request.state, ACTOR)
    scope = viewer.scope(session)
    email = preview_email.strip() or preview_subscriber.strip() or "someone@example.com"
    shown = preview.preview_mailing(
        scope,
        subject=subject,
        html=html_part if html_part.strip() else None,
        text=text_part if text_part.strip() else None,
        email=email,
    )
    return HTMLResponse(
        _preview_document(shown, email),
        headers={"Content-Security-Policy": PREVIEW_POLICY, "X-Frame-Options": "SAMEORIGIN"},
    )


def _preview_document(shown: preview.Preview, email: str) -> str:
    """The rendered message, with a bar above it naming subject and recipient, and warnings."""
    context = {"shown": shown, "email": email}
    if shown.message is None or shown.message.html is None:
        return templates.get_template("mailings/preview_page.html").render(context)
    document = lxml.html.document_fromstring(shown.message.html, ensure_head_body=True)
    body = document.find("body")
    if body is not None:
        bar = templates.get_template("mailings/preview_bar.html").render(context)
        body.insert(0, lxml.html.fragment_fromstring(bar))
    doctype = document.getroottree().docinfo.doctype or "<!DOCTYPE html>"
    return lxml.html.tostring(document, encoding="unicode", method="html", doctype=doctype)


@router.get("/mailings/{mailing_id}")
def edit_mailing(
    request: Request, viewer: SignedIn, session: ReadSession, mailing_id: str
) -> Response:
    scope = viewer.scope(session)
    return _editor(request, viewer, scope, service.get_mailing(scope, mailing_id))


@router.post("/mailings/{mailing_id}")
def update_mailing(
    request: Request,
    viewer: Editor,
    session: WriteSession,
    mailing_id: str,
    subject: Text = "",
    from_name: Text = "",
    from_: Annotated[str, Form(alias="from")] = "",
    html_part: Text = "",
    text_part: Text = "",
) -> Response:
    current = service.get_mailing(viewer.scope(session), mailing_id)
    values = {"subject": subject, "from_name": from_name, "from": from_, "html_part": html_part}
    return _save(request, viewer, session, current, {**values, "text_part": text_part})


# --- test emails -------------------------------------------------------------------------------


@router.post("/mailings/{mailing_id}/test")
def send_test_email(
    request: Request, viewer: Editor, session: WriteSession, mailing_id: str, to_email: Text = ""
) -> Response:
    scope = viewer.scope(session)
    mailing = service.get_mailing(scope, mailing_id)
    try:
        address = EMAIL.validate_python(to_email.strip())
        service.send_test_email(scope, mailing.uuid, address)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        return _test_refused(request, viewer, scope, mailing, to_email, message)
    except DripstoneError as exc:
        return _test_refused(request, viewer, scope, mailing, to_email, exc.message)
    return RedirectResponse(f"/mailings/{mailing.uuid}?notice=test#test", status_code=303)


def _test_refused(
    request: Request,
    viewer: Viewer,
    scope: AccountScope,
    mailing: CampaignMailing,
    to_email: str,
    message: str,
) -> Response:
    message = message.removeprefix("to_email: ")
    send_values = {"when": "now", "to_email": to_email}
    return _editor(
        request,
        viewer,
        scope,
        mailing,
        errors={"to_email": message},
        send_values=send_values,
        status=422,
    )


# --- sending -----------------------------------------------------------------------------------


def _send_at(when: str, send_at: str, zone: ZoneInfo) -> datetime | None:
    """The time a send was asked for, in UTC; None for now. 422 for a time that is not one."""
    if when != "later":
        return None
    try:
        local = datetime.fromisoformat(send_at)
    except ValueError:
        raise Invalid("send_at: choose a date and a time", field="send_at") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    return local.astimezone(UTC)


@router.post("/mailings/{mailing_id}/send")
def send_mailing(
    request: Request,
    viewer: Editor,
    session: WriteSession,
    mailing_id: str,
    to: Text = "",
    when: Text = "now",
    send_at: Text = "",
    confirm: Text = "",
) -> Response:
    """Without `confirm`: the confirmation page, stating how many will receive it. With it:
    the send starts (or is scheduled) and the send's page follows."""
    scope = viewer.scope(session)
    mailing = service.get_mailing(scope, mailing_id)
    typed = {"to": to, "when": when, "send_at": send_at}
    zone = _zone(scope)
    kind, _, public_id = to.partition(":")
    try:
        if kind not in ("list", "segment") or not public_id:
            raise Invalid("choose the list or segment to send to", field=TO)
        at = _send_at(when, send_at, zone)
        request_ = service.SendRequest(
            sender_email=viewer.email,
            subscription_list_id=public_id if kind == "list" else None,
            dynamic_list_id=public_id if kind == "segment" else None,
            recipient_emails=(),
            customer_name=None,
            from_email=None,
            from_name=None,
            subject=None,
            send_at=at,
        )
        if confirm != "yes":
            audience = service.check_send(scope, mailing, request_)
            target = scope.by_uuid(SubscriptionList if kind == "list" else DynamicList, public_id)
            return render(
                request,
                "mailings/confirm_send.html",
                {
                    "title": "Confirm the send",
                    "mailing": mailing,
                    "audience": audience,
                    "target": target,
                    "kind": kind,
                    "send_at": at,
                    "local_send_at": at.astimezone(zone) if at else None,
                    "zone": zone.key,
                    "typed": typed,
                },
            )
        send = service.start_send(scope, mailing, request_)
    except DripstoneError as exc:
        session.rollback()
        errors = errors_of(exc)
        if "campaign_mailing_id" in errors:  # the mailing's templates: the send form's problem
            errors = {FORM: errors["campaign_mailing_id"]}
        errors = {
            TO if name in ("subscription_list_id", "dynamic_list_id") else name: (
                message.split(": ", 1)[-1] if name != FORM else message
            )
            for name, message in errors.items()
        }
        return _editor(
            request, viewer, scope, mailing, errors=errors, send_values=typed, status=422
        )
    return RedirectResponse(f"/sends/{send.uuid}", status_code=303)


@router.post("/mailings/{mailing_id}/cancel")
def cancel_send(
    request: Request,
    viewer: Editor,
    session: WriteSession,
    mailing_id: str,
    jid: Text = "",
    confirm: Text = "",
) -> Response:
    """Without `confirm`: a page asking whether to cancel. With it: the schedule is cancelled."""
    scope = viewer.scope(session)
    mailing = service.get_mailing(scope, mailing_id)
    if confirm != "yes":
        send = next(
            (s for s in service.sends_of(scope, mailing, SENDS_SHOWN) if s.job_id == jid), None
        )
        return render(
            request,
            "mailings/confirm_cancel.html",
            {"title": "Cancel the scheduled send", "mailing": mailing, "send": send, "jid": jid},
        )
    service.cancel_schedule(scope, jid)
    return RedirectResponse(f"/mailings/{mailing.uuid}?notice=cancelled", status_code=303)
