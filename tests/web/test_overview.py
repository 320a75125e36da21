"""The overview: a real send's rates, the 30-day bounce rate against the 0.3 % line, the
chart's figures, and what an empty account is told to do first."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dripstone import clock
from dripstone.config import Settings
from dripstone.delivery.pipeline import close_pipeline
from dripstone.users.models import Role
from tests.analytics.campaign import sent_campaign
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.conftest import run_tick, smtp_server, smtp_settings
from tests.web.conftest import Team

__all__ = ["run_tick", "smtp_server"]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(
        database_url, tmp_path, smtp_server, retry_base_seconds=10, retry_horizon_seconds=60
    )
    close_pipeline()


def team_api(client: TestClient, team: Team) -> Api:
    return Api(client, team.account, team.api_key, "/v1/marketing")


def row_of(page: str, table_id: str, heading: str) -> list[str]:
    """The cells of the row of table `table_id` whose heading cell holds `heading`."""
    table = re.search(rf'<table id="{table_id}"[^>]*>(.*?)</table>', page, re.S)
    assert table is not None, page
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table[1], re.S):
        if heading in row:
            return [
                re.sub(r"<[^>]+>", "", c).strip()
                for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            ]
    raise AssertionError(f"no row {heading!r} in {table_id}")


def test_overview_shows_the_rates_of_a_real_send_and_the_bounce_badge(
    client: TestClient,
    team: Team,
    signed_in: Callable[[Role], TestClient],
    smtp_server: SmtpTestServer,
    run_tick: Callable[[], None],
    manual_clock: clock.ManualClock,
) -> None:
    sent_campaign(
        team_api(client, team), client, smtp_server, run_tick, manual_clock, subject="Spring sale"
    )
    page = signed_in(Role.VIEWER).get("/")
    assert page.status_code == 200
    # 5 sent: dana bounced; of the 4 delivered alex, blake and casey opened (a click counts),
    # alex and blake clicked, casey unsubscribed.
    cells = row_of(page.text, "sends", "Spring sale")
    assert cells[4:] == ["5", "80.0 %", "75.0 %", "50.0 %", "20.0 %", "25.0 %"]
    # One bounce in five over the last 30 days is far over the 0.3 % mailbox providers accept.
    assert 'id="bounce-badge"' in page.text
    assert "Over 0.3 %" in page.text
    assert "20.00 %" in page.text
    # The chart is drawn on the server, with its figures in a table for screen readers.
    assert '<svg class="chart"' in page.text
    assert '<polyline class="series delivered"' in page.text
    today = row_of(page.text, "days", manual_clock.now().date().isoformat())
    assert today[1:] == ["4", "1", "3", "2"]
    # Nothing left to set up: no getting-started steps.
    assert "Get started" not in page.text

    manual_clock.advance(timedelta(days=31))
    later = signed_in(Role.VIEWER).get("/")
    assert 'id="bounce-badge"' not in later.text  # the bounce has left the 30-day window
    assert "Spring sale" in later.text  # the send is still among the recent ones


def test_an_empty_account_is_told_what_to_do_first(
    signed_in: Callable[[Role], TestClient],
) -> None:
    editor = signed_in(Role.EDITOR).get("/").text
    assert "Get started" in editor
    assert 'href="/imports"' in editor
    assert 'href="/mailings"' in editor
    assert 'id="bounce-badge"' not in editor
    viewer = signed_in(Role.VIEWER).get("/").text
    assert "Get started" in viewer
    assert "import a CSV file" not in viewer  # viewers may not import
