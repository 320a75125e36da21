"""Who is signed in, what their role lets them do, and the CSRF check on every form.

Every dashboard route depends on `signed_in` (or `may(action)`): no session, a redirect to the
sign-in page; a POST without the session's CSRF token, or from another origin, a 403; a role
that may not do the action, a 403 that the audit log records."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dripstone import db
from dripstone.audit.middleware import ACTOR
from dripstone.audit.service import Actor
from dripstone.db import AccountScope
from dripstone.errors import Forbidden
from dripstone.users import sessions
from dripstone.users.models import Role, User
from dripstone.users.service import Action
from dripstone.users.service import may as role_may

SESSION_COOKIE = "dripstone_session"
SIGN_IN_COOKIE = "dripstone_sign_in"  # the sign-in form's own CSRF token (no session yet)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid session: the dashboard answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    """The signed-in user a page is rendered for."""

    user_id: int
    account_id: int
    username: str
    email: str
    role: Role
    csrf_token: str

    @classmethod
    def of(cls, user: User, csrf_token: str) -> Viewer:
        return cls(user.id, user.account_id, user.username, user.email, user.role, csrf_token)

    def may(self, action: Action) -> bool:
        return role_may(self.role, action)

    def scope(self, session: Session) -> AccountScope:
        return AccountScope(session, self.account_id)

    @property
    def actor(self) -> Actor:
        return Actor(self.account_id, "user", self.user_id, self.username)


def cookie_is_secure(request: Request) -> bool:
    """Cookies are `Secure` when the dashboard is served over https (its public URL)."""
    public_url: str = request.app.state.public_url
    return public_url.startswith("https://")


def set_session_cookie(request: Request, response: object, token: str) -> None:
    response.set_cookie(  # type: ignore[attr-defined]
        SESSION_COOKIE,
        token,
        max_age=int(sessions.IDLE_TIMEOUT.total_seconds()),
        httponly=True,
        secure=cookie_is_secure(request),
        samesite="lax",
        path="/",
    )


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path of this site only, never another origin."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    return path


async def _posted_csrf_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def _same_origin(request: Request) -> bool:
    """A browser names the page a form was sent from; it must be this site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def check_csrf(request: Request, expected: str) -> None:
    if request.method in SAFE_METHODS:
        return
    posted = await _posted_csrf_token(request)
    if not _same_origin(request) or posted is None or not secrets.compare_digest(posted, expected):
        raise Forbidden(
            "this form has expired or did not come from this site; reload the page and try again",
            field=CSRF_FIELD,
        )


def _viewer_of(token: str) -> Viewer | None:
    with db.database().read_sessions() as session:
        found = sessions.find_session(session, token)
        if found is None:
            return None
        viewer = Viewer.of(found.user, found.csrf_token)
    if found.needs_touch:
        with db.database().transaction() as session:
            sessions.touch(session, token)
    return viewer


async def signed_in(request: Request) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    viewer = await run_in_threadpool(_viewer_of, token) if token else None
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method in SAFE_METHODS else "/")
    request.state.viewer = viewer
    setattr(request.state, ACTOR, viewer.actor)
    await check_csrf(request, viewer.csrf_token)
    return viewer


def may(action: Action) -> Callable[[Request], Awaitable[Viewer]]:
    """A dependency: the signed-in user, if their role allows `action`; a 403 otherwise."""

    async def allowed(request: Request) -> Viewer:
        viewer = await signed_in(request)
        if not viewer.may(action):
            raise Forbidden(
                f"your role ({viewer.role.value}) does not allow this; ask an owner of the account"
            )
        return viewer

    return allowed


SignedIn = Annotated[Viewer, Depends(signed_in)]
Editor = Annotated[Viewer, Depends(may(Action.EDIT_CONTENT))]
Owner = Annotated[Viewer, Depends(may(Action.MANAGE_USERS))]


def sign_in_path(next_path: str) -> str:
    return "/sign-in" if next_path == "/" else f"/sign-in?next={quote(next_path, safe='/')}"
