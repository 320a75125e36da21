"""Accounts and API keys. Keys are shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.accounts.models import Account, ApiKey
from dripstone.errors import Conflict, Invalid, NotFound

KEY_PREFIX_LENGTH = 8
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

# What other domains set up in every new account (the subscribers domain: its default list).
# Registered by them, so that accounts, the lowest domain, imports none of them.
AccountSetUp = Callable[[Session, int], object]
_set_ups: list[AccountSetUp] = []


def on_account_created(set_up: AccountSetUp) -> AccountSetUp:
    """Register `set_up(session, account_id)` to run in the transaction creating an account."""
    _set_ups.append(set_up)
    return set_up


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: `secret` exists only here and is never stored."""

    prefix: str
    secret: str


def hash_key(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough; no salt or stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_account(session: Session, username: str) -> tuple[Account, IssuedKey]:
    """Create an account, set up by every domain that registered (its default list), with a
    first API key."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise Invalid(
            "username must be 2-63 characters: lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            field="username",
        )
    if session.scalars(select(Account).where(Account.username == username)).first():
        raise Conflict(f"account {username!r} already exists", field="username")
    account = Account(username=username)
    session.add(account)
    session.flush()
    for set_up in _set_ups:
        set_up(session, account.id)
    return account, create_key(session, account)


def get_account(session: Session, username: str) -> Account:
    account = session.scalars(select(Account).where(Account.username == username)).first()
    if account is None:
        raise NotFound(f"no account named {username!r}", field="username")
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.id)))


def account_name(session: Session, account_id: int) -> str:
    return session.get_one(Account, account_id).username


def create_key(session: Session, account: Account) -> IssuedKey:
    prefix = "ds_" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_PREFIX_LENGTH))
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(account_id=account.id, prefix=prefix, key_hash=hash_key(secret)))
    session.flush()
    return IssuedKey(prefix=prefix, secret=secret)


def list_keys(session: Session, account: Account) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.created_at)
    return list(session.scalars(stmt))


def revoke_key(session: Session, account: Account, prefix: str) -> ApiKey:
    stmt = select(ApiKey).where(ApiKey.account_id == account.id, ApiKey.prefix == prefix)
    key = session.scalars(stmt).first()
    if key is None:
        raise NotFound(f"account {account.username!r} has no key {prefix!r}", field="prefix")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
    return key


# Auth schemes and parameter names are case-insensitive (RFC 9110 11.1); the key itself is not.
_AUTHORIZATION = re.compile(
    r"^\s*(?:Token\s+token=\"?(?P<token>[^\s\"]+)\"?|Bearer\s+(?P<bearer>\S+))\s*$",
    re.IGNORECASE,
)


def key_in_header(authorization: str | None) -> str | None:
    """The API key in an `authorization` header ("Token token=KEY" or "Bearer KEY"), if any."""
    match = _AUTHORIZATION.match(authorization or "")
    return None if match is None else match["token"] or match["bearer"]


def authenticate(session: Session, secret: str) -> Account | None:
    """The account an active key belongs to, or None."""
    found = authenticate_key(session, secret)
    return None if found is None else found[0]


def authenticate_key(session: Session, secret: str) -> tuple[Account, ApiKey] | None:
    """The account an active key belongs to, with the key, or None."""
    stmt = (
        select(Account, ApiKey)
        .join(ApiKey, ApiKey.account_id == Account.id)
        .where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])
