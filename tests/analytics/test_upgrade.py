"""Upgrading a database that already holds sends, opens and clicks starts the counters from
its rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select

from dripstone import clock, db, migrations
from dripstone.analytics import counters
from dripstone.mailings.models import CampaignMailingSend
from tests.analytics.test_counters import BROWSER, SCANNER, Inbox, run_for, statistics
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import add_subscribers, make_list, make_mailing, send

Tick = Callable[[], None]


def test_the_upgrade_counts_what_the_rows_hold_and_keeps_earlier_opens_as_peoples(
    api: Api,
    client: TestClient,
    database: db.Database,
    database_url: str,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    news = make_list(api, "News")
    people = ["alex@example.com", "blake@example.com", "gone@example.com"]
    add_subscribers(api, news, [{"email": address} for address in people])
    smtp_server.replies["gone@example.com"] = "550 5.1.1 No such user"
    send(api, make_mailing(api, subject="Spring"), news)
    run_for(run_tick, manual_clock, timedelta(minutes=2))
    inbox = Inbox(smtp_server, client)
    inbox.click("alex@example.com", "Spring", BROWSER, 0, 1)
    inbox.click("blake@example.com", "Spring", SCANNER, 0)
    inbox.unsubscribe("blake@example.com", "Spring")

    config = migrations.alembic_config(database_url)
    database.engine.dispose()
    try:
        command.downgrade(config, "0005")
    finally:
        command.upgrade(config, "head")
    database.engine.dispose()

    with database.read_sessions() as session:
        send_row = session.scalars(select(CampaignMailingSend)).one()
        totals = asdict(counters.send_totals(session, send_row.account_id, send_row.id))
        links = counters.link_clicks(session, send_row.account_id, send_row.id)
    assert totals == {
        "sent": 3,
        "delivered": 2,
        "viewed": 2,
        "clicked": 2,
        "bounced": 1,
        "soft_bounced": 0,
        "hard_bounced": 1,
        "unsubscribed": 1,
        "global_unsubscribed": 0,
        # Recorded before people were told from machines: counted as people, as they were.
        "human_viewed": 2,
        "machine_viewed": 0,
        "human_clicked": 2,
        "bot_clicked": 0,
    }
    assert [(c.html_id, c.clicked, c.human_clicked, c.clicks) for c in links] == [
        (1, 2, 2, 2),
        (2, 1, 1, 1),
    ]
    assert statistics(api, "alex@example.com")["opened"] == 1
    assert statistics(api, "gone@example.com")["hard_bounced"] == 1
    # The overview's days start from the rows too: today holds the send's messages.
    with database.read_sessions() as session:
        today = counters.daily_totals(session, send_row.account_id, 30, clock.now().date())[-1]
    assert asdict(today) == {
        "day": clock.now().date(),
        "sent": 3,
        "delivered": 2,
        "bounced": 1,
        "opened": 2,
        "clicked": 2,
        "unsubscribed": 1,
    }
