"""Transports: how a built message leaves Dripstone, chosen by the scheme of DRIPSTONE_SMTP_URL.

    transport = open_transport(smtp_url, TransportOptions(data_dir=settings.data_dir))
    outcome = transport.send(message, from_addr, to_addr)
    if outcome.status is Status.DELIVERED: ...   # 2xx: mark the delivery sent
    elif outcome.status is Status.DEFERRED: ...  # 4xx, or no answer: retry with backoff
    else: ...                                    # BOUNCED, 5xx: a hard bounce, suppress
    transport.close()

Transports register themselves by URL scheme (`@register`, the plugin pattern of Netflix
Dispatch); `open_transport` picks one. An empty URL means the outbox. `send` never raises for
a delivery failure: whatever happens becomes an Outcome with the SMTP code and reply text.

- `outbox://` (the default; `outbox:///some/dir` for another folder): one `.eml` file per
  message in `{data_dir}/outbox/`, written to a temporary name, flushed to disk, then
  renamed, so a reader never sees half a message. Names start with the time (from
  dripstone.clock) and sort by it.
- `smtp://[user:pass@]host[:25][?starttls=require|opportunistic|never][&helo=name]` and
  `smtps://user:pass@host[:465]` (TLS from the first byte). Plain `smtp://` uses no TLS
  unless asked; a user and password are refused without TLS (`smtps://` or
  `starttls=require`), so credentials never cross the network in clear. Certificates are
  checked against the system's CAs unless `TransportOptions.tls_context` says otherwise.

SMTP replies decide the outcome only where they are about the recipient or the message:
2xx to DATA is delivered; 5xx to RCPT or DATA is a bounce; 4xx anywhere is deferred, and so
is every failure to connect, greet, start TLS or log in, and a refused MAIL FROM, whatever
the code: those are about Dripstone's own configuration and must never suppress the address.

`SmtpTransport` is thread-safe and keeps up to `pool_size` connections open, reusing them
across messages. A pooled connection the server closed while it sat idle shows at the first
command (MAIL FROM, before any of the message is sent) and is replaced, once, transparently;
a failure after that point is deferred rather than retried, since the message might have
been taken. An optional rate limit (`max_per_second`) paces the threads of one transport
together; it is per process, so a global limit is divided among the workers.

The rate limit is `SendRate`, a small pacing bucket on an injectable monotonic clock, rather
than pyrate-limiter (installed already, for schemathesis): its blocking wait calls
`time.sleep` itself and it runs a background leak thread, so it could be neither tested
without sleeping nor used without a thread of its own. dripstone.clock is a wall clock,
which can jump; pacing needs a monotonic one.

Public interface:
    Status                         DELIVERED / DEFERRED / BOUNCED
    Outcome(status, code, reply)   .from_reply(code, reply), .no_reply(reason)
    Transport                      .send(message, from_addr, to_addr) -> Outcome, .close(),
                                   a context manager; subclasses set `schemes`, `from_url`
    register(transport_class)      class decorator: the class serves its `schemes`
    open_transport(url, options) -> Transport
    TransportOptions(data_dir, pool_size=4, max_per_second=None, timeout=30.0,
                     tls_context=None, monotonic=time.monotonic, sleep=time.sleep)
    OutboxTransport(directory)
    SmtpTransport(server, pool_size=4, timeout=30.0, tls_context=None, rate=None)
    SmtpServer.parse(url) -> SmtpServer            ValueError naming DRIPSTONE_SMTP_URL
    SendRate(per_second, monotonic=, sleep=).wait()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import smtplib
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, Self, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from dripstone import clock

SETTING = "DRIPSTONE_SMTP_URL"
# Characters that would end or break the <path> of MAIL FROM:<...> and RCPT TO:<...>.
_NOT_IN_PATH = frozenset(" <>")


class Status(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: its status, and the SMTP code and text that decided it."""

    status: Status
    code: int | None  # None when no SMTP reply decided it (the connection failed)
    reply: str

    @classmethod
    def from_reply(cls, code: int, reply: str | bytes) -> Outcome:
        """2xx delivered, 5xx bounced, anything else deferred."""
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
        if 200 <= code < 300:
            return cls(Status.DELIVERED, code, text)
        if 500 <= code < 600:
            return cls(Status.BOUNCED, code, text)
        return cls(Status.DEFERRED, code, text)

    @classmethod
    def no_reply(cls, reason: BaseException | str) -> Outcome:
        """Deferred: the server could not be reached or would not take mail from us."""
        if isinstance(reason, smtplib.SMTPResponseException):
            text = reason.smtp_error
            message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            return cls(Status.DEFERRED, reason.smtp_code, message)
        if isinstance(reason, BaseException):
            return cls(Status.DEFERRED, None, f"{type(reason).__name__}: {reason}")
        return cls(Status.DEFERRED, None, reason)


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """What a transport needs besides its URL (from the settings, or a test)."""

    data_dir: Path
    pool_size: int = 4
    max_per_second: float | None = None
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None  # default: the system's trusted CAs
    monotonic: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)


class Transport(ABC):
    """Sends built messages somewhere; subclasses register for their URL schemes."""

    schemes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, options: TransportOptions) -> Self:
        """The transport a DRIPSTONE_SMTP_URL of one of `schemes` describes."""

    @abstractmethod
    def send(self, message: bytes, from_addr: str, to_addr: str) -> Outcome:
        """Send one message to one envelope recipient; never raises for delivery failures."""

    def close(self) -> None:  # noqa: B027  (an optional hook: most transports hold nothing)
        """Release connections or files held between messages."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_TRANSPORTS: dict[str, type[Transport]] = {}
T = TypeVar("T", bound=type[Transport])


def register(transport: T) -> T:
    """Class decorator: make `transport` the one for each of its URL schemes."""
    for scheme in transport.schemes:
        _TRANSPORTS[scheme] = transport
    return transport


def open_transport(url: str, options: TransportOptions) -> Transport:
    """The transport for `url` (DRIPSTONE_SMTP_URL); empty means the outbox."""
    url = url.strip() or "outbox://"
    scheme = urlsplit(url).scheme.lower()
    transport = _TRANSPORTS.get(scheme)
    if transport is None:
        known = ", ".join(f"{name}://" for name in sorted(_TRANSPORTS))
        raise ValueError(f"{SETTING}: unknown scheme {scheme!r}; use one of {known}")
    return transport.from_url(url, options)


@register
class OutboxTransport(Transport):
    """Writes each message as an .eml file in a folder: mail out without an SMTP server."""

    schemes = ("outbox",)
    # Process-wide, so two transports on one folder never pick the same name.
    _sequence = itertools.count()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str, options: TransportOptions) -> Self:
        path = unquote(urlsplit(url).path)
        return cls(Path(path) if path not in ("", "/") else options.data_dir / "outbox")

    def send(self, message: bytes, from_addr: str, to_addr: str) -> Outcome:
        # Time first, so names sort by time; pid and sequence make them unique.
        name = f"{clock.now():%Y%m%dT%H%M%S.%fZ}-{os.getpid()}-{next(self._sequence):08d}.eml"
        temporary = self.directory / f".{name}.tmp"
        try:
            with temporary.open("wb") as file:
                file.write(message)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(self.directory / name)
        except OSError as exc:  # a full disk is worth a retry, like a busy server
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            return Outcome.no_reply(exc)
        return Outcome(Status.DELIVERED, 250, f"written to the outbox as {name}")


StartTls = Literal["require", "opportunistic", "never"]


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """An SMTP relay, as DRIPSTONE_SMTP_URL describes it."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: StartTls = "never"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    helo: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """Read an smtp:// or smtps:// URL; ValueError naming DRIPSTONE_SMTP_URL if it is bad."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError(f"{SETTING}: must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError(f"{SETTING}: names no host (smtp://host:port)")
        try:
            port = parts.port or (465 if scheme == "smtps" else 25)
        except ValueError:
            raise ValueError(f"{SETTING}: the port must be a number from 1 to 65535") from None
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError(f"{SETTING}: must not have a path or #fragment")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - {"starttls", "helo"})
        if unknown:
            raise ValueError(f"{SETTING}: unknown option {unknown[0]!r} (known: starttls, helo)")
        starttls = options.get("starttls", "never")
        if starttls not in ("require", "opportunistic", "never"):
            raise ValueError(f"{SETTING}: starttls must be require, opportunistic or never")
        if scheme == "smtps" and starttls != "never":
            raise ValueError(f"{SETTING}: smtps:// is TLS already; drop starttls")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError(f"{SETTING}: give both a user and a password, or neither")
        if username and scheme == "smtp" and starttls != "require":
            raise ValueError(
                f"{SETTING}: a user and password need TLS: use smtps:// or add ?starttls=require"
            )
        return cls(
            host=parts.hostname,
            port=port,
            implicit_tls=scheme == "smtps",
            starttls=starttls,  # type: ignore[arg-type]  # checked against the Literal above
            username=username,
            password=password,
            helo=options.get("helo") or None,
        )


class SendRate:
    """Paces sends to at most `per_second`, evenly spaced, across all threads that share it."""

    def __init__(
        self,
        per_second: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the send rate must be positive")
        self._interval = 1.0 / per_second
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = monotonic()

    def wait(self) -> None:
        """Block until this caller's turn; turns are handed out in call order."""
        with self._lock:
            now = self._monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        # Sleep outside the lock: later callers reserve later turns meanwhile.
        if start > now:
            self._sleep(start - now)


class _DeadConnection(Exception):
    """A pooled connection turned out to be closed before the message was offered."""


@register
class SmtpTransport(Transport):
    """Sends through an SMTP relay over a small pool of reused connections."""

    schemes = ("smtp", "smtps")

    def __init__(
        self,
        server: SmtpServer,
        *,
        pool_size: int = 4,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        rate: SendRate | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("the SMTP pool needs at least one connection")
        self.server = server
        self._timeout = timeout
        self._tls_context = tls_context or ssl.create_default_context()
        self._rate = rate
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._idle: list[smtplib.SMTP] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, options: TransportOptions) -> Self:
        rate = None
        if options.max_per_second:
            rate = SendRate(
                options.max_per_second, monotonic=options.monotonic, sleep=options.sleep
            )
        return cls(
            SmtpServer.parse(url),
            pool_size=options.pool_size,
            timeout=options.timeout,
            tls_context=options.tls_context,
            rate=rate,
        )

    def send(self, message: bytes, from_addr: str, to_addr: str) -> Outcome:
        for address in (from_addr, to_addr):
            # A caller's mistake, not a delivery failure: SMTP without SMTPUTF8 takes ASCII
            # addresses only, and a line break would end the command early.
            if not address.isascii() or not address.isprintable() or _NOT_IN_PATH & set(address):
                raise ValueError(f"{address!r} cannot be an SMTP envelope address")
        if self._rate is not None:
            self._rate.wait()
        with self._slots:
            pooled = self._take_idle()
            if pooled is not None:
                try:
                    return self._transact(pooled, message, from_addr, to_addr, reused=True)
                except _DeadConnection:
                    pass  # closed while idle: once more, on a new connection
            try:
                connection = self._connect()
            except (OSError, smtplib.SMTPException) as exc:
                return Outcome.no_reply(exc)
            try:
                return self._transact(connection, message, from_addr, to_addr, reused=False)
            except _DeadConnection as exc:
                return Outcome.no_reply(exc.__cause__ or exc)

    def close(self) -> None:
        """Say QUIT on every idle connection; connections in use are closed when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            _quit(connection)

    def _take_idle(self) -> smtplib.SMTP | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection: smtplib.SMTP) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        _quit(connection)

    def _connect(self) -> smtplib.SMTP:
        server = self.server
        connection: smtplib.SMTP
        if server.implicit_tls:
            connection = smtplib.SMTP_SSL(
                server.host,
                server.port,
                local_hostname=server.helo,
                timeout=self._timeout,
                context=self._tls_context,
            )
        else:
            connection = smtplib.SMTP(
                server.host, server.port, local_hostname=server.helo, timeout=self._timeout
            )
        try:
            connection.ehlo_or_helo_if_needed()
            if server.starttls == "require" or (
                server.starttls == "opportunistic" and connection.has_extn("starttls")
            ):
                code, reply = connection.starttls(context=self._tls_context)
                if code != 220:  # smtplib returns a refusal instead of raising it
                    raise smtplib.SMTPResponseException(code, reply)
                connection.ehlo()
            if server.username is not None and server.password is not None:
                connection.login(server.username, server.password)
        except BaseException:
            connection.close()
            raise
        return connection

    def _transact(
        self,
        connection: smtplib.SMTP,
        message: bytes,
        from_addr: str,
        to_addr: str,
        *,
        reused: bool,
    ) -> Outcome:
        """MAIL, RCPT, DATA on `connection`; it goes back to the pool if still usable."""
        try:
            code, reply = connection.docmd("mail", f"FROM:<{from_addr}>")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            connection.close()
            raise _DeadConnection from exc
        if code == 421 and reused:  # a "closing" notice the server left while we were idle
            connection.close()
            raise _DeadConnection(reply.decode("utf-8", "replace"))
        try:
            if code != 250:
                outcome = Outcome.no_reply(smtplib.SMTPSenderRefused(code, reply, from_addr))
            else:
                outcome = self._recipient_and_data(connection, message, to_addr)
            if outcome.status is not Status.DELIVERED and outcome.code != 421:
                connection.rset()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            connection.close()
            return Outcome.no_reply(exc)
        if outcome.code == 421:  # the server is closing this connection
            connection.close()
        else:
            self._give_back(connection)
        return outcome

    def _recipient_and_data(
        self, connection: smtplib.SMTP, message: bytes, to_addr: str
    ) -> Outcome:
        code, reply = connection.docmd("rcpt", f"TO:<{to_addr}>")
        if code not in (250, 251):
            return Outcome.from_reply(code, reply)
        code, reply = connection.docmd("data")
        if code != 354:  # DATA itself refused, before the content
            return Outcome.from_reply(code, reply)
        connection.send(_dot_stuffed(message))
        code, reply = connection.getreply()
        return Outcome.from_reply(code, reply)


def _dot_stuffed(message: bytes) -> bytes:
    """`message` as DATA content: leading dots doubled, then the closing dot (RFC 5321 4.5.2).

    smtplib's own `data()` does this with a multiline regular expression, about 100 µs for
    20 KB, a quarter of the CPU a message costs in all; `bytes.replace` takes a few. The
    commands around it are smtplib's too (`docmd`), without `mail()`'s and `rcpt()`'s
    address re-parsing, since the envelope addresses are checked on the way in.
    """
    stuffed = message.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()
