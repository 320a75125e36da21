"""The simulated path: the engine's own steps, one after another, each wait taken up to its
due date, with what each node did and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dripstone.drips.engine import Facts
from dripstone.drips.graph import Graph, parse_graph
from dripstone.drips.simulate import simulate
from tests.drips.helpers import edge, graph, node

WELCOME = "11111111-1111-4111-8111-111111111111"
TIPS = "22222222-2222-4222-8222-222222222222"
LIST = "33333333-3333-4333-8333-333333333333"
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday


def onboarding() -> Graph:
    """trigger → welcome → 2 days → clicked welcome? yes: tips, no: 09:00 wait → exit."""
    return parse_graph(
        graph(
            [
                node("t", "trigger"),
                node("welcome", "email", campaign_mailing_id=WELCOME),
                node("wait", "delay", amount=2, unit="days"),
                node("clicked", "condition", check="clicked", node="welcome"),
                node("tips", "email", campaign_mailing_id=TIPS),
                node("nine", "wait_until", time="09:00"),
                node("bye", "exit"),
            ],
            [
                edge("t", "welcome"),
                edge("welcome", "wait"),
                edge("wait", "clicked"),
                edge("clicked", "tips", "yes"),
                edge("clicked", "nine", "no"),
                edge("nine", "bye"),
            ],
        )
    )


def test_a_subscriber_who_clicked_is_sent_the_tips_two_days_later() -> None:
    clicked = Facts(subscriber_key="s1", clicked={"welcome": frozenset({"https://x.example"})})

    run = simulate(onboarding(), clicked, START)

    told = [(s.node_id, s.at, s.what) for s in run.steps]
    later = START + timedelta(days=2)
    assert told == [
        ("t", START, "entered the campaign"),
        ("welcome", START, f"sent email {WELCOME}"),
        ("wait", START, "waited until 2026-03-04 15:00 UTC"),
        ("clicked", later, "branch yes"),
        ("tips", later, f"sent email {TIPS}"),
    ]
    assert run.outcome == "completed"


def test_one_who_did_not_click_waits_for_nine_in_their_own_time_zone() -> None:
    quiet = Facts(subscriber_key="s1", timezone="America/New_York")

    run = simulate(onboarding(), quiet, START)

    assert [s.node_id for s in run.steps] == ["t", "welcome", "wait", "clicked", "nine", "bye"]
    nine = run.steps[4]
    # 2026-03-04 15:00 UTC is 10:00 in New York: the next 09:00 there is the 5th, 14:00 UTC.
    assert nine.until == datetime(2026, 3, 5, 14, 0, tzinfo=UTC)
    assert run.steps[5].at == nine.until
    assert run.steps[3].branch == "no"


def test_an_action_that_leaves_the_campaigns_list_ends_the_path_at_the_next_wait() -> None:
    leaving = parse_graph(
        graph(
            [
                node("t", "trigger"),
                node("mail", "email", campaign_mailing_id=WELCOME),
                node("off", "action", do="remove_from_list", list_id=LIST),
                node("wait", "delay", amount=1, unit="hours"),
                node("tips", "email", campaign_mailing_id=TIPS),
            ],
            [edge("t", "mail"), edge("mail", "off"), edge("off", "wait"), edge("wait", "tips")],
        )
    )

    run = simulate(leaving, Facts("s1", lists=frozenset({LIST})), START, campaign_list=LIST)

    assert [s.node_id for s in run.steps] == ["t", "mail", "off", "wait"]
    assert (run.outcome, run.reason) == ("exited", "the subscriber left the campaign's list")


def test_the_path_is_cut_off_after_the_step_limit() -> None:
    run = simulate(onboarding(), Facts("s1"), START, max_steps=2)

    assert [s.node_id for s in run.steps] == ["t", "welcome"]
    assert run.outcome == "unfinished"
