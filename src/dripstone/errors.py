"""Expected errors of the domain. Each carries the status and machine code the API answers with."""

from __future__ import annotations

from typing import Any


class DripstoneError(Exception):
    """A request Dripstone refuses on purpose, with a message a person can act on."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {"field": field, **details} if field else dict(details)


class BadRequest(DripstoneError):
    pass


class Unauthorized(DripstoneError):
    status = 401
    code = "unauthorized"


class Forbidden(DripstoneError):
    """Signed in, but the user's role does not allow this (or the form's CSRF token is wrong)."""

    status = 403
    code = "forbidden"


class NotFound(DripstoneError):
    status = 404
    code = "not_found"


class Invalid(DripstoneError):
    """The request is well-formed but names something that does not fit (422)."""

    status = 422
    code = "invalid"


class Conflict(DripstoneError):
    status = 422
    code = "conflict"
