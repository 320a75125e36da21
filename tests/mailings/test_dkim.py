"""DKIM through the whole pipeline: with the DRIPSTONE_DKIM_* settings, every message a send
delivers carries a signature that verifies against the published key."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import nacl.signing
import pytest

from dripstone.config import Settings, load_settings
from dripstone.delivery.pipeline import close_pipeline
from tests.conftest import SECRET, Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import add_subscribers, make_list, make_mailing, send

SIGNING_KEY = nacl.signing.SigningKey.generate()
RECORD = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(SIGNING_KEY.verify_key))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    key_file = tmp_path / "dkim.key"
    key_file.write_bytes(base64.b64encode(bytes(SIGNING_KEY)))
    yield load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        smtp_url=smtp_server.url,
        public_url="https://mail.example.com",
        from_email="news@example.com",
        dkim_domain="example.com",
        dkim_selector="mail2026",
        dkim_private_key_file=key_file,
    )
    close_pipeline()


def test_every_message_is_signed_and_verifies(
    api: Api, smtp_server: SmtpTestServer, run_tick: Callable[[], None]
) -> None:
    list_id = make_list(api, "News")
    add_subscribers(api, list_id, [{"email": "alex@example.com"}, {"email": "blake@example.com"}])
    send(api, make_mailing(api), list_id)
    run_tick()

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return RECORD if name == b"mail2026._domainkey.example.com." else None

    assert len(smtp_server.messages) == 2
    for message in smtp_server.messages:
        assert message.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(message.data, dnsfunc=lookup)
        assert b"Hi there" in message.data
        assert not dkim.verify(message.data.replace(b"Hi there", b"Hi Mallory"), dnsfunc=lookup)
