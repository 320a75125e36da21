"""Two workers at once on PostgreSQL: runners and dispatchers in parallel threads take
disjoint batches (FOR UPDATE SKIP LOCKED), so every step runs once and every email goes once.
(SQLite has one writer: its runners take turns.)"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from dripstone import clock, db
from dripstone.delivery import dispatcher
from dripstone.delivery.models import Delivery
from dripstone.drips import runner
from dripstone.drips.models import DripEnrollment
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, create, node, start
from tests.mailings.helpers import add_subscribers, make_list, make_mailing

SUBSCRIBERS = 1200
WORKERS = 4


def together(work: Callable[[], int]) -> list[int]:
    """Run `work` in WORKERS threads released at the same moment; their results."""
    barrier = threading.Barrier(WORKERS)

    def run() -> int:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda _: run(), range(WORKERS)))


def test_parallel_runners_and_dispatchers_never_repeat_a_step_or_an_email(
    api: Api, postgres: db.Database, smtp_server: SmtpTestServer, manual_clock: clock.ManualClock
) -> None:
    database = postgres
    list_id = make_list(api, "News")
    for chunk in range(0, SUBSCRIBERS, 600):
        add_subscribers(
            api, list_id, [{"email": f"s{i}@example.com"} for i in range(chunk, chunk + 600)]
        )
    hello = make_mailing(api, subject="Hello")
    campaign = create(
        api, list_id, chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=hello))
    )
    start(api, campaign)

    advanced = together(lambda: runner.advance_due(database, batch_size=50))
    assert sum(advanced) == SUBSCRIBERS
    assert sum(1 for n in advanced if n > 0) > 1  # they really worked side by side

    handed_over = together(lambda: dispatcher.dispatch_due(database))
    assert sum(handed_over) == SUBSCRIBERS
    assert Counter(m.rcpt_tos[0] for m in smtp_server.messages) == {
        f"s{i}@example.com": 1 for i in range(SUBSCRIBERS)
    }
    with database.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == SUBSCRIBERS
        states = session.execute(
            select(DripEnrollment.state, func.count()).group_by(DripEnrollment.state)
        ).all()
    assert [tuple(row) for row in states] == [("completed", SUBSCRIBERS)]
