"""Settings pages, for owners only: the account's users (created, given a role, reset,
disabled, signed out everywhere), its API keys (created, shown once, revoked), the sender
settings in effect with what they lack for good delivery, and the audit log.

A new password or key is shown once, in the answer to the form that made it, and never
stored in clear: the answer is marked `no-store` so that no cache keeps it either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from dripstone.accounts import service as accounts
from dripstone.accounts.models import Account
from dripstone.audit import service as audit
from dripstone.config import Settings
from dripstone.errors import DripstoneError, Invalid, NotFound
from dripstone.http import ReadSession, WriteSession
from dripstone.users import service as users
from dripstone.users import sessions
from dripstone.users.models import Role
from dripstone.web.auth import Owner, Viewer
from dripstone.web.forms import errors_of
from dripstone.web.templating import render

router = APIRouter()

AUDIT_EVENTS_PER_PAGE = 50
SENDER_STATE = "sender_settings"  # where in app.state the sender settings are kept


@dataclass(frozen=True)
class SenderSettings:
    """What the server sends mail with, as a page may show it: no password, key or secret."""

    transport: str  # smtp, smtps or outbox
    relay: str | None  # host:port of the SMTP relay
    from_email: str
    public_url: str
    dkim_domain: str | None
    dkim_selector: str | None
    list_unsubscribe_mailto: str | None

    @classmethod
    def of(cls, settings: Settings) -> SenderSettings:
        """From the server's settings; the SMTP URL's user name and password are left out."""
        url = urlsplit(settings.smtp_url.strip() or "outbox://")
        relay = None
        if url.scheme in ("smtp", "smtps") and url.hostname:
            relay = url.hostname + (f":{url.port}" if url.port else "")
        return cls(
            transport=url.scheme,
            relay=relay,
            from_email=settings.from_email,
            public_url=settings.public_url,
            dkim_domain=settings.dkim_domain or None,
            dkim_selector=settings.dkim_selector or None,
            list_unsubscribe_mailto=settings.list_unsubscribe_mailto or None,
        )

    def problems(self) -> list[str]:
        """What stands between these settings and mail that mailbox providers accept."""
        found = []
        if self.transport == "outbox":
            found.append(
                "Mail goes to the outbox folder, not to an SMTP relay: nothing reaches "
                "anyone. Set DRIPSTONE_SMTP_URL to smtp:// or smtps://."
            )
        if not (self.dkim_domain and self.dkim_selector):
            found.append(
                "No DKIM: messages are not signed, and Gmail and Yahoo refuse or junk "
                "unsigned bulk mail. Set DRIPSTONE_DKIM_DOMAIN, DRIPSTONE_DKIM_SELECTOR and "
                "DRIPSTONE_DKIM_PRIVATE_KEY_FILE."
            )
        public = urlsplit(self.public_url)
        if public.scheme != "https":
            found.append(
                "The public URL is not https: tracking and unsubscribe links are sent in "
                "clear and look suspicious. Set DRIPSTONE_PUBLIC_URL to an https:// address."
            )
        if public.hostname in ("localhost", "127.0.0.1", "::1") or (public.hostname or "").endswith(
            ".localhost"
        ):
            found.append(
                "The public URL is this machine (localhost): links in messages cannot be "
                "opened by recipients. Set DRIPSTONE_PUBLIC_URL to the server's public address."
            )
        if not self.list_unsubscribe_mailto:
            found.append(
                "No List-Unsubscribe mailto address: some mailbox providers want one beside "
                "the one-click link. Set DRIPSTONE_LIST_UNSUBSCRIBE_MAILTO."
            )
        return found


def sender_settings(request: Request) -> SenderSettings:
    found: SenderSettings = getattr(request.app.state, SENDER_STATE)
    return found


def _account(session: Session, viewer: Viewer) -> Account:
    return session.get_one(Account, viewer.account_id)


def _page(
    request: Request,
    viewer: Viewer,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    shown_once: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    account = _account(session, viewer)
    sender = sender_settings(request)
    response = render(
        request,
        "settings/index.html",
        {
            "title": "Settings",
            "account": account,
            "users": users.list_users(session, account),
            "keys": accounts.list_keys(session, account),
            "roles": list(Role),
            "sender": sender,
            "problems": sender.problems(),
            "errors": errors or {},
            "typed": typed or {},
            "shown_once": shown_once,
            "notice": notice,
        },
        status_code=status_code,
    )
    if shown_once:
        response.headers["cache-control"] = "no-store"
    return response


@router.get("/settings", include_in_schema=False)
def settings_page(
    request: Request,
    viewer: Owner,
    session: ReadSession,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return _page(request, viewer, session, notice=DONE.get(done or ""))


# What a redirect back to the page says was done (by a short key, not free text).
DONE = {
    "role": "The role was changed.",
    "disabled": "The user was disabled and signed out everywhere.",
    "signed-out": "The user was signed out everywhere.",
    "revoked": "The API key was revoked: requests with it are refused from now on.",
}


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise Invalid("choose owner, editor or viewer", field="role") from None


def _refused(
    request: Request,
    viewer: Viewer,
    session: Session,
    exc: DripstoneError,
    typed: dict[str, str] | None = None,
) -> Response:
    session.rollback()
    # A user or key of no one in this account is not found; anything else is a refusal.
    status = 404 if isinstance(exc, NotFound) else 422
    return _page(request, viewer, session, errors=errors_of(exc), typed=typed, status_code=status)


@router.post("/settings/users", include_in_schema=False)
def create_user(
    request: Request,
    viewer: Owner,
    session: WriteSession,
    username: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=400)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    typed = {"username": username, "email": email, "role": role}
    password = users.generate_password()
    try:
        user = users.create_user(
            session, _account(session, viewer), username, email, _role(role), password
        )
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc, typed)
    shown = {
        "what": f"The password of {user.email}",
        "secret": password,
        "hint": "Give it to them by a safe way; it is not shown again. They sign in with "
        "their address and this password.",
    }
    return _page(request, viewer, session, shown_once=shown)


@router.post("/settings/users/{user_id}/role", include_in_schema=False)
def change_role(
    request: Request,
    user_id: str,
    viewer: Owner,
    session: WriteSession,
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        user = users.account_user(session, viewer.account_id, user_id)
        users.set_role(session, user, _role(role))
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc)
    return RedirectResponse("/settings?done=role#users", status_code=303)


@router.post("/settings/users/{user_id}/password", include_in_schema=False)
def reset_password(
    request: Request, user_id: str, viewer: Owner, session: WriteSession
) -> Response:
    password = users.generate_password()
    try:
        user = users.account_user(session, viewer.account_id, user_id)
        users.reset_password(session, user.email, password)
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc)
    shown = {
        "what": f"The new password of {user.email}",
        "secret": password,
        "hint": "Their old password no longer works and their sessions have ended; this one "
        "is not shown again.",
    }
    return _page(request, viewer, session, shown_once=shown)


@router.post("/settings/users/{user_id}/disable", include_in_schema=False)
def disable_user(request: Request, user_id: str, viewer: Owner, session: WriteSession) -> Response:
    try:
        user = users.account_user(session, viewer.account_id, user_id)
        users.disable_user(session, user.email)
        sessions.close_all_sessions(session, user)
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc)
    return RedirectResponse("/settings?done=disabled#users", status_code=303)


@router.post("/settings/users/{user_id}/sign-out", include_in_schema=False)
def sign_out_everywhere(
    request: Request, user_id: str, viewer: Owner, session: WriteSession
) -> Response:
    try:
        user = users.account_user(session, viewer.account_id, user_id)
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc)
    sessions.close_all_sessions(session, user)
    if user.id == viewer.user_id:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse("/settings?done=signed-out#users", status_code=303)


@router.post("/settings/keys", include_in_schema=False)
def create_key(request: Request, viewer: Owner, session: WriteSession) -> Response:
    issued = accounts.create_key(session, _account(session, viewer))
    shown = {
        "what": f"The new API key {issued.prefix}",
        "secret": issued.secret,
        "hint": "Copy it now: only its prefix is kept, and it is not shown again. Send it as "
        "the header  authorization: Token token=KEY.",
    }
    return _page(request, viewer, session, shown_once=shown)


@router.post("/settings/keys/{prefix}/revoke", include_in_schema=False)
def revoke_key(request: Request, prefix: str, viewer: Owner, session: WriteSession) -> Response:
    try:
        accounts.revoke_key(session, _account(session, viewer), prefix[:16])
    except DripstoneError as exc:
        return _refused(request, viewer, session, exc)
    return RedirectResponse("/settings?done=revoked#keys", status_code=303)


@router.get("/settings/audit", include_in_schema=False)
def audit_log(
    request: Request,
    viewer: Owner,
    session: ReadSession,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    events, next_before = audit.events_before(
        viewer.scope(session), before=before, items=AUDIT_EVENTS_PER_PAGE
    )
    context: dict[str, Any] = {
        "title": "Audit log",
        "events": events,
        "next_before": next_before,
        "paged": before is not None,
    }
    return render(request, "settings/audit.html", context)
