"""Wire types every domain shares: public ids, addresses, names, header-safe text.

Neutral ground: this module imports no other part of Dripstone, so any domain, the pure
drip core included, may build on it without pulling another domain in.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from typing import Annotated, Any

import email_validator
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_length
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

MAX_EMAIL_LENGTH = 320

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)
# Line breaks and control characters (tab aside), which would end or split a header.
# Runs of line breaks and other control characters (NUL aside), made one space in names.
_CONTROL_RUNS = re.compile(r"[\x01-\x1f\x7f-\x9f\u2028\u2029]+")
_UNSAFE_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def is_uuid(text: str) -> bool:
    """Whether `text` is a UUID in any case: the only text that can name a public id."""
    return _UUID.fullmatch(text) is not None


# Checking an address's domain is most of the cost of checking the address, depends on the
# domain alone and reads its answer only: addresses of one domain (an import of a million,
# say) check it once.
_email_validation = importlib.import_module("email_validator.validate_email")
_email_validation.validate_email_domain_name = functools.lru_cache(maxsize=4096)(  # type: ignore[attr-defined]
    _email_validation.validate_email_domain_name
)


# The shape nearly every address has: an ASCII dot-atom before the @-sign, ASCII host name
# characters after it. Such a local part is valid and normalized as it is (email-validator's own
# first test), so only the domain and the length are left to check, with email-validator's own
# functions; every other address goes through the whole of email-validator.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_ADDRESS = re.compile(f"([{_ATEXT}]+(?:\\.[{_ATEXT}]+)*)@([a-zA-Z0-9.\\-]+)")


def _validated_address(value: str) -> str:
    """email-validator's normalized form of `value` (check_deliverability off)."""
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is None:
        return validate_email(value, check_deliverability=False).normalized
    local, domain_part = plain.groups()
    domain = _email_validation.validate_email_domain_name(
        domain_part,
        test_environment=email_validator.TEST_ENVIRONMENT,
        globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
    )
    normalized = f"{local}@{domain['domain']}"
    # The three forms email-validator measures; it raises the error only when one is too long.
    longest = max(
        len(value), len(normalized.encode()), len(local) + 1 + len(domain["ascii_domain"])
    )
    if longest > EMAIL_MAX_LENGTH:
        checked = ValidatedEmail()
        checked.original = value
        checked.local_part = checked.ascii_local_part = local
        checked.domain, checked.ascii_domain = domain["domain"], domain["ascii_domain"]
        checked.normalized = normalized
        validate_email_length(checked)
    return normalized


def normalize_email(value: str) -> str:
    """A valid address, lower-cased so that uniqueness is case-insensitive."""
    try:
        normalized = _validated_address(value).lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    if len(normalized) > MAX_EMAIL_LENGTH:  # lower-casing can lengthen some characters
        raise ValueError(f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    return normalized


def no_nul(value: str) -> str:
    """Text without NUL characters (PostgreSQL cannot store them; no one means to send them)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


def fits_in_a_header(value: str) -> bool:
    """Whether `value` has no line break or control character, so it stays in its header."""
    return _UNSAFE_IN_HEADER.search(value) is None


def one_line(value: str) -> str:
    """`value` with each run of line breaks and other control characters made one space.

    Names end up in headers, CSV exports and dashboards, where a line break does harm or
    misleads; NUL stays refused by `no_nul`, which says so.
    """
    normalized = _CONTROL_RUNS.sub(" ", value).strip()
    if value and not normalized:
        raise ValueError("must not be only control characters")
    return normalized


def _header_text(value: str) -> str:
    if not fits_in_a_header(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Email = Annotated[
    str,
    StringConstraints(max_length=MAX_EMAIL_LENGTH),
    AfterValidator(normalize_email),
    Field(json_schema_extra={"format": "email"}),
]
NoNul = AfterValidator(no_nul)
OneLine = AfterValidator(one_line)
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255), NoNul, OneLine]
# Ids are stored lower-case; a client that upper-cases one still names the same row.
Uuid = Annotated[str, StringConstraints(pattern=UUID_PATTERN), AfterValidator(str.lower)]
# A display name that goes into a header (From) as it is.
HeaderName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(_header_text)
]


def as_text(value: Any) -> str:
    """`value` as the string the wire answers: unset is "", structured data its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# An answered field that the Marketing API types as a string: unset is "", never null, and a
# structured value (JSON a client stored) is answered as its JSON text.
Text = Annotated[str, BeforeValidator(as_text)]
