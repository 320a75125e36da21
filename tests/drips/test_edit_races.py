"""Edits, starts and the runner side by side on PostgreSQL. The campaign row is the lock: an
edit, start or pause holds it for change, the runner and the enrollment paths hold it shared,
so nobody is placed by a graph that is being replaced. (SQLite has one writer: they take
turns at BEGIN IMMEDIATE, and there is no race to lose.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.drips import campaigns, enrollment, lifecycle, runner
from dripstone.drips.models import DripCampaign, DripEnrollment
from dripstone.errors import Invalid
from dripstone.mailings import service as mailings
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers import service as subscribers
from dripstone.subscribers.models import Subscriber
from dripstone.subscribers.schemas import SubscriberCreateFields
from tests.conftest import Api, backends_waiting_for_locks
from tests.drips.helpers import chain, create, node, start
from tests.mailings.helpers import make_mailing
from tests.processes import wait_until

T = TypeVar("T")


@pytest.fixture
def other_thread() -> Iterator[Callable[[Callable[[], T]], Future[T]]]:
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit


def the_accounts_scope(session: Session) -> AccountScope:
    """The scope of the one account these tests make."""
    return AccountScope(session, session.scalars(select(Account.id)).one())


def put_graph(database: db.Database, campaign_uuid: str, nodes: str) -> None:
    """What `PUT /drip_campaigns/{id}` does with a new graph, in its own transaction."""
    with database.transaction() as session:
        scope = the_accounts_scope(session)
        campaign = campaigns.get_campaign(scope, campaign_uuid, lock="change")
        campaigns.update_campaign(
            scope, campaign, campaigns.CampaignFields(None, None, None, nodes=nodes)
        )


def positions(database: db.Database) -> list[tuple[str, str]]:
    with database.read_sessions() as session:
        rows = session.execute(
            select(DripEnrollment.state, DripEnrollment.node_id).order_by(DripEnrollment.id)
        ).all()
    return [(state, node_id) for state, node_id in rows]


def two_step_campaign(api: Api, news: str) -> tuple[str, str, str]:
    """Trigger, a one-minute delay, the first email, a week, the second email; started, with
    Alex and Blake waiting at the minute. Returns the campaign and the two mailings."""
    first, second = make_mailing(api, subject="First"), make_mailing(api, subject="Second")
    campaign = create(
        api,
        news,
        chain(
            node("t", "trigger"),
            node("minute", "delay", amount=1, unit="minutes"),
            node("a", "email", campaign_mailing_id=first),
            node("week", "delay", amount=1, unit="weeks"),
            node("b", "email", campaign_mailing_id=second),
        ),
    )
    start(api, campaign)
    return campaign, first, second


def week_becomes_a_day(first: str, second: str) -> str:
    return chain(
        node("t", "trigger"),
        node("minute", "delay", amount=1, unit="minutes"),
        node("a", "email", campaign_mailing_id=first),
        node("day", "delay", amount=1, unit="days"),
        node("b", "email", campaign_mailing_id=second),
    )


def test_an_edit_waits_for_a_runner_batch_and_then_moves_who_it_moved(
    api: Api,
    news: str,
    postgres: db.Database,
    manual_clock: clock.ManualClock,
    other_thread: Callable[[Callable[[], Any]], Future[Any]],
) -> None:
    campaign, first, second = two_step_campaign(api, news)
    assert positions(postgres) == [("active", "minute"), ("active", "minute")]
    manual_clock.advance(timedelta(minutes=2))

    with postgres.transaction() as batch:
        # The batch steps both past the first email onto the week, by the graph it read...
        assert runner._advance_batch(batch, 500) == 2
        # ...while an edit that replaces the week arrives before the batch commits.
        edit = other_thread(
            lambda: put_graph(postgres, campaign, week_becomes_a_day(first, second))
        )
        wait_until(
            lambda: backends_waiting_for_locks(postgres) > 0, "the edit waiting for the batch", 30
        )
        assert not edit.done()
    edit.result(timeout=30)

    assert positions(postgres) == [("active", "day"), ("active", "day")]


def test_the_runner_skips_a_campaign_being_edited_and_steps_it_by_the_new_graph(
    api: Api,
    news: str,
    postgres: db.Database,
    manual_clock: clock.ManualClock,
    other_thread: Callable[[Callable[[], Any]], Future[Any]],
) -> None:
    campaign, first, second = two_step_campaign(api, news)
    manual_clock.advance(timedelta(minutes=2))

    with postgres.transaction() as session:
        scope = the_accounts_scope(session)
        edited = campaigns.get_campaign(scope, campaign, lock="change")
        stepping = other_thread(lambda: runner.advance_due(postgres))
        # It neither waits for the edit nor steps anyone by the graph being replaced.
        assert stepping.result(timeout=30) == 0
        campaigns.update_campaign(
            scope,
            edited,
            campaigns.CampaignFields(None, None, None, week_becomes_a_day(first, second)),
        )

    assert runner.advance_due(postgres) == 2
    assert positions(postgres) == [("active", "day"), ("active", "day")]


def test_a_join_during_a_start_enrolls_the_joiner(
    api: Api,
    news: str,
    postgres: db.Database,
    other_thread: Callable[[Callable[[], Any]], Future[Any]],
) -> None:
    hello = make_mailing(api, subject="Hello")
    campaign = create(
        api,
        news,
        chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=hello)),
        trigger="subscription",
    )
    enrollment.enroll_new_members(postgres)  # Alex and Blake joined before: not for this campaign

    with postgres.transaction() as session:
        scope = the_accounts_scope(session)
        assert lifecycle.start(scope, campaigns.get_campaign(scope, campaign, lock="change")) == []
        # Dana joins while the start is committing: the join waits for it...
        joined = other_thread(lambda: join(postgres, news, "dana@example.com"))
        wait_until(
            lambda: joined.done() or backends_waiting_for_locks(postgres) > 0,
            "the join, or its wait",
            30,
        )
        # ...so a consumer of joins running now cannot take her join for one before the start.
        enrollment.enroll_new_members(postgres)
    joined.result(timeout=30)
    enrollment.enroll_new_members(postgres)

    with postgres.read_sessions() as session:
        enrolled = session.scalars(
            select(Subscriber.email).join(
                DripEnrollment, DripEnrollment.subscriber_id == Subscriber.id
            )
        ).all()
    assert enrolled == ["dana@example.com"]


def join(database: db.Database, list_id: str, email: str) -> None:
    """A subscriber created on the list, as `POST /subscribers` with a list does."""
    with database.transaction() as session:
        subscribers.create_subscriber(
            the_accounts_scope(session), SubscriberCreateFields(email=email), list_id
        )


def save_campaign(database: db.Database, list_id: str, mailing_id: str) -> None:
    """What `POST /drip_campaigns` does, in its own transaction."""
    with database.transaction() as session:
        campaigns.create_campaign(the_accounts_scope(session), sends(list_id, mailing_id))


def delete_mailing(database: db.Database, mailing_id: str) -> None:
    """What `DELETE /campaign_mailings_bulk_delete` does, in its own transaction."""
    with database.transaction() as session:
        mailings.bulk_delete_mailings(the_accounts_scope(session), [mailing_id])


def sends(list_id: str, mailing_id: str) -> campaigns.CampaignFields:
    nodes = chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=mailing_id))
    return campaigns.CampaignFields("Welcome", list_id, "existing", nodes)


def mailing_exists(database: db.Database, mailing_id: str) -> bool:
    with database.read_sessions() as session:
        found = session.scalar(select(CampaignMailing.id).where(CampaignMailing.uuid == mailing_id))
    return found is not None


def test_deleting_a_mailing_while_a_campaign_that_sends_it_is_saved_is_refused(
    api: Api,
    news: str,
    postgres: db.Database,
    other_thread: Callable[[Callable[[], Any]], Future[Any]],
) -> None:
    hello = make_mailing(api, subject="Hello")
    with postgres.transaction() as session:
        campaigns.create_campaign(the_accounts_scope(session), sends(news, hello))
        deleting = other_thread(lambda: delete_mailing(postgres, hello))
        wait_until(
            lambda: deleting.done() or backends_waiting_for_locks(postgres) > 0,
            "the delete, or its wait",
            30,
        )
    with pytest.raises(Invalid, match="the drip campaign 'Welcome'"):
        deleting.result(timeout=30)
    assert mailing_exists(postgres, hello)


def test_saving_a_campaign_that_sends_a_mailing_being_deleted_is_refused(
    api: Api,
    news: str,
    postgres: db.Database,
    other_thread: Callable[[Callable[[], Any]], Future[Any]],
) -> None:
    hello = make_mailing(api, subject="Hello")
    with postgres.transaction() as session:
        mailings.bulk_delete_mailings(the_accounts_scope(session), [hello])
        saving = other_thread(lambda: save_campaign(postgres, news, hello))
        wait_until(
            lambda: saving.done() or backends_waiting_for_locks(postgres) > 0,
            "the save, or its wait",
            30,
        )
    with pytest.raises(Invalid, match=f"no campaign mailing {hello}"):
        saving.result(timeout=30)
    with postgres.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(DripCampaign)) == 0
