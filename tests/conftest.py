"""Test set-up: every test runs against a real, migrated database — SQLite always, and
PostgreSQL too when DRIPSTONE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from dripstone import clock, db, migrations
from dripstone.accounts import service as accounts
from dripstone.app import configure_runtime, create_app
from dripstone.config import Settings, load_settings
from dripstone.db import Base
from dripstone.jobs.queue import run_tasks_inline
from tests.delivery.smtp_server import shared_smtp_server

__all__ = ["shared_smtp_server"]

POSTGRES_URL = os.environ.get("DRIPSTONE_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("DRIPSTONE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
SECRET = "test-secret-key-that-is-long-enough-0123456789"


# The modules whose tests take longest (tens of seconds each: real processes, leases running
# out, fuzzing), longest first.
LONGEST_FIRST = (
    "test_topology.py",
    "drips/test_drip_crash.py",
    "mailings/test_send_crash.py",
    "jobs/test_worker_crash.py",
    "test_cli.py",
    "drips/test_runner.py",
    "test_api_fuzz.py",
)


def _start_order(item: pytest.Item) -> int:
    """Where a test starts: the modules of LONGEST_FIRST in their order, then the other slow
    tests (real processes, fuzzing), then the rest, and the browser tests last of all: their
    Playwright, kept for the session, holds an event loop on the main thread, where the
    tests that call asyncio.run can run no more."""
    path = item.path.as_posix()
    if "/tests/web/browser/" in path:
        return len(LONGEST_FIRST) + 2
    for place, module in enumerate(LONGEST_FIRST):
        if path.endswith(f"/tests/{module}"):
            return place
    return len(LONGEST_FIRST) + (item.get_closest_marker("slow") is None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first, each module's in their usual order. xdist (handing tests out one
    at a time: `--maxschedchunk=1`) then shares them out at the start instead of one worker
    running the last of them alone at the end. The backends' tests are interleaved, which
    costs nothing: each backend's database is migrated once a session (`migrated`)."""
    items.sort(key=_start_order)


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


class Migrated:
    """The session's migrated databases, one a backend, each made when first asked for and
    kept to the session's end: tests of the two backends may come in any order."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.urls: dict[str, str] = {}
        self.schemas: list[str] = []

    def url(self, backend: str) -> str:
        if backend not in self.urls:
            self.urls[backend] = self._sqlite() if backend == "sqlite" else self._postgres()
        return self.urls[backend]

    def _sqlite(self) -> str:
        path = self.tmp_path_factory.mktemp("sqlite") / "dripstone.db"
        url = f"sqlite:///{path}"
        migrations.upgrade(url)
        return url

    def _postgres(self) -> str:
        """A private schema of the test database, freshly migrated."""
        schema = f"dripstone_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        self.schemas.append(schema)
        url = _postgres_schema_url(schema).replace("postgresql://", "postgresql+psycopg://", 1)
        migrations.upgrade(url)
        return url

    def drop(self) -> None:
        if not self.schemas:
            return
        admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            for schema in self.schemas:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Migrated]:
    databases = Migrated(tmp_path_factory)
    yield databases
    databases.drop()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, migrated: Migrated) -> str:
    """A freshly migrated database for this test session (a private schema on PostgreSQL)."""
    return migrated.url(request.param)


# Every sequence of the test's schema starts again at 1, as after a fresh migration.
_RESTART_SEQUENCES = (
    "SELECT setval(c.oid::regclass, 1, false) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'S' AND n.nspname = current_schema()"
)


def empty_all_tables(database: db.Database) -> None:
    """Every table emptied, children before parents. On PostgreSQL by DELETE, not TRUNCATE:
    a TRUNCATE of every table replaces each table's files, about a second a test, where a
    DELETE of the few rows one test leaves takes milliseconds."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))
        if not database.is_sqlite:
            conn.execute(text(_RESTART_SEQUENCES))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        job_batch_size=50,
    )


@pytest.fixture
def database(settings: Settings) -> db.Database:
    database = db.configure(settings.resolved_database_url)
    empty_all_tables(database)
    return database


@pytest.fixture
def postgres(database: db.Database) -> db.Database:
    """The database, for tests of races that only PostgreSQL can lose."""
    if database.is_sqlite:
        pytest.skip("SQLite serialises writers at BEGIN IMMEDIATE: no race to lose")
    return database


def backends_waiting_for_locks(database: db.Database) -> int:
    """How many connections to this PostgreSQL database wait for a lock right now."""
    with database.engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return int(found or 0)


@pytest.fixture(scope="session")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app built once per session (per xdist worker): building it is most of a short
    test's set-up. Each test points the process at its own database, queue, data dir and
    transport with `configure_runtime`."""
    return create_app(
        load_settings(
            data_dir=tmp_path_factory.mktemp("shared-app"), queue_url="memory://", secret_key=SECRET
        )
    )


def app_for(settings: Settings, shared_app: FastAPI) -> FastAPI:
    """The session's app, unless `settings` change what `create_app` builds into the app
    itself (the body limit's middleware): then an app of their own."""
    if settings.max_body_bytes != Settings.model_fields["max_body_bytes"].default:
        return create_app(settings)
    configure_runtime(settings)
    return shared_app


@pytest.fixture
def client(settings: Settings, database: db.Database, shared_app: FastAPI) -> Iterator[TestClient]:
    """The API in-process; background jobs run inline, right after the request commits."""
    app = app_for(settings, shared_app)
    run_tasks_inline()
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis of the queue tests. Unreachable, they are skipped on a developer's machine
    and fail in CI (CI=true), where they must run."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        problem = f"Redis is not reachable at {REDIS_URL} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; CI runs the Redis queue tests (.ci/run starts redis-server)")
        pytest.skip(f"{problem}: start redis-server, or set DRIPSTONE_TEST_REDIS_URL")
    return REDIS_URL


@pytest.fixture
def manual_clock() -> Iterator[clock.ManualClock]:
    manual = clock.ManualClock()
    previous = clock.use_clock(manual)
    yield manual
    clock.use_clock(previous)


@dataclass
class Api:
    """One account's view of the API, under `/v1/orca/{username}` or `/v1/marketing`."""

    client: TestClient
    username: str
    key: str
    base: str

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        headers = {"authorization": f"Token token={self.key}", **kwargs.pop("headers", {})}
        return self.client.request(method, self.base + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx2.Response:
        return self.request("PUT", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx2.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.request("DELETE", path, **kwargs)


def make_account(client: TestClient, database: db.Database, username: str, *, orca: bool) -> Api:
    with database.transaction() as session:
        _, key = accounts.create_account(session, username)
    base = f"/v1/orca/{username}" if orca else "/v1/marketing"
    return Api(client, username, key.secret, base)


@pytest.fixture
def api(client: TestClient, database: db.Database) -> Api:
    """Account `acme`, called under /v1/orca/acme."""
    return make_account(client, database, "acme", orca=True)


@pytest.fixture
def other_api(client: TestClient, database: db.Database) -> Api:
    """A second account, `globex`, called under /v1/marketing."""
    return make_account(client, database, "globex", orca=False)
