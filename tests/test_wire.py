"""Addresses are checked by email-validator's rules: the quick path taken for plain addresses
gives every address the verdict email-validator itself gives."""

from __future__ import annotations

import itertools

import pytest
from email_validator import EmailNotValidError, validate_email

from dripstone.wire import normalize_email

LOCAL_PARTS = [
    "bo",
    "Bo.Smith",
    "bo+news",
    "o'brien",
    "x_y-z",
    "!#$%&'*+-/=?^_`{|}~",
    "a.b.c",
    ".bo",
    "bo.",
    "b..o",
    "",
    "Info",
    "SUPPORT",
    "postmaster",
    "a" * 64,
    "a" * 65,
    "a" * 240,
    '"bo"',
    '"b o"',
    "b o",
    "bo\n",
    "bö",
    "ß",
    "b\u0301o",
    "bo\u00a0",
    "bo@x",
    "<bo",
    "bo>",
    "b(o)",
    "b,o",
    "b;o",
    "b[o]",
    "b\\o",
    "b\x00o",
    "\u200bbo",
]
DOMAINS = [
    "example.com",
    "Example.COM",
    "sub.example.co.uk",
    "x-y.example.org",
    "localhost",
    "example.local",
    "example.invalid",
    "example.test",
    "example.onion",
    "x.arpa",
    "com",
    "-x.com",
    "x-.com",
    "x..com",
    ".x.com",
    "x.com.",
    "x.123",
    "1.2.3.4",
    "[1.2.3.4]",
    "[IPv6:::1]",
    "xn--bcher-kva.example",
    "xn--zz.example",
    "bücher.example",
    "BÜCHER.example",
    "x_y.com",
    "x y.com",
    "x.com\n",
    "a" * 63 + ".com",
    "a" * 64 + ".com",
    ".".join(["a" * 60] * 4) + ".com",
    "",
    "@x.com",
    "x.com>",
    "\uff45xample.com",
    "example\uff0ecom",
]
ODD = [
    "",
    "plain",
    "@",
    "bo@",
    "@example.com",
    "bo\uff20example.com",
    "bo\ufe6bexample.com",
    "Bo <bo@example.com>",
    "<bo@example.com>",
    " bo@example.com",
    "bo@example.com ",
    "bo@@example.com",
    "a" * 200 + "@" + "b" * 60 + ".com",
    "a" * 180 + "@" + ".".join(["b" * 30] * 2) + ".com",
]


def _reference(address: str) -> str:
    """What email-validator answers for `address`, as `normalize_email` words it."""
    try:
        normalized = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"error: not a valid email address: {exc}"
    if len(normalized) > 320:
        return "error: an email address has at most 320 characters"
    return normalized


def _verdict(address: str) -> str:
    try:
        return normalize_email(address)
    except ValueError as exc:
        return f"error: {exc}"


CORPUS = [f"{local}@{domain}" for local, domain in itertools.product(LOCAL_PARTS, DOMAINS)] + ODD


@pytest.mark.parametrize("chunk", range(0, len(CORPUS), 200))
def test_every_address_gets_email_validators_verdict(chunk: int) -> None:
    addresses = CORPUS[chunk : chunk + 200]
    assert [_verdict(a) for a in addresses] == [_reference(a) for a in addresses]


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = [_verdict(a) for a in CORPUS]
    valid = [v for v in verdicts if not v.startswith("error: ")]
    assert len(valid) > 100
    assert len(verdicts) - len(valid) > 500
    assert "bo.smith@example.com" in valid
    assert "info@sub.example.co.uk" in valid
