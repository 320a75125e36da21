"""The analytics tests send through a real SMTP server, with retries that give up after a
minute so that soft bounces happen within a test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from dripstone.config import Settings
from dripstone.delivery.pipeline import close_pipeline
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.conftest import run_tick, smtp_server, smtp_settings

__all__ = ["run_tick", "smtp_server"]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(
        database_url, tmp_path, smtp_server, retry_base_seconds=10, retry_horizon_seconds=60
    )
    close_pipeline()
