"""Signed tracking tokens: round trips, and refusal of anything tampered or misdirected."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode

from dripstone.config import load_settings
from dripstone.delivery.signing import (
    CLICK_ROUTE,
    OPEN_ROUTE,
    UNSUBSCRIBE_ROUTE,
    Click,
    TrackingTokens,
)
from tests.delivery.conftest import PUBLIC_URL, SECRET


def token_of(url: str, prefix: str, suffix: str = "") -> str:
    assert url.startswith(PUBLIC_URL + prefix)
    assert url.endswith(suffix)
    return url.removeprefix(PUBLIC_URL + prefix).removesuffix(suffix)


def test_click_round_trip(tokens: TrackingTokens) -> None:
    url = tokens.click_url(42, 3, "https://shop.example.com/spring?utm_source=news&x=1")
    token = token_of(url, "/t/c/")
    assert tokens.verify_click(token) == Click(
        42, 3, "https://shop.example.com/spring?utm_source=news&x=1"
    )


def test_open_and_unsubscribe_round_trip(tokens: TrackingTokens) -> None:
    assert tokens.verify_open(token_of(tokens.open_url(7), "/t/o/", ".gif")) == 7
    assert tokens.verify_unsubscribe(token_of(tokens.unsubscribe_url(9), "/t/u/")) == 9


def test_routes_match_the_urls(tokens: TrackingTokens) -> None:
    token = tokens.open_token(5)
    assert tokens.open_url(5) == PUBLIC_URL + OPEN_ROUTE.format(token=token)
    assert tokens.unsubscribe_url(5) == PUBLIC_URL + UNSUBSCRIBE_ROUTE.format(
        token=tokens.unsubscribe_token(5)
    )
    assert tokens.click_url(5, 1, "https://x.test/") == PUBLIC_URL + CLICK_ROUTE.format(
        token=tokens.click_token(5, 1, "https://x.test/")
    )


def test_tokens_are_url_safe(tokens: TrackingTokens) -> None:
    token = tokens.click_token(1, 1, "https://x.test/ä?q=a b&c=d/e+f")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize("position", [0, 5, -1, -10])
def test_tampered_click_token_is_rejected(tokens: TrackingTokens, position: int) -> None:
    token = tokens.click_token(42, 3, "https://shop.example.com/")
    at = position % len(token)
    flipped = "A" if token[at] != "A" else "B"
    tampered = token[:at] + flipped + token[at + 1 :]
    assert tokens.verify_click(tampered) is None


def test_a_forged_payload_with_a_real_signature_is_rejected(tokens: TrackingTokens) -> None:
    genuine = tokens.click_token(42, 3, "https://shop.example.com/")
    forged_payload = tokens.click_token(43, 3, "https://evil.example.net/").split(".")[0]
    forged = forged_payload + "." + genuine.split(".")[1]
    assert tokens.verify_click(forged) is None


def test_a_token_of_another_purpose_is_rejected(tokens: TrackingTokens) -> None:
    assert tokens.verify_unsubscribe(tokens.open_token(7)) is None
    assert tokens.verify_open(tokens.unsubscribe_token(7)) is None
    assert tokens.verify_click(tokens.open_token(7)) is None
    assert tokens.verify_open(tokens.click_token(7, 1, "https://x.test/")) is None


def test_a_token_signed_with_another_key_is_rejected(tokens: TrackingTokens) -> None:
    other = TrackingTokens("another-secret-that-is-also-long-enough-98765", PUBLIC_URL)
    assert tokens.verify_open(other.open_token(7)) is None
    assert tokens.verify_click(other.click_token(7, 1, "https://x.test/")) is None


@pytest.mark.parametrize("garbage", ["", ".", "abc", "abc.def", "ä.ö", "Nw", "Nw.", "x" * 500])
def test_garbage_is_rejected(tokens: TrackingTokens, garbage: str) -> None:
    assert tokens.verify_click(garbage) is None
    assert tokens.verify_open(garbage) is None
    assert tokens.verify_unsubscribe(garbage) is None


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "data:text/html,hi", "//evil.test/", "/relative"]
)
def test_only_http_targets_verify(tokens: TrackingTokens, target: str) -> None:
    assert tokens.verify_click(tokens.click_token(1, 1, target)) is None


def test_ids_must_be_positive_integers(tokens: TrackingTokens) -> None:
    assert tokens.verify_open(tokens.open_token(True)) is None
    assert tokens.verify_open(tokens.open_token(0)) is None
    assert tokens.verify_click(tokens.click_token(1, False, "https://x.test/")) is None


def test_from_settings_uses_the_secret_and_public_url(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, secret_key=SECRET, public_url="https://news.example.org/"
    )
    from_settings = TrackingTokens.from_settings(settings)
    assert from_settings.open_url(3).startswith("https://news.example.org/t/o/")
    assert TrackingTokens(SECRET, PUBLIC_URL).verify_open(from_settings.open_token(3)) == 3


@given(
    delivery_id=st.integers(min_value=1, max_value=2**53),
    html_id=st.integers(min_value=1, max_value=10_000),
    path=st.text(max_size=200),
)
def test_any_click_round_trips(delivery_id: int, html_id: int, path: str) -> None:
    tokens = TrackingTokens(SECRET, PUBLIC_URL)
    target = "https://shop.example.com/" + path
    token = tokens.click_token(delivery_id, html_id, target)
    assert tokens.verify_click(token) == Click(delivery_id, html_id, target)


def _payload(token: str) -> object:
    return json.loads(base64_decode(token.split(".")[0]))


def test_tokens_do_not_reveal_the_delivery_id(tokens: TrackingTokens) -> None:
    ids = range(1000, 1010)
    shown = [_payload(tokens.open_token(i)) for i in ids]
    shown += [_payload(tokens.unsubscribe_token(i)) for i in ids]
    shown += [_payload(tokens.click_token(i, 1, "https://x.test/"))[0] for i in ids]  # type: ignore[index]
    assert not set(shown) & set(ids)
    numbers = sorted({n for n in shown if isinstance(n, int)})  # one per delivery
    assert len(numbers) == 10
    assert all(b - a > 1000 for a, b in itertools.pairwise(numbers)), "no visible sequence"


def test_links_in_messages_sent_before_opaque_ids_still_work(tokens: TrackingTokens) -> None:
    def old(salt: str, payload: object) -> str:
        signer = {"digest_method": hashlib.sha256}  # the format of the tokens sent so far
        serializer = URLSafeSerializer(SECRET, f"dripstone.tracking.{salt}", signer_kwargs=signer)
        return str(serializer.dumps(payload))

    assert tokens.verify_open(old("open", 42)) == 42
    assert tokens.verify_unsubscribe(old("unsubscribe", 42)) == 42
    assert tokens.verify_click(old("click", [42, 3, "https://x.test/"])) == Click(
        42, 3, "https://x.test/"
    )
    assert tokens.verify_open(old("unsubscribe", 42)) is None
