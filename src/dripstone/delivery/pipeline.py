"""This process's delivery pipeline: its transport, URL signing, DKIM key, defaults and pacing,
configured once from the settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from dripstone.config import Settings
from dripstone.delivery.kinds import Content
from dripstone.delivery.mime import DkimKey, MessageFrame
from dripstone.delivery.prepare import PreparedMailing
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.transports import (
    Transport,
    TransportOptions,
    open_transport,
)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How dispatchers pace themselves and when they give up on an address."""

    retry_base_seconds: int = 60
    retry_horizon_seconds: int = 3 * 24 * 3600
    batch_size: int = 200
    # A claim not renewed for this long is taken back by the sweep: its dispatcher died.
    # The heartbeat renews it while the dispatcher is alive, however slow the relay.
    claim_seconds: int = 20
    # A dispatch task returns after this long, so sends cannot starve the queue's other work.
    budget_seconds: float = 10.0
    # Replies are recorded (and the next messages handed over) this many at a time: fewer
    # transactions, and at most this many messages per dispatcher in the crash window.
    record_every: int = 10

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th deferral: base, then doubling."""
        return timedelta(seconds=self.retry_base_seconds * 2 ** min(attempts - 1, 30))


@dataclass
class Pipeline:
    """What this process sends with: transport, URL signing, DKIM and defaults."""

    transport: Transport
    tokens: TrackingTokens
    policy: DeliveryPolicy
    default_from_email: str
    unsubscribe_mailto: str | None = None
    dkim_key: DkimKey | None = None
    _prepared: dict[tuple[Any, ...], tuple[PreparedMailing, MessageFrame]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepared(
        self, key: tuple[Any, ...], content: Content
    ) -> tuple[PreparedMailing, MessageFrame]:
        """The prepared templates and message frame for `content`, built once per key."""
        with self._lock:
            found = self._prepared.get(key)
        if found is not None:
            return found
        prepared = PreparedMailing(
            subject=content.subject, html=content.html, text=content.text, tokens=self.tokens
        )
        from_email = content.from_email or self.default_from_email
        frame = MessageFrame(
            from_email=from_email,
            from_name=content.from_name,
            reply_to=content.reply_to,
            message_id_domain=from_email.rpartition("@")[2],
            dkim_key=self.dkim_key,
        )
        with self._lock:
            if len(self._prepared) > 256:  # content of long-finished sends
                self._prepared.clear()
            self._prepared[key] = (prepared, frame)
        return prepared, frame


_pipeline: Pipeline | None = None


def configure_pipeline(settings: Settings, **options: Any) -> Pipeline:
    """Open this process's transport from the settings (`options` override TransportOptions)."""
    global _pipeline
    close_pipeline()
    transport = open_transport(
        settings.smtp_url,
        TransportOptions(
            data_dir=settings.data_dir,
            pool_size=settings.smtp_pool_size,
            max_per_second=settings.smtp_max_per_second or None,
            timeout=settings.smtp_timeout,
            **options,
        ),
    )
    dkim_key = None
    if settings.dkim_private_key_file is not None:
        dkim_key = _read_dkim_key(settings)
    _pipeline = Pipeline(
        transport=transport,
        tokens=TrackingTokens.from_settings(settings),
        policy=DeliveryPolicy(
            retry_base_seconds=settings.retry_base_seconds,
            retry_horizon_seconds=settings.retry_horizon_seconds,
            batch_size=settings.delivery_batch_size,
            claim_seconds=settings.delivery_claim_seconds,
            record_every=settings.delivery_record_every,
        ),
        default_from_email=settings.from_email,
        unsubscribe_mailto=_mailto(settings.list_unsubscribe_mailto),
        dkim_key=dkim_key,
    )
    return _pipeline


def _mailto(address: str) -> str | None:
    if not address:
        return None
    return address if address.lower().startswith("mailto:") else f"mailto:{address}"


def _read_dkim_key(settings: Settings) -> DkimKey:
    path = Path(settings.dkim_private_key_file or "")
    key = path.read_bytes().strip()
    algorithm = "rsa-sha256" if key.startswith(b"-----BEGIN") else "ed25519-sha256"
    return DkimKey(
        selector=settings.dkim_selector,
        domain=settings.dkim_domain,
        private_key=key,
        algorithm=algorithm,  # type: ignore[arg-type]
    )


def pipeline() -> Pipeline:
    """This process's pipeline (configure_pipeline must have run)."""
    if _pipeline is None:
        raise RuntimeError("dripstone.delivery.service.configure_pipeline() has not been called")
    return _pipeline


def default_from_email() -> str:
    """The From address of mailings and sends that name none."""
    return pipeline().default_from_email


def close_pipeline() -> None:
    global _pipeline
    if _pipeline is not None:
        _pipeline.transport.close()
        _pipeline = None
