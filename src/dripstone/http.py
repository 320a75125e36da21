"""Pieces every router uses: database sessions per request, envelopes, documented errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends
from pydantic import BaseModel
from sqlalchemy.orm import Session

from dripstone import db

T = TypeVar("T")


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
