"""MIME: headers present and parseable, encodings, header injection refused, DKIM verifies."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import MappingProxyType

import dkim  # type: ignore[import-untyped]
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from dripstone.delivery.mime import DkimKey, MessageFrame, UnsafeHeaderError, build
from dripstone.delivery.prepare import RenderedMessage

DATE = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
UNSUBSCRIBE = "https://mail.acme.test/t/u/NDI.signature"


def rendered(
    subject: str = "Spring news",
    html: str | None = "<html><body><p>Hello Jane</p></body></html>",
    text: str = "Hello Jane\n",
) -> RenderedMessage:
    return RenderedMessage(subject, html, text, MappingProxyType({}), UNSUBSCRIBE)


def frame(**overrides: object) -> MessageFrame:
    options: dict[str, object] = {
        "from_email": "news@acme.test",
        "from_name": "Acme News",
        "reply_to": "help@acme.test",
        "message_id_domain": "acme.test",
    }
    options.update(overrides)
    return MessageFrame(**options)  # type: ignore[arg-type]


def parse(message: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(message)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def header_block(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def test_every_header_is_present_and_parseable() -> None:
    message = build(
        rendered(),
        from_email="news@acme.test",
        from_name="Acme News",
        to_email="jane@example.com",
        reply_to="help@acme.test",
        list_unsubscribe_url=UNSUBSCRIBE,
        list_unsubscribe_mailto="mailto:unsubscribe@acme.test?subject=42",
        message_id_domain="acme.test",
        date=DATE,
    )
    parsed = parse(message)
    assert parsed["From"] == "Acme News <news@acme.test>"
    assert parsed["From"].addresses[0].addr_spec == "news@acme.test"
    assert parsed["To"] == "jane@example.com"
    assert parsed["Reply-To"] == "help@acme.test"
    assert parsed["Subject"] == "Spring news"
    assert parsed["Date"].datetime == DATE
    assert re.fullmatch(r"<[^<>@\s]+@acme\.test>", parsed["Message-ID"])
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@acme.test?subject=42>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    assert all(len(line) <= 998 for line in message.split(b"\r\n"))
    assert b"\n" not in message.replace(b"\r\n", b"")


def test_text_comes_first_then_html_and_both_decode_exactly() -> None:
    html = "<html><body><p>Grüße, Jané — “quotes” & 50% off</p></body></html>"
    text = "Grüße, Jané\n\nLine two with = sign and trailing space \n"
    parsed = parse(
        frame().build(
            rendered(html=html, text=text),
            to_email="j@example.com",
            list_unsubscribe_url=UNSUBSCRIBE,
            date=DATE,
        )
    )
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert parts[0].get_content().replace("\r\n", "\n") == text
    assert parts[1].get_content().replace("\r\n", "\n") == html


def test_plain_ascii_bodies_are_sent_7bit_and_others_quoted_printable() -> None:
    ascii_message = frame().build(
        rendered(), to_email="j@example.com", list_unsubscribe_url=UNSUBSCRIBE, date=DATE
    )
    assert ascii_message.count(b"Content-Transfer-Encoding: 7bit") == 2
    accented = frame().build(
        rendered(html="<p>Jané</p>"), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    assert accented.count(b"Content-Transfer-Encoding: quoted-printable") == 1
    long_line = "<p>" + "x" * 2000 + "</p>"
    message = frame().build(
        rendered(html=long_line), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    assert b"Content-Transfer-Encoding: quoted-printable" in message
    assert all(len(line) <= 998 for line in message.split(b"\r\n"))
    assert list(parse(message).iter_parts())[1].get_content() == long_line


def test_a_body_containing_the_boundary_is_encoded() -> None:
    message_frame = frame()
    probe = message_frame.build(
        rendered(), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    boundary = parse(probe).get_boundary()
    assert boundary is not None
    sneaky = f"before\n--{boundary}--\nafter\n"
    message = message_frame.build(
        rendered(text=sneaky), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    parts = list(parse(message).iter_parts())
    assert len(parts) == 2
    assert parts[0].get_content().replace("\r\n", "\n") == sneaky


def test_a_text_only_message_is_a_single_part() -> None:
    message = frame().build(
        rendered(html=None, text="Just text\n"),
        to_email="j@example.com",
        list_unsubscribe_url=UNSUBSCRIBE,
        date=DATE,
    )
    parsed = parse(message)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == "Just text\r\n"


def test_no_unsubscribe_url_means_no_list_unsubscribe_headers() -> None:
    parsed = parse(
        frame(reply_to=None).build(
            rendered(), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
        )
    )
    assert parsed["List-Unsubscribe"] is None
    assert parsed["List-Unsubscribe-Post"] is None
    assert parsed["Reply-To"] is None


def test_non_ascii_subject_and_name_are_rfc2047_encoded() -> None:
    subject = "Grüße, Jané — ваши новости 🌷"
    message = frame(from_name="Café Ünited, Inc.").build(
        rendered(subject=subject), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    headers = header_block(message)
    assert headers.isascii()
    assert b"=?utf-8?" in headers
    parsed = parse(message)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Café Ünited, Inc."


def test_long_subjects_are_folded() -> None:
    subject = "A rather long subject line " * 8
    message = frame().build(
        rendered(subject=subject.strip()),
        to_email="j@example.com",
        list_unsubscribe_url=None,
        date=DATE,
    )
    assert all(len(line) <= 78 for line in header_block(message).split(b"\r\n"))
    assert parse(message)["Subject"] == subject.strip()


def test_the_date_keeps_its_offset_and_must_be_aware() -> None:
    eastern = datetime(2026, 1, 5, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    parsed = parse(
        frame().build(rendered(), to_email="j@example.com", list_unsubscribe_url=None, date=eastern)
    )
    assert parsed["Date"] == "Mon, 05 Jan 2026 04:30:00 -0500"
    with pytest.raises(ValueError, match="timezone"):
        frame().build(
            rendered(),
            to_email="j@example.com",
            list_unsubscribe_url=None,
            date=datetime(2026, 1, 5),
        )


def test_a_given_message_id_is_used_and_checked() -> None:
    parsed = parse(
        frame().build(
            rendered(),
            to_email="j@example.com",
            list_unsubscribe_url=None,
            date=DATE,
            message_id="<delivery-42@acme.test>",
        )
    )
    assert parsed["Message-ID"] == "<delivery-42@acme.test>"
    for bad in (
        "delivery-42@acme.test",
        "<no-at-sign>",
        "<a b@acme.test>",
        "<x@acme.test>\r\nBcc: y",
    ):
        with pytest.raises(UnsafeHeaderError, match="Message-ID"):
            frame().build(
                rendered(),
                to_email="j@example.com",
                list_unsubscribe_url=None,
                date=DATE,
                message_id=bad,
            )


def test_unusual_but_valid_addresses_go_through_the_email_parser() -> None:
    for address in ('"jane doe"@example.com', "jane@[192.0.2.1]", "o'brien+tag@example.co.uk"):
        parsed = parse(
            frame().build(rendered(), to_email=address, list_unsubscribe_url=None, date=DATE)
        )
        assert parsed["To"].addresses[0].addr_spec == address


INJECTIONS = [
    "x\r\nBcc: victim@example.com",
    "x\nBcc: victim@example.com",
    "x\rBcc: victim@example.com",
    "x\x85Bcc: victim@example.com",
    "x\u2028Bcc: victim@example.com",
    "x\x0bBcc: victim@example.com",
    "x\x00y",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_header_injection_is_refused_everywhere(value: str) -> None:
    attempts: list[tuple[str, Callable[[], object]]] = [
        (
            "Subject",
            lambda: frame().build(
                rendered(subject=value),
                to_email="j@example.com",
                list_unsubscribe_url=None,
                date=DATE,
            ),
        ),
        ("From", lambda: frame(from_name=value)),
        ("From", lambda: frame(from_email=value)),
        ("Reply-To", lambda: frame(reply_to=value)),
        (
            "To",
            lambda: frame().build(rendered(), to_email=value, list_unsubscribe_url=None, date=DATE),
        ),
        (
            "List-Unsubscribe",
            lambda: frame().build(
                rendered(), to_email="j@example.com", list_unsubscribe_url=value, date=DATE
            ),
        ),
    ]
    for header, attempt in attempts:
        with pytest.raises(UnsafeHeaderError, match=header):
            attempt()


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com, victim@example.com",
        "Evil <a@example.com>",
        "a@example.com>",
        "a b@example.com",
        "nobody",
        "jané@example.com",
    ],
)
def test_a_to_address_must_be_exactly_one_address(address: str) -> None:
    with pytest.raises(UnsafeHeaderError, match="To header"):
        frame().build(rendered(), to_email=address, list_unsubscribe_url=None, date=DATE)


def test_list_unsubscribe_values_must_be_urls() -> None:
    with pytest.raises(UnsafeHeaderError, match="List-Unsubscribe"):
        frame().build(
            rendered(),
            to_email="j@example.com",
            list_unsubscribe_url="https://x.test/a>b",
            date=DATE,
        )
    with pytest.raises(UnsafeHeaderError, match="mailto"):
        frame().build(
            rendered(),
            to_email="j@example.com",
            list_unsubscribe_url=UNSUBSCRIBE,
            list_unsubscribe_mailto="unsubscribe@acme.test",
            date=DATE,
        )


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
        min_size=1,
        max_size=300,
    ).filter(lambda s: s.strip() == s and "  " not in s and "=?" not in s)
)
def test_any_single_line_subject_survives_the_round_trip(subject: str) -> None:
    message = frame().build(
        rendered(subject=subject), to_email="j@example.com", list_unsubscribe_url=None, date=DATE
    )
    assert header_block(message).isascii()
    assert parse(message)["Subject"] == subject


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    """(private key PEM, DNS TXT record) for a 2048-bit RSA DKIM key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def signed_message(key: DkimKey) -> bytes:
    return frame(dkim_key=key).build(
        rendered(subject="Grüße"),
        to_email="j@example.com",
        list_unsubscribe_url=UNSUBSCRIBE,
        list_unsubscribe_mailto="mailto:u@acme.test",
        date=DATE,
    )


def test_rsa_dkim_signature_verifies(rsa_key: tuple[bytes, bytes]) -> None:
    private, record = rsa_key
    message = signed_message(DkimKey("s2026", "acme.test", private))
    lookup = dns({b"s2026._domainkey.acme.test.": record})
    assert message.startswith(b"DKIM-Signature: ")
    assert dkim.verify(message, dnsfunc=lookup)
    signed = parse(message)["DKIM-Signature"]
    for header in ("list-unsubscribe", "list-unsubscribe-post", "from", "subject", "to"):
        assert header in signed.replace(" ", "").split("h=")[1].split(";")[0].split(":")
    tampered = message.replace(b"Subject: =?utf-8?", b"Subject: =?UTF-8?")
    assert not dkim.verify(tampered, dnsfunc=lookup)
    assert not dkim.verify(message.replace(b"Hello Jane", b"Hello Mallory"), dnsfunc=lookup)


def test_ed25519_dkim_signature_verifies() -> None:
    signing_key = nacl.signing.SigningKey.generate()
    seed = base64.b64encode(bytes(signing_key))
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(signing_key.verify_key))
    message = signed_message(DkimKey("e2026", "acme.test", seed, "ed25519-sha256"))
    assert dkim.verify(message, dnsfunc=dns({b"e2026._domainkey.acme.test.": record}))


def test_a_bad_dkim_key_fails_when_the_frame_is_made() -> None:
    with pytest.raises(ValueError, match=r"DKIM key for s1\._domainkey\.acme\.test"):
        frame(dkim_key=DkimKey("s1", "acme.test", b"not a key"))
