"""Fixtures of the delivery tests: tokens, and the SMTP test server from smtp_server.py."""

from __future__ import annotations

import pytest

from dripstone.delivery.signing import TrackingTokens
from tests.delivery.smtp_server import smtp_server

__all__ = ["smtp_server", "tokens"]

SECRET = "delivery-test-secret-that-is-long-enough-0123456789"
PUBLIC_URL = "https://mail.acme.test"


@pytest.fixture
def tokens() -> TrackingTokens:
    return TrackingTokens(SECRET, PUBLIC_URL)
