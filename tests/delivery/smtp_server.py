"""A real SMTP server for tests (aiosmtpd, in a thread, on a free port of 127.0.0.1).

It records every message it accepts, answers chosen recipients with a chosen reply
(`server.replies["full@example.com"] = "452 4.2.2 Mailbox full"`), counts connections, and
can require STARTTLS and AUTH (certificates from trustme). Reusable by any test module:

    from tests.delivery.smtp_server import SmtpTestServer, smtp_server  # the fixture
    # (it needs `shared_smtp_server`, which tests/conftest.py provides to every test)

    def test_x(smtp_server: SmtpTestServer) -> None:
        transport = SmtpTransport(SmtpServer.parse(smtp_server.url))
        ...
        assert smtp_server.messages[0].rcpt_tos == ["a@example.com"]
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # time.monotonic() when the server accepted it (crash tests time their recovery by it).
    received_at: float = field(default_factory=time.monotonic)


class RecordingHandler:
    """Accepts mail, except for recipients with a configured reply; records what it accepts."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self.replies: dict[str, str] = {}
        # Called as each message is accepted, before the reply goes back.
        self.on_message: Callable[[], None] | None = None
        self._lock = threading.Lock()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        with self._lock:
            self.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=envelope.original_content or envelope.content,
                )
            )
        if self.on_message is not None:
            self.on_message()
        return "250 2.0.0 Message accepted"


class _CountingController(Controller):
    """A Controller that counts the connections it serves (one SMTP instance each)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        return super().factory()  # type: ignore[no-untyped-call,no-any-return]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpTestServer:
    """A running aiosmtpd server; `restart()` brings it back on the same port."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self.authenticated: list[str] = []
        self._starttls_context = starttls_context
        self._implicit_tls_context = implicit_tls_context
        self._credentials = credentials
        self._controller: _CountingController | None = None
        self._connections_before = 0

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def replies(self) -> dict[str, str]:
        return self.handler.replies

    @property
    def connections(self) -> int:
        """Connections served since the last (re)start, the start-up probe not counted."""
        assert self._controller is not None
        return self._controller.connections - self._connections_before

    @property
    def url(self) -> str:
        scheme = "smtps" if self._implicit_tls_context else "smtp"
        return f"{scheme}://{self.host}:{self.port}?helo=client.test"

    def start(self) -> Self:
        kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 10.0}
        if self._starttls_context is not None:
            kwargs.update(tls_context=self._starttls_context, require_starttls=True)
        if self._implicit_tls_context is not None:
            # aiosmtpd cannot tell that a connection it accepted with TLS is TLS, and would
            # hide AUTH; the connection is encrypted from the first byte all the same.
            kwargs.update(ssl_context=self._implicit_tls_context, auth_require_tls=False)
        if self._credentials is not None:
            kwargs["authenticator"] = self._authenticate
        controller = _CountingController(self.handler, hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._connections_before = controller.connections  # the Controller's own probe
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def reset(self) -> None:
        """Forget earlier tests: their messages, replies, callback and connections; and run
        again if one of them stopped the server."""
        if self._controller is None:
            self.start()
        assert self._controller is not None
        self.handler.messages = []
        self.handler.replies = {}
        self.handler.on_message = None
        self.authenticated = []
        self._connections_before = self._controller.connections

    def restart(self) -> None:
        """Stop (dropping every open connection) and start again on the same port."""
        self.stop()
        self.start()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert self._credentials is not None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if self._credentials.get(login) == auth_data.password.decode():
                self.authenticated.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def shared_smtp_server() -> Iterator[SmtpTestServer]:
    """The session's plain SMTP server (one per xdist worker); tests take `smtp_server`."""
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def smtp_server(shared_smtp_server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    """A plain SMTP server (no TLS, no AUTH) that shows this test only its own messages,
    replies and connections."""
    shared_smtp_server.reset()
    yield shared_smtp_server
    shared_smtp_server.reset()
