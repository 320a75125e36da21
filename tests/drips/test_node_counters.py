"""The kept per-node counts the campaign page polls equal a recount from the enrollments and
visits after every kind of move: enrolling (at the trigger and straight at a delay), steps
through branches, people leaving early, joiners, and a live edit that moves and removes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from dripstone import clock, db
from dripstone.drips import counters
from dripstone.drips.models import DripCampaign
from tests.conftest import Api
from tests.drips.helpers import create, edge, graph, node, report, start
from tests.drips.test_runner import run_for
from tests.mailings.helpers import add_subscribers, make_mailing, ok, subscriber_id

Tick = Callable[[], None]


def kept_and_recounted(database: db.Database, campaign_id: str) -> tuple[Any, Any]:
    with database.read_sessions() as session:
        internal = session.scalar(select(DripCampaign.id).where(DripCampaign.uuid == campaign_id))
        assert internal is not None
        kept = {k: dict(v) for k, v in counters.read(session, internal).items() if any(v.values())}
        return kept, {k: dict(v) for k, v in counters.recount(session, internal).items()}


def branching(api: Api, news: str, opening: str) -> str:
    """trigger → [opening] → hi → 1 day → first name set? yes: named email, no: exit."""
    hi = make_mailing(api, subject=f"Hi ({opening})")
    named = make_mailing(api, subject=f"Named ({opening})")
    nodes = [node("t", "trigger")]
    edges = []
    previous = "t"
    if opening == "delay":
        nodes.append(node("first", "delay", amount=1, unit="hours"))
        edges.append(edge("t", "first"))
        previous = "first"
    nodes += [
        node("hi", "email", campaign_mailing_id=hi),
        node("day", "delay", amount=1, unit="days"),
        node("named", "condition", check="field", name="first_name", op="not_empty"),
        node("more", "email", campaign_mailing_id=named),
        node("bye", "exit"),
    ]
    edges += [
        edge(previous, "hi"),
        edge("hi", "day"),
        edge("day", "named"),
        edge("named", "more", "yes"),
        edge("named", "bye", "no"),
    ]
    return create(api, news, graph(nodes, edges), trigger="both")


def test_kept_counts_equal_a_recount_through_a_campaigns_life(
    api: Api,
    news: str,
    database: db.Database,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    for opening in ("trigger", "delay"):
        campaign = branching(api, news, opening)
        start(api, campaign)
        run_tick()  # the enrollment job
        kept, recounted = kept_and_recounted(database, campaign)
        assert kept == recounted
        active = [e for e in report(api, campaign)["enrollments"] if e["state"] == "active"]
        assert sum(c["waiting"] for c in kept.values()) == len(active) >= 2

        run_for(run_tick, manual_clock, timedelta(hours=2))
        assert (
            kept_and_recounted(database, campaign)[0] == kept_and_recounted(database, campaign)[1]
        )

        # Blake opts out (leaves at the next step) and Casey joins the list (enrolled).
        blake = subscriber_id(api, "blake@example.com")
        ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [blake]}))
        add_subscribers(api, news, [{"email": f"casey-{opening}@example.com"}])
        run_for(run_tick, manual_clock, timedelta(days=1, hours=2))
        kept, recounted = kept_and_recounted(database, campaign)
        assert kept == recounted
        assert kept["day"]["exited"] == 1  # Blake, taken out at the delay
        assert kept["more"]["entered"] == 1  # Alex has a first name

        ok(api.post("/subscriptions/subscribe", {"subscriber_ids": [blake]}))  # for the next round


def test_a_live_edit_moves_the_kept_counts_as_it_moves_people(
    api: Api,
    news: str,
    database: db.Database,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    campaign = branching(api, news, "trigger")
    start(api, campaign)
    run_for(run_tick, manual_clock, timedelta(minutes=10))
    assert {e["node_id"] for e in report(api, campaign)["enrollments"]} == {"day"}
    nodes = ok(api.get(f"/drip_campaigns/{campaign}"))["data"]["attributes"]["drip_campaign_nodes"]
    hi = next(n for n in _nodes(nodes) if n["id"] == "hi")

    # The day's delay becomes an hour's: both move; then the path is cut after the email.
    for edited in (
        graph(
            [
                node("t", "trigger"),
                hi,
                node("hour", "delay", amount=1, unit="hours"),
                node("x", "exit"),
            ],
            [edge("t", "hi"), edge("hi", "hour"), edge("hour", "x")],
        ),
        graph([node("t", "trigger"), hi], [edge("t", "hi")]),
    ):
        body = {"drip_campaign": {"drip_campaign_nodes": edited}}
        ok(api.put(f"/drip_campaigns/{campaign}", body))
        kept, recounted = kept_and_recounted(database, campaign)
        assert kept == recounted
    assert kept["hour"] == {"entered": 0, "waiting": 0, "exited": 2}
    assert kept["day"]["waiting"] == 0


def _nodes(text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(text)["nodes"]
    return found
