"""Signed tokens for the public tracking URLs: click, open pixel and unsubscribe.

The renderer (`prepare.py`) builds these URLs into every message; the public tracking
endpoints verify them. Both go through `TrackingTokens`, so they agree on the format:

    {public_url}/t/c/{token}        click: (delivery_id, html_id, target_url), then redirect
    {public_url}/t/o/{token}.gif    open pixel: delivery_id
    {public_url}/t/u/{token}        unsubscribe page and RFC 8058 one-click POST: delivery_id

Tokens are itsdangerous signatures (HMAC-SHA256, key derived from the settings' secret key)
over compact JSON, each purpose with its own salt, so a token of one purpose never verifies as
another. They do not expire: an email is clicked years after it was sent. A click token
carries its target URL, so the redirect needs no database and cannot be pointed elsewhere.

Public interface:
    TrackingTokens(secret_key, public_url) / TrackingTokens.from_settings(settings)
      .click_url(delivery_id, html_id, target_url) -> str   .verify_click(token) -> Click | None
      .open_url(delivery_id) -> str                         .verify_open(token) -> int | None
      .unsubscribe_url(delivery_id) -> str                  .verify_unsubscribe(token) -> int | None
      .click_token / .open_token / .unsubscribe_token       the bare tokens
    CLICK_ROUTE, OPEN_ROUTE, UNSUBSCRIBE_ROUTE               paths for the tracking router
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer
from itsdangerous.signer import HMACAlgorithm

from dripstone.config import Settings

CLICK_PREFIX = "/t/c/"
OPEN_PREFIX = "/t/o/"
OPEN_SUFFIX = ".gif"
UNSUBSCRIBE_PREFIX = "/t/u/"
CLICK_ROUTE = CLICK_PREFIX + "{token}"
OPEN_ROUTE = OPEN_PREFIX + "{token}" + OPEN_SUFFIX
UNSUBSCRIBE_ROUTE = UNSUBSCRIBE_PREFIX + "{token}"

_CLICK_SALT = "dripstone.tracking.click"
_OPEN_SALT = "dripstone.tracking.open"
_UNSUBSCRIBE_SALT = "dripstone.tracking.unsubscribe"


@dataclass(frozen=True, slots=True)
class Click:
    """What a verified click token says: which delivery, which link, where to send the reader."""

    delivery_id: int
    html_id: int
    target_url: str


class _CompactJson:
    """itsdangerous' compact JSON, with one encoder made up front instead of one per token."""

    _encoder = json.JSONEncoder(separators=(",", ":"))

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return _CompactJson._encoder.encode(obj)

    @staticmethod
    def loads(payload: str | bytes, **_kwargs: Any) -> Any:
        return json.loads(payload)


class _Sha256Hmac(HMACAlgorithm):
    """HMAC-SHA256 in one call of the C `hmac.digest`, without a Python hmac object."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha256")


class _Signer(Signer):
    """An itsdangerous Signer that derives its key once rather than for every signature."""

    def __init__(self, secret_key: str, salt: str) -> None:
        super().__init__(
            secret_key, salt=salt, digest_method=hashlib.sha256, algorithm=_Sha256Hmac()
        )
        self._key = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._key if secret_key is None else super().derive_key(secret_key)


class _TokenSerializer(URLSafeSerializer):
    """itsdangerous' URL-safe serializer, tuned through its own extension points.

    A message carries ten tokens or more, so per-token costs add up. The stock serializer
    tries zlib on every payload (about 20 µs of compressor setup, for payloads of 60 bytes
    that rarely shrink), builds a new Signer per call, derives the key per signature and
    builds a JSON encoder per payload. The tokens are the same format: loading is unchanged
    and still accepts compressed payloads.
    """

    def __init__(self, secret_key: str, salt: str) -> None:
        super().__init__(secret_key, salt=salt, serializer=_CompactJson)
        self._signer = _Signer(secret_key, salt)

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is not None and salt != self._signer.salt:
            raise ValueError("tracking tokens are signed with their purpose's salt only")
        return self._signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


def _is_id(value: object) -> bool:
    # JSON true/false load as bool, a subclass of int: not an id.
    return type(value) is int and value > 0


class TrackingTokens:
    """Makes and verifies the signed tokens and URLs of one Dripstone installation."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")
        self._click = _TokenSerializer(secret_key, _CLICK_SALT)
        self._open = _TokenSerializer(secret_key, _OPEN_SALT)
        self._unsubscribe = _TokenSerializer(secret_key, _UNSUBSCRIBE_SALT)

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackingTokens:
        """Tokens signed with the installation's secret key, URLs under its public URL."""
        return cls(settings.resolved_secret_key, settings.public_url)

    def click_token(self, delivery_id: int, html_id: int, target_url: str) -> str:
        return self._click.dumps([delivery_id, html_id, target_url])

    def open_token(self, delivery_id: int) -> str:
        return self._open.dumps(delivery_id)

    def unsubscribe_token(self, delivery_id: int) -> str:
        return self._unsubscribe.dumps(delivery_id)

    def click_url(self, delivery_id: int, html_id: int, target_url: str) -> str:
        """The URL that records a click on link `html_id` and redirects to `target_url`."""
        return self.public_url + CLICK_PREFIX + self.click_token(delivery_id, html_id, target_url)

    def open_url(self, delivery_id: int) -> str:
        """The open pixel's URL."""
        return self.public_url + OPEN_PREFIX + self.open_token(delivery_id) + OPEN_SUFFIX

    def unsubscribe_url(self, delivery_id: int) -> str:
        """The unsubscribe page (GET) and one-click unsubscribe (POST) URL."""
        return self.public_url + UNSUBSCRIBE_PREFIX + self.unsubscribe_token(delivery_id)

    def verify_click(self, token: str) -> Click | None:
        """The click a token stands for, or None if it is not a genuine click token."""
        value = _loads(self._click, token)
        if not (isinstance(value, list) and len(value) == 3):
            return None
        delivery_id, html_id, target_url = value
        if not (_is_id(delivery_id) and _is_id(html_id) and isinstance(target_url, str)):
            return None
        # Only http(s) targets are ever signed; refusing others keeps this no open redirect
        # to javascript: or data: URLs even if that rule were broken elsewhere.
        if not target_url.lower().startswith(("http://", "https://")):
            return None
        return Click(delivery_id, html_id, target_url)

    def verify_open(self, token: str) -> int | None:
        """The delivery an open token stands for, or None."""
        value = _loads(self._open, token)
        return value if _is_id(value) else None

    def verify_unsubscribe(self, token: str) -> int | None:
        """The delivery an unsubscribe token stands for, or None."""
        value = _loads(self._unsubscribe, token)
        return value if _is_id(value) else None


def _loads(serializer: _TokenSerializer, token: str) -> Any:
    try:
        return serializer.loads(token)
    except BadData:  # a bad signature, or a payload that is not base64 or not JSON
        return None
