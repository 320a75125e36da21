"""Dashboard sessions: opened at sign-in, ended by sign-out, inactivity or "sign out everywhere",
and the throttle on sign-in attempts.

The browser holds a random token; the database keeps only its SHA-256, so a copy of the
database opens no session. A new token is issued at every sign-in (no session fixation)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.users.models import SignInFailure, User, WebSession

IDLE_TIMEOUT = timedelta(hours=8)
# last_seen_at is written at most this often: a page view is not a write per request.
TOUCH_EVERY = timedelta(minutes=1)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 20


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    token: str  # for the cookie; never stored
    csrf_token: str


@dataclass(frozen=True)
class SignedIn:
    """The user a valid session belongs to, and the session's CSRF token."""

    user: User
    csrf_token: str
    needs_touch: bool = False


def open_session(session: Session, user: User) -> OpenedSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_hash(token), user_id=user.id, csrf_token=csrf))
    session.flush()
    return OpenedSession(token, csrf)


def find_session(session: Session, token: str) -> SignedIn | None:
    """The signed-in user of `token`; None once the session has ended (signed out, idle too
    long, revoked, the user disabled). Reads only: `touch` records the activity."""
    found = session.get(WebSession, _hash(token))
    if found is None or clock.now() - found.last_seen_at > IDLE_TIMEOUT:
        return None
    user = session.get(User, found.user_id)
    if user is None or user.disabled or _revoked(user, found.created_at):
        return None
    return SignedIn(user, found.csrf_token, clock.now() - found.last_seen_at > TOUCH_EVERY)


def touch(session: Session, token: str) -> None:
    """Note activity on the session now: its idle time starts again."""
    found = session.get(WebSession, _hash(token))
    if found is not None:
        found.last_seen_at = clock.now()


def _revoked(user: User, opened_at: datetime) -> bool:
    return user.sessions_revoked_at is not None and opened_at <= user.sessions_revoked_at


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def close_all_sessions(session: Session, user: User) -> None:
    """Sign `user` out everywhere."""
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    user.sessions_revoked_at = clock.now()


def _throttle_keys(email: str, ip: str) -> tuple[str, str]:
    return _hash(f"email:{email.strip().lower()}"), _hash(f"ip:{ip}")


def throttled_for(session: Session, email: str, ip: str) -> timedelta | None:
    """How long until this address or this IP may try again, if either tried too often."""
    since = clock.now() - THROTTLE_WINDOW
    waits = []
    for key, limit in zip(
        _throttle_keys(email, ip), (MAX_FAILURES_PER_EMAIL, MAX_FAILURES_PER_IP), strict=True
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(SignInFailure.at)).where(
                SignInFailure.key == key, SignInFailure.at > since
            )
        ).one()
        if count >= limit and oldest is not None:
            waits.append(oldest + THROTTLE_WINDOW - clock.now())
    return max(waits) if waits else None


def note_failure(session: Session, email: str, ip: str) -> None:
    since = clock.now() - THROTTLE_WINDOW
    session.execute(delete(SignInFailure).where(SignInFailure.at <= since))
    for key in _throttle_keys(email, ip):
        session.add(SignInFailure(key=key))


def forget_failures(session: Session, email: str) -> None:
    """A successful sign-in clears its address's count (not its IP's)."""
    key, _ = _throttle_keys(email, "")
    session.execute(delete(SignInFailure).where(SignInFailure.key == key))
