"""A subscriber's timeline after a campaign really sent through the SMTP fixture and then
opened, clicked, bounced and left through its tracking URLs."""

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
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips import helpers as drips
from tests.mailings.conftest import run_tick, smtp_server, smtp_settings
from tests.mailings.helpers import add_subscribers, make_list, make_mailing
from tests.web.conftest import Team
from tests.web.test_subscribers import team_api

__all__ = ["run_tick", "smtp_server"]

SignedIn = Callable[[Role], TestClient]
EVENT = re.compile(
    r'<li class="event-([a-z_]+)">\s*<time[^>]*>[^<]*</time>\s*<span class="what">[^<]*</span>'
    r'\s*<span class="subject">([^<]*)</span>(?:\s*<span class="detail muted">([^<]*)</span>)?'
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(
        database_url, tmp_path, smtp_server, retry_base_seconds=10, retry_horizon_seconds=60
    )
    close_pipeline()


def events(client: TestClient, email: str) -> list[tuple[str, str, str]]:
    found = client.get("/subscribers", params={"search": email.split("@")[0]})
    (subscriber_id,) = re.findall(r'<a href="/subscribers/([0-9a-f-]{36})">', found.text)
    page = client.get(f"/subscribers/{subscriber_id}")
    assert page.status_code == 200
    return [(kind, subject, detail or "") for kind, subject, detail in EVENT.findall(page.text)]


def test_the_timeline_tells_what_happened_newest_first(
    signed_in: SignedIn,
    team: Team,
    smtp_server: SmtpTestServer,
    run_tick: Callable[[], None],
    manual_clock: clock.ManualClock,
) -> None:
    client = signed_in(Role.VIEWER)
    sent_campaign(team_api(client, team), client, smtp_server, run_tick, manual_clock)
    subject = "Hello {{ first_name }}"

    alex = events(client, "alex@example.com")
    assert [kind for kind, _, _ in alex] == [
        "clicked",
        "clicked",
        "clicked",
        "opened",
        "delivered",
        "joined",
        "created",
    ]
    assert sorted(detail for kind, _, detail in alex if kind == "clicked") == [
        "https://blog.example.com/post?id=1",
        "https://shop.example.com/sale",
        "https://shop.example.com/sale",
    ]
    assert alex[4] == ("delivered", subject, "")
    assert alex[5][1] == "All contacts"

    dana = events(client, "dana@example.com")
    assert dana[0][0] == "bounced"
    assert dana[0][2].startswith("hard bounce: 550")
    assert "delivered" not in [kind for kind, _, _ in dana]

    casey = events(client, "casey@example.com")
    # The link's click, and what it did: no more mail at all.
    assert set(casey[:2]) == {
        ("unsubscribed", subject, "from the link in the email"),
        ("unsubscribed", "All mail", ""),
    }
    assert [kind for kind, _, _ in casey][2:] == ["opened", "delivered", "joined", "created"]


def test_the_timeline_shows_a_drips_steps(
    signed_in: SignedIn,
    team: Team,
    smtp_server: SmtpTestServer,
    run_tick: Callable[[], None],
    manual_clock: clock.ManualClock,
) -> None:
    client = signed_in(Role.VIEWER)
    api = team_api(client, team)
    news = make_list(api, "News")
    add_subscribers(api, news, [{"email": "alex@example.com", "first_name": "Alex"}])
    first, second = make_mailing(api, subject="Welcome"), make_mailing(api, subject="Day two")
    campaign = drips.create(api, news, drips.two_emails(first, second), name="Onboarding")
    drips.start(api, campaign)
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()

    alex = events(client, "alex@example.com")
    kinds = [kind for kind, _, _ in alex]
    assert kinds.index("delivered") < kinds.index("drip_step") < kinds.index("drip_entered")
    steps = [detail for kind, subject, detail in alex if kind == "drip_step"]
    assert sorted(steps) == ["step a", "step d", "step t"]
    assert ("drip_entered", "Onboarding", "") in alex
    assert ("delivered", "Welcome", "") in alex
    assert "Day two" not in [subject for _, subject, _ in alex]  # still waiting a day
