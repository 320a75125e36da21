"""`GET /subscribers/{id}?with_stats=true` counted from what really happened to the
subscriber's campaign and drip messages, through a real SMTP server and tracking URLs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from dripstone import clock
from dripstone.config import Settings
from dripstone.delivery.pipeline import close_pipeline
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, create, node, start
from tests.mailings.conftest import run_tick, smtp_server, smtp_settings
from tests.mailings.helpers import (
    add_subscribers,
    html_of,
    make_list,
    make_mailing,
    ok,
    send,
    subscriber_id,
    to,
)

__all__ = ["run_tick", "smtp_server"]

Tick = Callable[[], None]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    """The mailings tests' settings, with retries that give up after a minute."""
    yield smtp_settings(
        database_url, tmp_path, smtp_server, retry_base_seconds=10, retry_horizon_seconds=60
    )
    close_pipeline()


def run_for(run_tick: Tick, manual_clock: clock.ManualClock, delta: timedelta) -> None:
    end = manual_clock.now() + delta
    while manual_clock.now() < end:
        run_tick()
        run_tick()
        manual_clock.advance(timedelta(seconds=5))
    run_tick()


def statistics(api: Api, address: str) -> dict[str, Any]:
    detail = ok(api.get(f"/subscribers/{subscriber_id(api, address)}", params={"with_stats": 1}))
    found: dict[str, Any] = detail["data"]["attributes"]["statistics"]
    return found


def test_with_stats_counts_the_subscribers_campaign_and_drip_messages(
    api: Api,
    other_api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    news = make_list(api, "News")
    people = ["alex@example.com", "blake@example.com", "casey@example.com"]
    add_subscribers(api, news, [{"email": address} for address in people])
    smtp_server.replies["blake@example.com"] = "550 5.1.1 No such user"
    smtp_server.replies["casey@example.com"] = "451 4.2.2 Mailbox full"
    blast = make_mailing(api, subject="Blast")
    send(api, blast, news, recipient_emails=["alex@example.com"])  # and a preview to Alex
    run_for(run_tick, manual_clock, timedelta(minutes=3))

    copies = [html_of(m) for m in to(smtp_server.messages, "alex@example.com")]
    (html,) = [h for h in copies if "/t/o/" in h]  # the preview is not tracked
    assert len(copies) == 2
    pixel = re.findall(r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', html)[0]
    link = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', html)[0]
    assert client.get(urlsplit(pixel).path).status_code == 200
    assert client.get(urlsplit(pixel).path).status_code == 200  # the same message, again
    assert client.get(urlsplit(link).path, follow_redirects=False).status_code == 302

    drip = make_mailing(api, subject="Drip")
    only_alex = make_list(api, "Only Alex")
    add_subscribers(api, only_alex, [{"email": "alex@example.com"}])
    start(
        api,
        create(
            api,
            only_alex,
            chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=drip)),
        ),
    )
    test_email = {"to_email": "alex@example.com"}
    assert (
        api.get(f"/campaign_mailings/{drip}/send_test_email", params=test_email).status_code == 204
    )
    run_for(run_tick, manual_clock, timedelta(minutes=1))
    assert len(to(smtp_server.messages, "alex@example.com")) == 4  # blast, preview, drip, test

    # The other account's messages to the same address are not Alex's.
    theirs = make_list(other_api, "Theirs")
    add_subscribers(other_api, theirs, [{"email": "alex@example.com"}])
    send(other_api, make_mailing(other_api, subject="Theirs"), theirs)
    run_for(run_tick, manual_clock, timedelta(minutes=1))

    zero = {"unsubscribed": 0, "global_unsubscribed": 0}
    assert statistics(api, "alex@example.com") == {
        "deliveries": 2,
        "delivered": 2,
        "opened": 1,
        "clicked": 1,
        "soft_bounced": 0,
        "hard_bounced": 0,
        **zero,
    }
    assert statistics(api, "blake@example.com") == {
        "deliveries": 1,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "soft_bounced": 0,
        "hard_bounced": 1,
        **zero,
    }
    assert statistics(api, "casey@example.com") == {
        "deliveries": 1,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "soft_bounced": 1,
        "hard_bounced": 0,
        **zero,
    }
