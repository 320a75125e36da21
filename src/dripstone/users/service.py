"""Users: created, listed, disabled, their passwords set and checked, and what each role may do.

Passwords are kept as Argon2id hashes (argon2-cffi's parameters, RFC 9106's low-memory
choice); a hash made with other parameters is replaced at the next successful check."""

from __future__ import annotations

import secrets
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.accounts.models import Account
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.users.models import Role, User
from dripstone.wire import normalize_email

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters

_hasher = PasswordHasher()
# Checked against when no user has the address, so that an unknown address takes as long
# to refuse as a wrong password: made by the current hasher, at its cost. Made when first
# needed (`prepare_unknown_user_hash`), not at import: a hash costs as much as a sign-in, and
# most processes that import this (workers, most commands) never check a password.
_unknown_user_hash: str | None = None


class Action(StrEnum):
    READ = "read"
    EDIT_CONTENT = "edit_content"  # lists, subscribers, mailings, sends, drips
    MANAGE_USERS = "manage_users"  # users and API keys


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.EDITOR: frozenset({Action.READ, Action.EDIT_CONTENT}),
    Role.VIEWER: frozenset({Action.READ}),
}


def may(role: Role, action: Action) -> bool:
    """Whether a user of `role` may do `action`."""
    return action in _ALLOWED[role]


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash new passwords with `hasher` from now on, and refuse unknown addresses at its cost;
    returns the previous one."""
    global _hasher, _unknown_user_hash
    previous, _hasher = _hasher, hasher
    _unknown_user_hash = None
    prepare_unknown_user_hash()
    return previous


def prepare_unknown_user_hash() -> str:
    """The hash an unknown address is checked against, made now if not yet. A server calls
    this as it starts, so that even its first refusal of an unknown address takes as long as
    that of a wrong password."""
    global _unknown_user_hash
    if _unknown_user_hash is None:
        _unknown_user_hash = _hasher.hash(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))
    return _unknown_user_hash


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def _checked_password(password: str) -> str:
    if not password.strip():
        raise Invalid("the password is empty", field="password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"the password is too weak: use at least {MIN_PASSWORD_LENGTH} characters",
            field="password",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(
            f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters",
            field="password",
        )
    return password


def _checked_email(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError as exc:
        raise Invalid(str(exc), field="email") from None


def create_user(
    session: Session, account: Account, username: str, email: str, role: Role, password: str
) -> User:
    """A new, enabled user of `account`; the address must be free in the whole installation."""
    username = username.strip()
    if not username or len(username) > 64:
        raise Invalid("the username must be 1 to 64 characters", field="username")
    address = _checked_email(email)
    if session.scalars(select(User.id).where(User.email == address)).first() is not None:
        raise Conflict(f"a user with the address {address} already exists", field="email")
    user = User(
        account_id=account.id,
        username=username,
        email=address,
        role=role,
        password_hash=_hasher.hash(_checked_password(password)),
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session, account: Account | None = None) -> list[User]:
    """The users of `account`, or of every account, in the order they were created."""
    stmt = select(User).order_by(User.account_id, User.id)
    if account is not None:
        stmt = stmt.where(User.account_id == account.id)
    return list(session.scalars(stmt))


def get_user(session: Session, email: str) -> User:
    address = email.strip().lower()
    user = session.scalars(select(User).where(User.email == address)).first()
    if user is None:
        raise NotFound(f"no user with the address {address}", field="email")
    return user


def account_user(session: Session, account_id: int, user_id: str) -> User:
    """The user with public id `user_id` if they belong to the account; 404 otherwise."""
    user = session.scalars(
        select(User).where(User.account_id == account_id, User.uuid == user_id.lower())
    ).first()
    if user is None:
        raise NotFound(f"no user {user_id} in this account", field="user")
    return user


def _keep_an_owner(session: Session, user: User) -> None:
    """Refuse to leave an account without an enabled owner: no one could manage it again."""
    if user.role != Role.OWNER or user.disabled:
        return
    others = session.scalars(
        select(User.id).where(
            User.account_id == user.account_id,
            User.role == Role.OWNER,
            User.disabled.is_(False),
            User.id != user.id,
        )
    ).first()
    if others is None:
        raise Invalid(
            "this is the account's only owner: make another user an owner first", field="role"
        )


def set_role(session: Session, user: User, role: Role) -> User:
    """Give `user` another role; the account keeps at least one enabled owner."""
    if role != user.role:
        if role != Role.OWNER:
            _keep_an_owner(session, user)
        user.role = role
    return user


def disable_user(session: Session, email: str) -> User:
    """Disabled users never sign in again, and their sessions end. The account's last
    enabled owner cannot be disabled."""
    user = get_user(session, email)
    _keep_an_owner(session, user)
    if not user.disabled:
        user.disabled = True
        user.sessions_revoked_at = clock.now()
    return user


def reset_password(session: Session, email: str, password: str) -> User:
    """Set a new password; sessions opened with the old one end."""
    user = get_user(session, email)
    user.password_hash = _hasher.hash(_checked_password(password))
    user.sessions_revoked_at = clock.now()
    return user


def revoke_sessions(session: Session, user: User) -> None:
    """Sign `user` out everywhere."""
    user.sessions_revoked_at = clock.now()


def verify_password(session: Session, email: str, password: str) -> User | None:
    """The user with this address and password, if enabled; None otherwise. Takes as long for
    an unknown address as for a wrong password. A hash made with parameters other than the
    current ones is rehashed on success (the caller commits)."""
    address = email.strip().lower()
    user = session.scalars(select(User).where(User.email == address)).first()
    stored = user.password_hash if user is not None else prepare_unknown_user_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
    return user
