"""Transports: the outbox folder, and SMTP against a real aiosmtpd server."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import trustme

from dripstone import clock
from dripstone.delivery.transports import (
    OutboxTransport,
    Outcome,
    SendRate,
    SmtpServer,
    Status,
    Transport,
    TransportOptions,
    _dot_stuffed,
    open_transport,
    register,
)
from tests.delivery.smtp_server import SmtpTestServer, free_port

MESSAGE = (
    b"From: news@acme.test\r\nTo: jane@example.com\r\nSubject: Hi\r\n\r\n"
    b"Hello Jane\r\n.a line starting with a dot\r\n"
)


def message_for(to: str) -> bytes:
    return MESSAGE.replace(b"jane@example.com", to.encode())


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


# The outbox


def test_the_outbox_writes_one_eml_file_per_message(tmp_path: Path) -> None:
    transport = open_transport("", TransportOptions(data_dir=tmp_path))
    assert isinstance(transport, OutboxTransport)
    outcomes = [
        transport.send(message_for(f"r{i}@example.com"), "bounce@acme.test", f"r{i}@example.com")
        for i in range(3)
    ]
    assert [outcome.status for outcome in outcomes] == [Status.DELIVERED] * 3
    assert all(outcome.code == 250 for outcome in outcomes)
    files = sorted((tmp_path / "outbox").iterdir())
    assert [path.suffix for path in files] == [".eml"] * 3
    assert [path.read_bytes() for path in files] == [
        message_for(f"r{i}@example.com") for i in range(3)
    ]
    assert files[0].name in outcomes[0].reply


def test_outbox_names_sort_by_time(tmp_path: Path, manual_clock: clock.ManualClock) -> None:
    transport = OutboxTransport(tmp_path)
    for hour in (0, 2, 1):
        manual_clock.advance(timedelta(hours=hour))
        transport.send(message_for(f"h{hour}@example.com"), "b@acme.test", "x@example.com")
    names = sorted(path.name for path in tmp_path.iterdir())
    assert [name[:15] for name in names] == [
        "20260105T090000",
        "20260105T110000",
        "20260105T120000",
    ]
    assert b"h2@" in (tmp_path / names[1]).read_bytes()


def test_the_outbox_is_safe_from_many_threads(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda i: transport.send(MESSAGE, "b@acme.test", f"{i}@x.test"), range(40))
        )
    assert all(outcome.status is Status.DELIVERED for outcome in outcomes)
    assert len(list(tmp_path.glob("*.eml"))) == 40
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_an_outbox_url_can_name_the_folder(tmp_path: Path) -> None:
    transport = open_transport(
        f"outbox://{tmp_path}/mail", TransportOptions(data_dir=tmp_path / "d")
    )
    assert isinstance(transport, OutboxTransport)
    assert transport.directory == tmp_path / "mail"


def test_an_unwritable_outbox_defers(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path / "outbox")
    (tmp_path / "outbox").rmdir()
    (tmp_path / "outbox").write_text("a file where the folder was")
    outcome = transport.send(MESSAGE, "b@acme.test", "j@example.com")
    assert outcome.status is Status.DEFERRED
    assert outcome.code is None


# URLs and the registry


def test_smtp_urls_are_parsed() -> None:
    assert SmtpServer.parse("smtp://relay.acme.test") == SmtpServer("relay.acme.test", 25)
    assert SmtpServer.parse("smtp://us%40er:p%3Ass@relay.acme.test:587?starttls=require") == (
        SmtpServer("relay.acme.test", 587, False, "require", "us@er", "p:ss")
    )
    assert SmtpServer.parse("smtps://u:p@relay.acme.test") == SmtpServer(
        "relay.acme.test", 465, True, "never", "u", "p"
    )
    assert SmtpServer.parse("smtp://relay.acme.test?helo=mta.acme.test&starttls=opportunistic") == (
        SmtpServer("relay.acme.test", 25, starttls="opportunistic", helo="mta.acme.test")
    )


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("smtp://", "names no host"),
        ("smtp://relay.acme.test:99999", "port"),
        ("smtp://relay.acme.test:abc", "port"),
        ("smtp://relay.acme.test/path", "path"),
        ("smtp://relay.acme.test?tls=yes", "unknown option 'tls'"),
        ("smtp://relay.acme.test?starttls=maybe", "starttls must be"),
        ("smtps://relay.acme.test?starttls=require", "TLS already"),
        ("smtp://user:secret-password@relay.acme.test", "need TLS"),
        ("smtp://user:secret-password@relay.acme.test?starttls=opportunistic", "need TLS"),
        ("smtp://user@relay.acme.test?starttls=require", "both a user and a password"),
        ("http://relay.acme.test", "unknown scheme 'http'"),
    ],
)
def test_bad_urls_are_refused_naming_the_setting(url: str, complaint: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DRIPSTONE_SMTP_URL") as caught:
        open_transport(url, TransportOptions(data_dir=tmp_path))
    assert complaint in str(caught.value)
    assert "secret-password" not in str(caught.value)


def test_the_password_never_shows_in_repr() -> None:
    server = SmtpServer.parse("smtps://user:secret-password@relay.acme.test")
    assert "secret-password" not in repr(server)


def test_transports_register_by_scheme(tmp_path: Path) -> None:
    @register
    class Recorder(Transport):
        schemes = ("recorder-test",)

        def __init__(self) -> None:
            self.sent: list[tuple[bytes, str, str]] = []

        @classmethod
        def from_url(cls, url: str, options: TransportOptions) -> Recorder:
            return cls()

        def send(self, message: bytes, from_addr: str, to_addr: str) -> Outcome:
            self.sent.append((message, from_addr, to_addr))
            return Outcome.from_reply(250, "ok")

    transport = open_transport("recorder-test://", TransportOptions(data_dir=tmp_path))
    assert isinstance(transport, Recorder)
    assert transport.send(MESSAGE, "a@x.test", "b@x.test").status is Status.DELIVERED


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (250, Status.DELIVERED),
        (251, Status.DELIVERED),
        (421, Status.DEFERRED),
        (451, Status.DEFERRED),
        (550, Status.BOUNCED),
        (554, Status.BOUNCED),
        (354, Status.DEFERRED),
    ],
)
def test_replies_decide_the_outcome(code: int, status: Status) -> None:
    outcome = Outcome.from_reply(code, b"5.1.1 words")
    assert (outcome.status, outcome.code, outcome.reply) == (status, code, "5.1.1 words")


# The send rate


def test_the_send_rate_paces_sends_without_sleeping() -> None:
    fake = FakeTime()
    rate = SendRate(4, monotonic=fake.monotonic, sleep=fake.sleep)
    for _ in range(5):
        rate.wait()
    assert fake.sleeps == [0.25, 0.5, 0.75, 1.0]
    fake.now += 10  # idle for a while: the next send goes at once, no burst is saved up
    rate.wait()
    rate.wait()
    assert fake.sleeps[4:] == [0.25]


def test_the_send_rate_is_shared_by_threads() -> None:
    fake = FakeTime()
    rate = SendRate(10, monotonic=fake.monotonic, sleep=fake.sleep)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: rate.wait(), range(20)))
    assert sorted(round(s, 6) for s in fake.sleeps) == [round(0.1 * i, 6) for i in range(1, 20)]


# SMTP


def smtp_transport(server: SmtpTestServer, **options: object) -> Transport:
    return open_transport(server.url, TransportOptions(data_dir=Path("."), timeout=10, **options))  # type: ignore[arg-type]


def test_a_2xx_reply_is_delivered(smtp_server: SmtpTestServer) -> None:
    with smtp_transport(smtp_server) as transport:
        outcome = transport.send(MESSAGE, "bounce@acme.test", "jane@example.com")
    assert outcome == Outcome(Status.DELIVERED, 250, "2.0.0 Message accepted")
    [received] = smtp_server.messages
    assert (received.mail_from, received.rcpt_tos) == ("bounce@acme.test", ["jane@example.com"])
    assert received.data == MESSAGE  # the leading dot came through, stuffed and unstuffed


def test_a_4xx_reply_is_deferred(smtp_server: SmtpTestServer) -> None:
    smtp_server.replies["full@example.com"] = "452 4.2.2 Mailbox full"
    with smtp_transport(smtp_server) as transport:
        outcome = transport.send(MESSAGE, "bounce@acme.test", "full@example.com")
        assert outcome == Outcome(Status.DEFERRED, 452, "4.2.2 Mailbox full")
        # The connection survives a refusal and carries the next message.
        assert transport.send(MESSAGE, "b@acme.test", "jane@example.com").status is Status.DELIVERED
    assert smtp_server.connections == 1
    assert len(smtp_server.messages) == 1


def test_a_5xx_reply_is_a_bounce(smtp_server: SmtpTestServer) -> None:
    smtp_server.replies["gone@example.com"] = "550 5.1.1 No such user"
    with smtp_transport(smtp_server) as transport:
        outcome = transport.send(MESSAGE, "bounce@acme.test", "gone@example.com")
    assert outcome == Outcome(Status.BOUNCED, 550, "5.1.1 No such user")
    assert smtp_server.messages == []


def test_a_server_that_is_down_defers() -> None:
    transport = open_transport(
        f"smtp://127.0.0.1:{free_port()}", TransportOptions(data_dir=Path("."), timeout=5)
    )
    outcome = transport.send(MESSAGE, "bounce@acme.test", "jane@example.com")
    assert outcome.status is Status.DEFERRED
    assert outcome.code is None
    assert "Connection" in outcome.reply


def test_many_messages_reuse_one_connection(smtp_server: SmtpTestServer) -> None:
    with smtp_transport(smtp_server) as transport:
        outcomes = [
            transport.send(message_for(f"r{i}@example.com"), "b@acme.test", f"r{i}@example.com")
            for i in range(25)
        ]
    assert all(outcome.status is Status.DELIVERED for outcome in outcomes)
    assert smtp_server.connections == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [[f"r{i}@example.com"] for i in range(25)]


def test_threads_share_a_pool_of_at_most_pool_size_connections(
    smtp_server: SmtpTestServer,
) -> None:
    with smtp_transport(smtp_server, pool_size=2) as transport, ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(
                lambda i: transport.send(MESSAGE, "b@acme.test", f"t{i}@example.com"), range(40)
            )
        )
    assert all(outcome.status is Status.DELIVERED for outcome in outcomes)
    assert len(smtp_server.messages) == 40
    assert 1 <= smtp_server.connections <= 2


def test_a_dead_pooled_connection_is_replaced_once_transparently(
    smtp_server: SmtpTestServer,
) -> None:
    with smtp_transport(smtp_server) as transport:
        assert transport.send(MESSAGE, "b@acme.test", "one@example.com").status is Status.DELIVERED
        smtp_server.restart()  # the pooled connection is now closed on the server's side
        outcome = transport.send(MESSAGE, "b@acme.test", "two@example.com")
        assert outcome.status is Status.DELIVERED
        assert smtp_server.connections == 1
        smtp_server.stop()  # and now there is no server at all: deferred, not an exception
        assert transport.send(MESSAGE, "b@acme.test", "three@example.com").status is Status.DEFERRED
    assert [m.rcpt_tos for m in smtp_server.messages] == [["one@example.com"], ["two@example.com"]]


def test_the_rate_limit_applies_to_smtp_sends(smtp_server: SmtpTestServer) -> None:
    fake = FakeTime()
    with smtp_transport(
        smtp_server, max_per_second=50, monotonic=fake.monotonic, sleep=fake.sleep
    ) as transport:
        for i in range(3):
            transport.send(MESSAGE, "b@acme.test", f"r{i}@example.com")
    assert fake.sleeps == [pytest.approx(0.02), pytest.approx(0.04)]


# TLS and AUTH, with certificates from trustme


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def client_tls(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    return context


@pytest.fixture
def starttls_server(server_tls: ssl.SSLContext) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(starttls_context=server_tls, credentials={"mailer": "s3cret"}) as server:
        yield server


def authenticated_url(server: SmtpTestServer, password: str, scheme: str = "smtp") -> str:
    query = "?starttls=require&helo=client.test" if scheme == "smtp" else "?helo=client.test"
    return f"{scheme}://mailer:{password}@{server.host}:{server.port}{query}"


def test_auth_over_starttls(starttls_server: SmtpTestServer, client_tls: ssl.SSLContext) -> None:
    options = TransportOptions(data_dir=Path("."), timeout=10, tls_context=client_tls)
    with open_transport(authenticated_url(starttls_server, "s3cret"), options) as transport:
        outcomes = [transport.send(MESSAGE, "b@acme.test", f"r{i}@example.com") for i in range(3)]
    assert all(outcome.status is Status.DELIVERED for outcome in outcomes)
    assert starttls_server.authenticated == ["mailer"]
    assert starttls_server.connections == 1


def test_a_wrong_password_defers_and_never_bounces(
    starttls_server: SmtpTestServer, client_tls: ssl.SSLContext
) -> None:
    options = TransportOptions(data_dir=Path("."), timeout=10, tls_context=client_tls)
    with open_transport(authenticated_url(starttls_server, "wrong"), options) as transport:
        outcome = transport.send(MESSAGE, "b@acme.test", "jane@example.com")
    assert outcome.status is Status.DEFERRED
    assert outcome.code == 535
    assert starttls_server.messages == []


def test_an_untrusted_certificate_defers(starttls_server: SmtpTestServer) -> None:
    options = TransportOptions(data_dir=Path("."), timeout=10)  # the system CAs only
    with open_transport(authenticated_url(starttls_server, "s3cret"), options) as transport:
        outcome = transport.send(MESSAGE, "b@acme.test", "jane@example.com")
    assert outcome.status is Status.DEFERRED
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.reply


def test_required_starttls_that_the_server_lacks_defers(smtp_server: SmtpTestServer) -> None:
    url = f"smtp://{smtp_server.host}:{smtp_server.port}?starttls=require"
    with open_transport(url, TransportOptions(data_dir=Path("."), timeout=10)) as transport:
        outcome = transport.send(MESSAGE, "b@acme.test", "jane@example.com")
    assert outcome.status is Status.DEFERRED
    assert "STARTTLS" in outcome.reply
    assert smtp_server.messages == []


def test_smtps_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with SmtpTestServer(
        implicit_tls_context=server_tls, credentials={"mailer": "s3cret"}
    ) as server:
        options = TransportOptions(data_dir=Path("."), timeout=10, tls_context=client_tls)
        with open_transport(authenticated_url(server, "s3cret", "smtps"), options) as transport:
            outcome = transport.send(MESSAGE, "b@acme.test", "jane@example.com")
        assert outcome.status is Status.DELIVERED
        assert server.authenticated == ["mailer"]
        assert len(server.messages) == 1


@pytest.mark.parametrize("address", ["a@x.test\r\nRCPT TO:<b@x.test>", "jané@x.test", "a b@x.test"])
def test_envelope_addresses_are_checked(smtp_server: SmtpTestServer, address: str) -> None:
    with smtp_transport(smtp_server) as transport, pytest.raises(ValueError, match="envelope"):
        transport.send(MESSAGE, "b@acme.test", address)
    assert smtp_server.messages == []


def test_dot_stuffing_doubles_leading_dots_only() -> None:
    assert _dot_stuffed(b".a\r\nb.c\r\n.\r\n..d") == b"..a\r\nb.c\r\n..\r\n...d\r\n.\r\n"
    assert _dot_stuffed(b"plain\r\n") == b"plain\r\n.\r\n"
