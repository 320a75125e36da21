"""Settings: one object, read from the environment and an optional `.env` file."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("dripstone-data")
SECRET_KEY_FILE = "secret_key"  # noqa: S105  (a file name, not a secret)
MIN_SECRET_KEY_LENGTH = 32


class ConfigError(Exception):
    """A setting has a value Dripstone cannot run with; the message names the variable."""


class Settings(BaseSettings):
    """Everything Dripstone reads from its environment (`DRIPSTONE_*`)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIPSTONE_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    queue_url: str = ""
    # Tasks of one deployment; another name on the same Redis or database is another queue.
    queue_name: Annotated[str, Field(pattern="^[A-Za-z0-9_]{1,40}$")] = "dripstone"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    log_level: Annotated[str, Field(pattern="^(DEBUG|INFO|WARNING|ERROR)$")] = "INFO"
    max_body_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    # CSV uploads to /subscribers_import only.
    max_import_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024 * 1024
    queue_workers: Annotated[int, Field(ge=1, le=64)] = 2
    job_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # A job whose worker has not committed a batch for this long is taken back: it died.
    job_lease_seconds: Annotated[int, Field(ge=5)] = 20
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    # Delivery: where messages go (empty: the outbox folder), and how.
    smtp_url: str = ""
    smtp_pool_size: Annotated[int, Field(ge=1, le=100)] = 4
    smtp_max_per_second: Annotated[float, Field(ge=0)] = 0  # 0: no limit
    smtp_timeout: Annotated[float, Field(gt=0, le=600)] = 30
    from_email: str = "dripstone@localhost.localdomain"
    list_unsubscribe_mailto: str = ""
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_private_key_file: Path | None = None
    retry_base_seconds: Annotated[int, Field(ge=1)] = 60
    retry_horizon_seconds: Annotated[int, Field(ge=60)] = 3 * 24 * 3600
    delivery_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200
    # A claim its dispatcher's heartbeat has not renewed for this long is taken back: the
    # dispatcher died. The heartbeat beats four times per claim.
    delivery_claim_seconds: Annotated[int, Field(ge=5)] = 20
    # Replies recorded per transaction: also how many messages per dispatcher a crash can
    # leave in doubt (sent again with the same Message-ID).
    delivery_record_every: Annotated[int, Field(ge=1, le=1000)] = 10

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and urlsplit(value).scheme.split("+")[0] not in ("sqlite", "postgresql"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("queue_url")
    @classmethod
    def _known_queue(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("sqlite", "postgresql", "redis", "memory"):
            raise ValueError("must start with sqlite:///, postgresql://, redis:// or memory://")
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://mail.example.com")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _known_transport(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("smtp", "smtps", "outbox"):
            raise ValueError("must start with smtp://, smtps:// or outbox://")
        return value

    @model_validator(mode="after")
    def _dkim_complete(self) -> Settings:
        given = [bool(self.dkim_domain), bool(self.dkim_selector), bool(self.dkim_private_key_file)]
        if any(given) and not all(given):
            raise ValueError(
                "DRIPSTONE_DKIM_DOMAIN, DRIPSTONE_DKIM_SELECTOR and "
                "DRIPSTONE_DKIM_PRIVATE_KEY_FILE go together: set all three or none"
            )
        return self

    @model_validator(mode="after")
    def _strong_secret(self) -> Settings:
        if self.secret_key and len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"DRIPSTONE_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return _with_psycopg_driver(self.database_url)
        return f"sqlite:///{(self.data_dir / 'dripstone.db').resolve()}"

    @cached_property
    def resolved_queue_url(self) -> str:
        """The queue URL, defaulting to a SQLite file beside the database."""
        return self.queue_url or f"sqlite:///{(self.data_dir / 'queue.db').resolve()}"

    @cached_property
    def resolved_secret_key(self) -> str:
        """The signing secret: the setting, else one generated once into the data dir."""
        if self.secret_key:
            return self.secret_key
        key_file = self.data_dir / SECRET_KEY_FILE
        if not key_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip()


def _with_psycopg_driver(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a bad value into a one-line ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across settings: its message names them
            raise ConfigError(message) from None
        raise ConfigError(f"DRIPSTONE_{str(error['loc'][0]).upper()}: {message}") from None
