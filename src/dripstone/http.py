"""The HTTP edge every router stands on: database sessions per request, the account a
request acts for (its API key), envelopes, documented errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from sqlalchemy.orm import Session

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.errors import Unauthorized

T = TypeVar("T")
CALLER = "dripstone_caller"  # where in the request's state the authenticated caller is kept


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: an account, through one of its API keys."""

    account_id: int
    key_id: int
    key_prefix: str


def write_session() -> Iterator[Session]:
    """A session for the request, committed when the endpoint returns without error."""
    with db.database().transaction() as session:
        yield session


def read_session() -> Iterator[Session]:
    """A read-only session for the request (no write lock taken on SQLite)."""
    with db.database().read_sessions() as session:
        yield session


WriteSession = Annotated[Session, Depends(write_session, scope="function")]
ReadSession = Annotated[Session, Depends(read_session, scope="function")]

api_key_header = APIKeyHeader(
    name="authorization",
    auto_error=False,
    description='"Token token=<API_KEY>" or "Bearer <API_KEY>"',
)


def _account(request: Request, session: Session, header: str | None) -> Account:
    if not header:
        raise Unauthorized("missing authorization header; send 'Token token=<API_KEY>'")
    secret = accounts.key_in_header(header)
    if secret is None:
        raise Unauthorized(
            "malformed authorization header; send 'Token token=<API_KEY>' or 'Bearer <API_KEY>'"
        )
    found = accounts.authenticate_key(session, secret)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    account, key = found
    username = request.path_params.get("username")
    if username is not None and username != account.username:
        raise Unauthorized("this API key does not belong to the account in the path")
    setattr(request.state, CALLER, Caller(account.id, key.id, key.prefix))
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


class ErrorEnvelope(BaseModel):
    error: str
    code: str
    details: dict[str, Any] = {}


class ErrorsList(BaseModel):
    """The 200 answer some Paubox endpoints give instead of `data` when validation fails."""

    errors: list[str]


class ErrorsString(BaseModel):
    """The 200 answer the subscribe/unsubscribe endpoints give when the operation fails."""

    errors: str


class Data(BaseModel, Generic[T]):
    data: T


class Empty(BaseModel):
    pass


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelope under the given statuses."""
    return {status: {"model": ErrorEnvelope} for status in statuses}


STANDARD_ERRORS = error_responses(400, 401, 404, 413, 422)
ERRORS_LIST_QUIRK = {"x-validation-errors": "errors-list"}
# Routes where Paubox answers a refused request 200 {"errors": "..."}: so does a refused body.
ERRORS_STRING_QUIRK = {"x-validation-errors": "errors-string"}
