"""Fixtures of the mailings and tracking tests: the API wired to a real SMTP server, and a
way to tick."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dripstone import db
from dripstone.config import Settings, load_settings
from dripstone.delivery.pipeline import close_pipeline
from dripstone.jobs.ticker import tick
from tests.conftest import SECRET
from tests.delivery.smtp_server import SmtpTestServer, smtp_server

__all__ = ["smtp_server"]


def smtp_settings(
    database_url: str, tmp_path: Path, smtp_server: SmtpTestServer, **overrides: Any
) -> Settings:
    """Settings that send to the test's SMTP server; `overrides` change any of them."""
    return load_settings(
        **{
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "queue_url": "memory://",
            "secret_key": SECRET,
            "job_batch_size": 50,
            "smtp_url": smtp_server.url,
            "public_url": "https://mail.example.com",
            "from_email": "news@example.com",
            "list_unsubscribe_mailto": "unsubscribe@example.com",
            **overrides,
        }
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(database_url, tmp_path, smtp_server)
    close_pipeline()


@pytest.fixture
def run_tick(database: db.Database) -> Callable[[], None]:
    """Call to do what the once-a-second tick does (tasks run inline in tests)."""

    def run() -> None:
        tick(database)

    return run
