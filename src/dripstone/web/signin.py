"""Signing in and out."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from dripstone import db
from dripstone.audit.middleware import ACTOR
from dripstone.users import service as users
from dripstone.users import sessions
from dripstone.web.auth import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SignedIn,
    Viewer,
    cookie_is_secure,
    safe_next,
    set_session_cookie,
)
from dripstone.web.templating import render

router = APIRouter()
WRONG = "That address and password do not match an enabled user. Check both and try again."


def _form(
    request: Request, *, email: str = "", next_path: str = "/", error: str = "", status: int = 200
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        {"email": email, "next": safe_next(next_path), "error": error, "form_token": token},
        status_code=status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        secure=cookie_is_secure(request),
        samesite="strict",
        path="/sign-in",
    )
    return response


@router.get("/sign-in", include_in_schema=False)
def sign_in_page(request: Request, next: str = "/") -> Response:
    return _form(request, next_path=next)


@router.post("/sign-in", include_in_schema=False)
def sign_in(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, form_token):
        return _form(
            request,
            email=email,
            next_path=next,
            error="This form had expired. Sign in again.",
            status=403,
        )
    ip = request.client.host if request.client else "unknown"
    with db.database().transaction() as session:
        wait = sessions.throttled_for(session, email, ip)
        if wait is not None:
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            message = (
                "Too many failed sign-ins for this address or from this network. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
                "or ask an owner to reset your password."
            )
            return _form(request, email=email, next_path=next, error=message, status=429)
        user = users.verify_password(session, email, password)
        if user is None:
            sessions.note_failure(session, email, ip)
            outcome: Response = _form(request, email=email, next_path=next, error=WRONG, status=401)
        else:
            sessions.forget_failures(session, email)
            opened = sessions.open_session(session, user)
            setattr(request.state, ACTOR, Viewer.of(user, opened.csrf_token).actor)
            outcome = RedirectResponse(safe_next(next), status_code=303)
            set_session_cookie(request, outcome, opened.token)
            outcome.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return outcome


@router.post("/sign-out", include_in_schema=False)
def sign_out(request: Request, _viewer: SignedIn) -> Response:
    with db.database().transaction() as session:
        sessions.close_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
