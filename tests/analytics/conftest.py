"""The analytics tests use the mailings tests' fixtures: a real SMTP server and the tick."""

from tests.mailings.conftest import run_tick, settings, smtp_server

__all__ = ["run_tick", "settings", "smtp_server"]
