"""Delivery claims are short leases that a live dispatcher's heartbeat keeps: a dead
dispatcher's messages go out again soon after it died, a slow live one keeps its own. Default
settings; time moves by the manual clock, the heartbeat is beaten by hand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from dripstone import clock, db, leases
from dripstone.delivery import dispatcher, pipeline, recovery
from dripstone.delivery.models import Delivery
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import add_subscribers, make_list, make_mailing, send

Tick = Callable[[], None]
EVERYONE = {"alex@example.com": 1, "blake@example.com": 1, "casey@example.com": 1}


@pytest.fixture
def news(api: Api) -> str:
    list_id = make_list(api, "News")
    add_subscribers(api, list_id, [{"email": address} for address in EVERYONE])
    return list_id


def statuses(database: db.Database) -> set[str]:
    with database.read_sessions() as session:
        return set(session.scalars(select(Delivery.status)))


def test_the_claim_of_a_dispatcher_that_died_is_taken_back_and_sent_within_21_seconds(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    send(api, make_mailing(api), news)
    # A dispatcher claims the three messages, then its process is killed: no heartbeat.
    claimed = dispatcher._claim(database, "killed-dispatcher", pipeline.pipeline().policy)
    assert len(claimed) == 3

    manual_clock.advance(timedelta(seconds=10))
    run_tick()
    assert smtp_server.messages == []  # a live dispatcher's heartbeat would still hold it
    waited = 10
    while len(smtp_server.messages) < 3 and waited < 30:
        manual_clock.advance(timedelta(seconds=1))
        run_tick()
        waited += 1

    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == EVERYONE
    assert waited <= 21
    assert statuses(database) == {"delivered"}


def test_a_live_dispatcher_keeps_its_claim_through_an_smtp_exchange_of_fifteen_minutes(
    api: Api,
    news: str,
    database: db.Database,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    send(api, make_mailing(api), news)

    def a_relay_that_answers_the_first_message_after_fifteen_minutes() -> None:
        if len(smtp_server.messages) == 1:
            for _ in range(180):
                manual_clock.advance(timedelta(seconds=5))
                leases.beat(database)  # this process's heartbeat
                recovery.recover_deliveries(database)  # another process's sweep

    smtp_server.handler.on_message = a_relay_that_answers_the_first_message_after_fifteen_minutes
    assert dispatcher.dispatch_due(database) == 3
    smtp_server.handler.on_message = None
    run_tick()

    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == EVERYONE
    assert statuses(database) == {"delivered"}
