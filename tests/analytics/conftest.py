"""The analytics tests send through a real SMTP server, with retries that give up after a
minute so that soft bounces happen within a test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from dripstone.config import Settings, load_settings
from dripstone.delivery.pipeline import close_pipeline
from tests.conftest import SECRET
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.conftest import run_tick, smtp_server

__all__ = ["run_tick", "smtp_server"]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        job_batch_size=50,
        smtp_url=smtp_server.url,
        public_url="https://mail.example.com",
        from_email="news@example.com",
        list_unsubscribe_mailto="unsubscribe@example.com",
        retry_base_seconds=10,
        retry_horizon_seconds=60,
    )
    close_pipeline()
