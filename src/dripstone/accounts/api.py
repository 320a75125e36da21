"""The authentication dependency: which account a request acts for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from dripstone import db
from dripstone.accounts import service
from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.errors import Unauthorized
from dripstone.http import read_session, write_session

api_key_header = APIKeyHeader(
    name="authorization",
    auto_error=False,
    description='"Token token=<API_KEY>" or "Bearer <API_KEY>"',
)


def _account(request: Request, session: Session, header: str | None) -> Account:
    if not header:
        raise Unauthorized("missing authorization header; send 'Token token=<API_KEY>'")
    secret = service.key_in_header(header)
    if secret is None:
        raise Unauthorized(
            "malformed authorization header; send 'Token token=<API_KEY>' or 'Bearer <API_KEY>'"
        )
    account = service.authenticate(session, secret)
    if account is None:
        raise Unauthorized("unknown or revoked API key")
    username = request.path_params.get("username")
    if username is not None and username != account.username:
        raise Unauthorized("this API key does not belong to the account in the path")
    return account


def write_scope(
    request: Request,
    session: Annotated[Session, Depends(write_session, scope="function")],
    header: Annotated[str | None, Security(api_key_header)],
) -> AccountScope:
    # Authenticate on a short read-only session: the write transaction (and on SQLite the
    # write lock) then begins only at the service's first statement, not before the body
    # has been validated.
    with db.database().read_sessions() as auth_session:
        account_id = _account(request, auth_session, header).id
    return AccountScope(session, account_id)


def read_scope(
    request: Request,
    session: Annotated[Session, Depends(read_session, scope="function")],
    header: Annotated[str | None, Security(api_key_header)],
) -> AccountScope:
    return AccountScope(session, _account(request, session, header).id)


WriteScope = Annotated[AccountScope, Depends(write_scope, scope="function")]
ReadScope = Annotated[AccountScope, Depends(read_scope, scope="function")]
