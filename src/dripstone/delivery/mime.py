"""MIME messages: a rendered message becomes the bytes an SMTP server receives.

Every message is `multipart/alternative` (text first, then HTML; `text/plain` alone when the
mailing has no HTML) with Date, From, Reply-To, To, Subject, Message-ID, MIME-Version,
List-Unsubscribe (`<https…>`, plus `<mailto:…>` when given) and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (RFC 8058), DKIM-signed when a key is given.

    frame = MessageFrame(from_email=, from_name=, reply_to=, message_id_domain=, dkim_key=)
    message = frame.build(rendered, to_email=subscriber.email,
                          list_unsubscribe_url=rendered.unsubscribe_url, date=clock.now())

Building a message with `email.message.EmailMessage` costs about 3.5 ms, seven times the
whole per-message budget, nearly all of it re-parsing and re-folding headers. So what is the
same for every message of a send lives in a `MessageFrame`, built once with the standard
library's header machinery, and each message adds its own lines to it:

- From, Reply-To and the multipart Content-Type are folded and RFC 2047-encoded by
  `email.policy.SMTP` once, in the frame;
- Subject: a short ASCII subject is written as it is; any other is folded and encoded by
  `email.policy.SMTP`, through a cache, since most recipients share a subject;
- To: a plain address (atext and dots around one @) is written as it is; any other goes
  through `email.headerregistry.Address`, which refuses what is not exactly one addr-spec;
- Message-ID (`email.utils.make_msgid`) and List-Unsubscribe are checked, never encoded;
- bodies are 7bit when they are ASCII with lines of at most 998 octets, else UTF-8
  quoted-printable (`binascii.b2a_qp`). The boundary is random per frame and starts with
  `=_`, which quoted-printable never produces; a 7bit body containing it goes
  quoted-printable instead.

Header injection: every value that reaches a header is checked first. A line break (of any
kind `str.splitlines` knows) or other control character in a subject, name, address, URL or
Message-ID raises UnsafeHeaderError naming the header; nothing is written for it. The email
package is not relied on for this: before Python 3.11.10 it could let a line break through
when serializing (CVE-2024-6923), and this project runs on 3.11.

DKIM (dkimpy): relaxed header and simple body canonicalization (dkimpy's default; relaxed
body canonicalization triples the cost of signing), over From, Reply-To, To, Subject, Date,
Message-ID, MIME-Version, Content-Type, List-Unsubscribe and List-Unsubscribe-Post. A bad key
fails when the frame is made. dkimpy does RSA in pure Python: about 8 ms a signature for a
2048-bit key, against 0.3 ms for ed25519; see bench/render.py.

Public interface:
    MessageFrame(from_email=, from_name=, reply_to=, message_id_domain=, dkim_key=None)
      .build(rendered, to_email=, list_unsubscribe_url=, list_unsubscribe_mailto=None,
             date=, message_id=None) -> bytes
    build(rendered, from_email=, from_name=, to_email=, reply_to=, list_unsubscribe_url=,
          list_unsubscribe_mailto=, message_id_domain=, date=, dkim_key=None,
          message_id=None) -> bytes                    one message, frame and all
    new_message_id(domain) -> str                      `<unique@domain>`
    DkimKey(selector, domain, private_key, algorithm="rsa-sha256")
    UnsafeHeaderError(header, reason)                  a ValueError
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Literal

import dkim  # type: ignore[import-untyped]

from dripstone.delivery.prepare import RenderedMessage
from dripstone.wire import fits_in_a_header

CRLF = b"\r\n"
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_TEXT_TYPE = b'Content-Type: text/plain; charset="utf-8"\r\n'
_HTML_TYPE = b'Content-Type: text/html; charset="utf-8"\r\n'
_SEVEN_BIT = b"Content-Transfer-Encoding: 7bit\r\n"
_QUOTED_PRINTABLE = b"Content-Transfer-Encoding: quoted-printable\r\n"
_MAX_LINE = 998  # octets, RFC 5322 section 2.1.1
# Line breaks of every kind (str.splitlines' too) and the other C0 controls; tab is allowed.
_URL_FORBIDDEN = re.compile(r"[\s<>,\"]")
_SHORT_SUBJECT = 78 - len("Subject: ")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 atext
_LABEL = r"[A-Za-z0-9-]+"
_DNS_NAME = re.compile(_LABEL + r"(?:\." + _LABEL + r")*")
_PLAIN_ADDRESS = re.compile(_ATOM + r"(?:\." + _ATOM + r")*@" + _LABEL + r"(?:\." + _LABEL + r")+")


class UnsafeHeaderError(ValueError):
    """A value that would not stay inside its header (or is not valid there)."""

    def __init__(self, header: str, reason: str) -> None:
        self.header = header
        super().__init__(f"{header} header: {reason}")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM signing key: PEM for rsa-sha256, dkimpy's base64 seed for ed25519-sha256."""

    selector: str
    domain: str
    private_key: bytes
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"

    def __post_init__(self) -> None:
        # Both end up in the DKIM-Signature header and in a DNS name.
        for name, value in (("selector", self.selector), ("domain", self.domain)):
            if not _DNS_NAME.fullmatch(value):
                raise UnsafeHeaderError("DKIM-Signature", f"{value!r} is not a DKIM {name}")


def _checked(header: str, value: str) -> str:
    if not fits_in_a_header(value):
        raise UnsafeHeaderError(header, "contains a line break or control character")
    return value


def _address(header: str, email: str) -> str:
    """`email` as a bare addr-spec, or UnsafeHeaderError: one address, nothing around it."""
    # The common address is atext and dots around one @, which cannot be read as anything
    # but one addr-spec; the email package's parser (25 µs, a tenth of a message's budget)
    # is for the rest. Whether the mailbox is valid was decided when the address was saved.
    if _PLAIN_ADDRESS.fullmatch(email):
        return email
    _checked(header, email)
    if not email.isascii():
        # Sending to non-ASCII mailboxes needs SMTPUTF8, which Dripstone does not do yet.
        raise UnsafeHeaderError(header, f"{email!r} is not an ASCII address")
    try:
        address = Address(addr_spec=email)
    except (ValueError, IndexError) as exc:
        raise UnsafeHeaderError(header, f"{email!r} is not an email address ({exc})") from None
    if not address.domain:
        raise UnsafeHeaderError(header, f"{email!r} is not an email address (no domain)")
    return address.addr_spec


def _url(header: str, url: str) -> str:
    _checked(header, url)
    if not url.isascii() or _URL_FORBIDDEN.search(url):
        raise UnsafeHeaderError(header, f"{url!r} is not a URL that can stand in <...>")
    return url


def _check_message_id(message_id: str) -> None:
    _checked("Message-ID", message_id)
    inside = message_id.removeprefix("<").removesuffix(">")
    if len(inside) != len(message_id) - 2 or "@" not in inside or _URL_FORBIDDEN.search(inside):
        raise UnsafeHeaderError("Message-ID", f"{message_id!r} is not of the form <unique@domain>")
    if not message_id.isascii():
        raise UnsafeHeaderError("Message-ID", f"{message_id!r} is not ASCII")


@lru_cache(maxsize=4096)
def _folded(name: str, value: str) -> bytes:
    # A header object, not the bare string: policy.fold would pass a short string through
    # unencoded. policy.SMTP: CRLF line ends, 78-column folding, RFC 2047 for non-ASCII.
    header = policy.SMTP.header_factory(name, value)
    folded: str = header.fold(policy=policy.SMTP)
    return folded.encode("ascii")


def _subject(value: str) -> bytes:
    _checked("Subject", value)
    # Most subjects are short ASCII and need neither folding nor encoding: skip the ~0.1 ms
    # the email package takes. "=?" would read as the start of an encoded word.
    if value.isascii() and len(value) <= _SHORT_SUBJECT and "=?" not in value:
        return b"Subject: " + value.encode("ascii") + CRLF
    return _folded("Subject", value)


def _body(text: str, boundary: bytes) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding header, body with CRLF line ends) for one text part.

    7bit whenever RFC 5322 and 2045 allow it (ASCII, no NUL, no line over 998 octets), since
    quoted-printable costs about 7 ns a byte, some 70 µs for 10 KB of HTML; quoted-printable
    otherwise. A 7bit body that happens to contain the boundary is quoted-printable too, where
    the boundary's `=_` cannot occur.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if lines.isascii():
        data = lines.encode("ascii")
        if (
            b"\0" not in data
            and max(map(len, data.split(b"\n"))) <= _MAX_LINE
            and boundary not in data
        ):
            return _SEVEN_BIT, data.replace(b"\n", CRLF)
    # b2a_qp keeps the line ending it first sees: give it "\n", then make every one CRLF.
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True)
    return _QUOTED_PRINTABLE, encoded.replace(b"\n", CRLF)


def new_message_id(domain: str) -> str:
    """A new, globally unique Message-ID under `domain`, angle brackets included."""
    return make_msgid(domain=domain)


class MessageFrame:
    """What every message of one send shares: sender, Message-ID domain, DKIM key."""

    def __init__(
        self,
        *,
        from_email: str,
        from_name: str | None,
        reply_to: str | None,
        message_id_domain: str,
        dkim_key: DkimKey | None = None,
    ) -> None:
        sender = Address(
            display_name=_checked("From", from_name or ""), addr_spec=_address("From", from_email)
        )
        self._from = _folded("From", str(sender))
        self._reply_to = b""
        if reply_to:
            self._reply_to = _folded("Reply-To", _address("Reply-To", reply_to))
        self._domain = message_id_domain
        _address("Message-ID", f"id@{message_id_domain}")  # a domain an address could have
        self._boundary = b"=_" + secrets.token_hex(16).encode("ascii")
        self._multipart = _folded(
            "Content-Type", f'multipart/alternative; boundary="{self._boundary.decode()}"'
        )
        self._dkim_key = dkim_key
        if dkim_key is not None:
            _check_dkim_key(dkim_key)

    def build(
        self,
        rendered: RenderedMessage,
        *,
        to_email: str,
        list_unsubscribe_url: str | None,
        list_unsubscribe_mailto: str | None = None,
        date: datetime,
        message_id: str | None = None,
    ) -> bytes:
        """The message for one recipient, as bytes with CRLF line ends.

        `list_unsubscribe_url` is None only for messages that are not a delivery (a test
        email to someone who is not a subscriber): those carry no List-Unsubscribe.
        """
        if date.tzinfo is None:
            raise ValueError("date must be timezone-aware")
        if message_id is None:
            message_id = new_message_id(self._domain)
        else:
            _check_message_id(message_id)
        lines = [
            b"Date: " + format_datetime(date).encode("ascii") + CRLF,
            self._from,
            self._reply_to,
            b"To: " + _address("To", to_email).encode("ascii") + CRLF,
            _subject(rendered.subject),
            b"Message-ID: " + message_id.encode("ascii") + CRLF,
            b"MIME-Version: 1.0\r\n",
        ]
        if list_unsubscribe_url is not None:
            lines.append(_list_unsubscribe(list_unsubscribe_url, list_unsubscribe_mailto))
            lines.append(ONE_CLICK)
        boundary = self._boundary
        text_encoding, text = _body(rendered.text, boundary)
        if rendered.html is None:
            lines += (_TEXT_TYPE, text_encoding, CRLF, text)
        else:
            html_encoding, html = _body(rendered.html, boundary)
            delimiter = b"--" + boundary
            lines += (
                self._multipart,
                CRLF,
                delimiter + CRLF + _TEXT_TYPE + text_encoding + CRLF,
                text,
                CRLF + delimiter + CRLF + _HTML_TYPE + html_encoding + CRLF,
                html,
                CRLF + delimiter + b"--" + CRLF,
            )
        message = b"".join(lines)
        if self._dkim_key is None:
            return message
        return _dkim_signature(self._dkim_key, message) + message


def _list_unsubscribe(url: str, mailto: str | None) -> bytes:
    line = b"List-Unsubscribe: <" + _url("List-Unsubscribe", url).encode("ascii") + b">"
    if mailto:
        if not mailto.lower().startswith("mailto:"):
            raise UnsafeHeaderError("List-Unsubscribe", "the mail address must be a mailto: URL")
        # A folded second line keeps long https URLs plus the mailto under 998 octets a line.
        line += b",\r\n <" + _url("List-Unsubscribe", mailto).encode("ascii") + b">"
    return line + CRLF


_SIGNED_HEADERS = (
    b"from",
    b"reply-to",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    # RFC 8058: both must be covered by the signature for one-click unsubscribe.
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


def _dkim_signature(key: DkimKey, message: bytes) -> bytes:
    signature: bytes = dkim.sign(
        message,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=(b"relaxed", b"simple"),
        signature_algorithm=key.algorithm.encode("ascii"),
        include_headers=list(_SIGNED_HEADERS),
    )
    return signature


def _check_dkim_key(key: DkimKey) -> None:
    """Sign a throwaway message, so a bad key fails when the send starts, not per message."""
    probe = b"From: probe@example.com\r\nSubject: probe\r\n\r\nprobe\r\n"
    try:
        _dkim_signature(key, probe)
    except (dkim.DKIMException, ValueError, UnicodeError) as exc:
        raise ValueError(f"DKIM key for {key.selector}._domainkey.{key.domain}: {exc}") from None


def build(
    rendered: RenderedMessage,
    *,
    from_email: str,
    from_name: str | None,
    to_email: str,
    reply_to: str | None,
    list_unsubscribe_url: str | None,
    list_unsubscribe_mailto: str | None,
    message_id_domain: str,
    date: datetime,
    dkim_key: DkimKey | None = None,
    message_id: str | None = None,
) -> bytes:
    """One message, frame and all; for many messages of one send, reuse a MessageFrame."""
    frame = MessageFrame(
        from_email=from_email,
        from_name=from_name,
        reply_to=reply_to,
        message_id_domain=message_id_domain,
        dkim_key=dkim_key,
    )
    return frame.build(
        rendered,
        to_email=to_email,
        list_unsubscribe_url=list_unsubscribe_url,
        list_unsubscribe_mailto=list_unsubscribe_mailto,
        date=date,
        message_id=message_id,
    )
