"""Opens and clicks are committed in batches: every hit once, in the database before its
answer, none lost to a failing batch or to shutdown."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dripstone import clock, db
from dripstone.delivery import pipeline
from dripstone.delivery.models import Delivery
from dripstone.tracking import service
from dripstone.tracking.models import TrackingEvent
from dripstone.tracking.service import CLICK, OPEN, Hit
from dripstone.tracking.writer import HitNotRecorded, HitWriter
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import add_subscribers, html_of, make_list, make_mailing, send, to

Tick = Callable[[], None]
PIXEL = re.compile(r'<img src="https://mail\.example\.com(/t/o/[^"]+)"')
LINK = re.compile(r'href="https://mail\.example\.com(/t/c/[^"]+)"')


@pytest.fixture
def delivered(
    api: Api, smtp_server: SmtpTestServer, run_tick: Tick, manual_clock: clock.ManualClock
) -> dict[str, str]:
    """A mailing sent to alex and blake; their messages' HTML by address."""
    list_id = make_list(api, "News")
    add_subscribers(api, list_id, [{"email": "alex@example.com"}, {"email": "blake@example.com"}])
    send(api, make_mailing(api), list_id)
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()
    return {
        email: html_of(message)
        for email in ("alex@example.com", "blake@example.com")
        for message in to(smtp_server.messages, email)
    }


def delivery_ids(database: db.Database) -> dict[str, int]:
    with database.read_sessions() as session:
        return dict(session.execute(select(Delivery.email, Delivery.id)).all())


def recorded(database: db.Database) -> Counter[tuple[str, int, int | None]]:
    """How many events of each (kind, delivery, link) the database holds."""
    with database.read_sessions() as session:
        rows = session.execute(
            select(TrackingEvent.kind, TrackingEvent.delivery_id, TrackingEvent.html_id)
        )
        return Counter((kind, delivery_id, html_id) for kind, delivery_id, html_id in rows)


def open_of(delivery_id: int) -> Hit:
    return Hit(OPEN, delivery_id, clock.now(), "Mail/1.0", "192.0.2.7")


def click_of(delivery_id: int, html_id: int) -> Hit:
    return Hit(CLICK, delivery_id, clock.now(), None, None, html_id, "https://example.com/")


def test_concurrent_opens_and_clicks_are_each_recorded_once(
    client: TestClient, database: db.Database, delivered: dict[str, str]
) -> None:
    ids = delivery_ids(database)
    requests: list[tuple[str, tuple[str, int, int | None]]] = []
    for email, html in delivered.items():
        (pixel,) = PIXEL.findall(html)
        requests.append((pixel, (OPEN, ids[email], None)))
        for link in LINK.findall(html):
            click = pipeline.pipeline().tokens.verify_click(link.removeprefix("/t/c/"))
            assert click is not None
            requests.append((link, (CLICK, ids[email], click.html_id)))
    requests *= 40

    def hit(path: str) -> int:
        return client.get(path, follow_redirects=False).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(hit, [path for path, _ in requests]))

    assert Counter(statuses) == {
        200: sum(1 for _, (kind, _, _) in requests if kind == OPEN),
        302: sum(1 for _, (kind, _, _) in requests if kind == CLICK),
    }
    assert recorded(database) == Counter(event for _, event in requests)


def test_an_answered_hit_is_already_in_the_database(
    client: TestClient, database: db.Database, delivered: dict[str, str]
) -> None:
    html = delivered["alex@example.com"]
    alex = delivery_ids(database)["alex@example.com"]
    (pixel,) = PIXEL.findall(html)
    first_link = LINK.findall(html)[0]

    assert client.get(pixel).status_code == 200
    assert recorded(database) == {(OPEN, alex, None): 1}
    assert client.get(first_link, follow_redirects=False).status_code == 302
    assert recorded(database) == {(OPEN, alex, None): 1, (CLICK, alex, 1): 1}


def test_a_deleted_delivery_is_a_404_open_and_a_click_that_still_redirects(
    client: TestClient, database: db.Database, delivered: dict[str, str]
) -> None:
    html = delivered["alex@example.com"]
    with database.transaction() as session:
        session.execute(delete(Delivery).where(Delivery.email == "alex@example.com"))
    (pixel,) = PIXEL.findall(html)

    opened = client.get(pixel)
    clicked = client.get(LINK.findall(html)[0], follow_redirects=False)

    assert opened.status_code == 404
    assert opened.headers["content-type"].startswith("text/html")
    assert clicked.status_code == 302
    assert clicked.headers["location"].startswith("https://")
    assert recorded(database) == {}


def test_a_click_the_database_cannot_take_still_redirects(
    client: TestClient, database: db.Database, delivered: dict[str, str]
) -> None:
    # A genuine token for an id no database column holds: SQLite cannot bind it, PostgreSQL
    # finds no such delivery. Either way the reader reaches the page, and other hits count.
    tokens = pipeline.pipeline().tokens
    impossible = tokens.click_token(2**64 - 1, 1, "https://example.com/after")
    html = delivered["blake@example.com"]
    blake = delivery_ids(database)["blake@example.com"]

    def hit(path: str) -> int:
        return client.get(path, follow_redirects=False).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(hit, [f"/t/c/{impossible}", *PIXEL.findall(html)] * 10))

    assert statuses == [302, 200] * 10
    assert recorded(database) == {(OPEN, blake, None): 10}


def refusing(delivery_id: int) -> Callable[[Session, Sequence[Hit]], set[int]]:
    """A recorder that writes the hits, then fails the transaction when one of them is for
    `delivery_id`: the failure comes after the batch's rows were written."""

    def record(session: Session, hits: Sequence[Hit]) -> set[int]:
        found = service.record_hits(session, hits)
        session.flush()
        if any(hit.delivery_id == delivery_id for hit in hits):
            raise RuntimeError("refused")
        return found

    return record


def test_a_failing_batch_records_its_other_hits_once_and_the_next_batch(
    database: db.Database, delivered: dict[str, str]
) -> None:
    ids = delivery_ids(database)
    alex, blake = ids["alex@example.com"], ids["blake@example.com"]

    async def scenario() -> tuple[list[bool | BaseException], list[bool], int]:
        hits = HitWriter(database, record=refusing(blake))
        hits.start()
        # Handed in together, before the writer runs: one batch, with blake's hit in it.
        failing = [hits.submit(open_of(alex)), hits.submit(open_of(blake))]
        failing += [hits.submit(click_of(alex, 2)) for _ in range(3)]
        failing_answers = await asyncio.gather(*failing, return_exceptions=True)
        next_answers = await asyncio.gather(*(hits.submit(open_of(alex)) for _ in range(4)))
        await hits.stop()
        return failing_answers, next_answers, hits.batches

    failing_answers, next_answers, batches = asyncio.run(scenario())

    assert failing_answers[0] is True
    assert isinstance(failing_answers[1], HitNotRecorded)
    assert failing_answers[2:] == [True] * 3
    assert next_answers == [True] * 4
    assert batches == 4 + 1  # alex's four hits of the failed batch alone, then the next batch
    assert recorded(database) == {(OPEN, alex, None): 5, (CLICK, alex, 2): 3}


def test_hits_handed_in_together_share_transactions_up_to_the_batch_size(
    database: db.Database, delivered: dict[str, str]
) -> None:
    alex = delivery_ids(database)["alex@example.com"]

    async def scenario(max_batch: int, count: int) -> tuple[list[bool], int]:
        hits = HitWriter(database, max_batch=max_batch)
        hits.start()
        answers = await asyncio.gather(*(hits.submit(open_of(alex)) for _ in range(count)))
        await hits.stop()
        return answers, hits.batches

    assert asyncio.run(scenario(max_batch=500, count=120)) == ([True] * 120, 1)
    assert asyncio.run(scenario(max_batch=50, count=120)) == ([True] * 120, 3)
    assert recorded(database) == {(OPEN, alex, None): 240}


def test_stopping_commits_every_hit_handed_in_and_later_hits_still_count(
    database: db.Database, delivered: dict[str, str]
) -> None:
    ids = delivery_ids(database)
    alex, blake = ids["alex@example.com"], ids["blake@example.com"]

    async def scenario() -> tuple[list[bool], bool, bool]:
        hits = HitWriter(database, max_batch=7)
        hits.start()
        pending = [hits.submit(open_of(alex)) for _ in range(30)]
        await hits.stop()  # before any of them was awaited
        handed_in = [future.result() for future in pending]
        after_stop = await hits.record(open_of(blake))
        gone = await hits.record(open_of(10**9))
        return handed_in, after_stop, gone

    handed_in, after_stop, gone = asyncio.run(scenario())

    assert handed_in == [True] * 30
    assert (after_stop, gone) == (True, False)
    assert recorded(database) == {(OPEN, alex, None): 30, (OPEN, blake, None): 1}
