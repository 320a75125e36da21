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

The delivery id in a token is scrambled by a keyed permutation of 64-bit numbers (a
four-round Feistel network over HMAC-SHA256, key derived from the secret key): ids are
sequential across all accounts, and a readable one would tell anyone with two emails how
many messages the installation sends. Unscrambling gives the id back, so tracking still
looks deliveries up by primary key. Tokens made before the scrambling (their own salts)
still verify: links in messages already sent keep working.

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
_OPAQUE = ".opaque"  # salt suffix of the tokens whose delivery id is scrambled
_ID_KEY_SALT = b"dripstone.tracking.delivery-id"
_HALF = 32
_HALF_MASK = (1 << _HALF) - 1
_ROUNDS = 4


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


class _IdScrambler:
    """A keyed permutation of the numbers 0 .. 2**64-1 (a balanced Feistel network)."""

    def __init__(self, secret_key: str) -> None:
        key = hmac.digest(secret_key.encode(), _ID_KEY_SALT, "sha256")
        self._keys = [hmac.digest(key, bytes([n]), "sha256") for n in range(_ROUNDS)]

    def _round(self, n: int, half: int) -> int:
        digest = hmac.digest(self._keys[n], half.to_bytes(4, "big"), "sha256")
        return int.from_bytes(digest[:4], "big")

    def scramble(self, value: Any) -> Any:
        """`value` scrambled when it is a 64-bit id; anything else unchanged (never valid)."""
        if type(value) is not int or not 0 <= value < 1 << (2 * _HALF):
            return value
        left, right = value >> _HALF, value & _HALF_MASK
        for n in range(_ROUNDS):
            left, right = right, left ^ self._round(n, right)
        return (left << _HALF) | right

    def unscramble(self, value: Any) -> Any:
        if type(value) is not int or not 0 <= value < 1 << (2 * _HALF):
            return None
        left, right = value >> _HALF, value & _HALF_MASK
        for n in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(n, left), left
        return (left << _HALF) | right


class TrackingTokens:
    """Makes and verifies the signed tokens and URLs of one Dripstone installation."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")
        self._ids = _IdScrambler(secret_key)
        self._click = _TokenSerializer(secret_key, _CLICK_SALT + _OPAQUE)
        self._open = _TokenSerializer(secret_key, _OPEN_SALT + _OPAQUE)
        self._unsubscribe = _TokenSerializer(secret_key, _UNSUBSCRIBE_SALT + _OPAQUE)
        self._old_click = _TokenSerializer(secret_key, _CLICK_SALT)
        self._old_open = _TokenSerializer(secret_key, _OPEN_SALT)
        self._old_unsubscribe = _TokenSerializer(secret_key, _UNSUBSCRIBE_SALT)
        self._last: tuple[int, Any] = (0, self._ids.scramble(0))  # one message, many links

    def _scrambled(self, delivery_id: int) -> Any:
        last_id, last = self._last
        if type(delivery_id) is int and delivery_id == last_id:
            return last
        scrambled = self._ids.scramble(delivery_id)
        if type(delivery_id) is int:
            self._last = (delivery_id, scrambled)
        return scrambled

    def public_id(self, delivery_id: int) -> str:
        """The delivery's id as accounts see it: opaque, so it does not tell how many messages
        the installation has sent."""
        return format(self._scrambled(delivery_id), "016x")

    def _payload(self, opaque: _TokenSerializer, old: _TokenSerializer, token: str) -> Any:
        value = _loads(opaque, token)
        if value is None:
            return _loads(old, token)
        if isinstance(value, list) and value:
            return [self._ids.unscramble(value[0]), *value[1:]]
        return self._ids.unscramble(value)

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackingTokens:
        """Tokens signed with the installation's secret key, URLs under its public URL."""
        return cls(settings.resolved_secret_key, settings.public_url)

    def click_token(self, delivery_id: int, html_id: int, target_url: str) -> str:
        return self._click.dumps([self._scrambled(delivery_id), html_id, target_url])

    def open_token(self, delivery_id: int) -> str:
        return self._open.dumps(self._scrambled(delivery_id))

    def unsubscribe_token(self, delivery_id: int) -> str:
        return self._unsubscribe.dumps(self._scrambled(delivery_id))

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
        value = self._payload(self._click, self._old_click, token)
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
        value = self._payload(self._open, self._old_open, token)
        return value if _is_id(value) else None

    def verify_unsubscribe(self, token: str) -> int | None:
        """The delivery an unsubscribe token stands for, or None."""
        value = self._payload(self._unsubscribe, self._old_unsubscribe, token)
        return value if _is_id(value) else None


def _loads(serializer: _TokenSerializer, token: str) -> Any:
    try:
        return serializer.loads(token)
    except BadData:  # a bad signature, or a payload that is not base64 or not JSON
        return None
