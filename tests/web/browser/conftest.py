"""Browser tests: Debian's Chromium, headless, driven by Playwright against a real
`dripstone serve` (SQLite, its own data folder) that delivers to the test SMTP server.

Without a Chromium they are skipped with a message saying how to enable them, except under
CI (`CI=true`), where a missing browser is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dripstone import db, migrations
from dripstone.users.models import Role
from tests.delivery.smtp_server import SmtpTestServer
from tests.processes import DRIPSTONE, free_port, wait_until
from tests.web.conftest import PASSWORD, Team, make_team

try:
    from playwright.sync_api import Browser, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover  (the dev lock installs it)
    sync_playwright = None

SCREENSHOTS = Path(os.environ.get("DRIPSTONE_SCREENSHOTS", "build/screenshots"))
ENABLE = (
    "browser tests skipped: no Chromium found. Install it (Debian: apt-get install chromium) "
    "or point DRIPSTONE_CHROMIUM at a Chromium or Chrome executable."
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run a real server and browser: scheduled with the other slow tests."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)


def chromium_path() -> str | None:
    return (
        os.environ.get("DRIPSTONE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    found = chromium_path()
    if found is None or sync_playwright is None:
        if os.environ.get("CI"):
            pytest.fail(ENABLE.replace("skipped", "cannot run"))
        pytest.skip(ENABLE)
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    assert sync_playwright is not None
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(chromium: str, playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where Chromium's own sandbox cannot start.
    launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    yield launched
    launched.close()


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    database: db.Database
    data_dir: Path


@pytest.fixture(scope="session")
def live_server(
    chromium: str,
    shared_smtp_server: SmtpTestServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """One `dripstone serve` per test session (per xdist worker); tests keep apart by account."""
    data_dir = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{data_dir / 'dripstone.db'}"
    migrations.upgrade(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(data_dir),
        "DRIPSTONE_DATABASE_URL": url,
        "DRIPSTONE_PUBLIC_URL": base,
        "DRIPSTONE_SECRET_KEY": "browser-test-secret-key-that-is-long-enough",
        "DRIPSTONE_SMTP_URL": shared_smtp_server.url,
        "DRIPSTONE_RETRY_BASE_SECONDS": "1",
        "DRIPSTONE_LOG_LEVEL": "WARNING",
    }
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [DRIPSTONE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    database = db.Database(url)

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError((data_dir / "serve.log").read_text())
        try:
            return httpx.get(f"{base}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answering, f"dripstone serve answering on {base}", 60)
    yield LiveServer(base, database, data_dir)
    process.terminate()
    process.wait(timeout=15)
    database.dispose()


@dataclass
class Session:
    """A browser signed in as one user of a fresh account."""

    page: Page
    team: Team
    role: Role
    base_url: str

    def api(self) -> httpx.Client:
        """The API as the account's programs use it, with the account's key."""
        return httpx.Client(
            base_url=f"{self.base_url}/v1/marketing",
            headers={"authorization": f"Token token={self.team.api_key}"},
        )

    def go(self, path: str) -> Page:
        self.page.goto(self.base_url + path)
        return self.page

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def dashboard(browser: Browser, live_server: LiveServer) -> Iterator[Callable[..., Session]]:
    """`dashboard(Role.EDITOR)`: a new browser context (1280 by 800) signed in through the form;
    `width=390` for a phone. A script error or a console error on any of its pages (a refusal
    by the Content-Security-Policy among them) fails the test."""
    contexts = []
    problems: list[str] = []
    team = make_team(live_server.database)

    def is_problem(text: str) -> bool:
        # Pages refused on purpose (a 403, a form sent back with 422) are the test's business.
        return not text.startswith(
            "Failed to load resource: the server responded with a status of 4"
        )

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"{page.url}: {message.text}")
                if message.type == "error" and is_problem(message.text)
                else None
            ),
        )

    def open_as(role: Role = Role.OWNER, width: int = 1280, height: int = 800) -> Session:
        context = browser.new_context(
            viewport={"width": width, "height": height}, base_url=live_server.base_url
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        context.on("page", watch)
        page = context.new_page()
        page.goto("/sign-in")
        page.get_by_label("Email").fill(team.emails[role])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.base_url}/")
        return Session(page, team, role, live_server.base_url)

    yield open_as
    for context in contexts:
        context.close()
    assert problems == [], "errors in the browser's console"
