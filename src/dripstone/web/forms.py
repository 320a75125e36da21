"""Turning a refusal into messages next to the fields of a form.

A page validates what was typed with the same schema or service the API uses, catches the
refusal, and renders the form again with `errors` (field name → message) and what was typed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from dripstone.errors import DripstoneError

FORM = "_form"  # the key of errors that belong to no one field


def errors_of(exc: DripstoneError | ValidationError) -> dict[str, str]:
    """Field name → message. Nested pydantic locations are joined with dots."""
    if isinstance(exc, DripstoneError):
        field = exc.details.get("field")
        return {str(field) if field else FORM: exc.message}
    found: dict[str, str] = {}
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or FORM
        message = str(error["msg"]).removeprefix("Value error, ")
        found.setdefault(location, message)
    return found


def typed(form: FormData | Mapping[str, Any]) -> dict[str, str]:
    """What was typed, to put back into the form (files left out)."""
    return {name: value for name, value in form.items() if isinstance(value, str)}
