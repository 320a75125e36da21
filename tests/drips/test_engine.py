"""The drip engine, node kind by node kind, with explicit instants."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dripstone.drips.engine import (
    Facts,
    Position,
    RunAction,
    SendEmail,
    Step,
    advance,
    field_matches,
    split_point,
)
from dripstone.drips.graph import FieldOp, Graph, parse_graph

MAILING_1 = "11111111-1111-4111-8111-111111111111"
MAILING_2 = "22222222-2222-4222-8222-222222222222"
MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
FACTS = Facts(subscriber_key="sub-1")
EDGE_IDS = itertools.count()

Edge = tuple[str, str] | tuple[str, str, str]


def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": data}


def email(node_id: str, mailing_id: str = MAILING_1, **data: Any) -> dict[str, Any]:
    return node(node_id, "email", campaign_mailing_id=mailing_id, **data)


def delay(node_id: str, amount: float, unit: str) -> dict[str, Any]:
    return node(node_id, "delay", amount=amount, unit=unit)


def wait_until(node_id: str, time: str, **data: Any) -> dict[str, Any]:
    return node(node_id, "wait_until", time=time, **data)


def graph(nodes: list[dict[str, Any]], edges: list[Edge]) -> Graph:
    wire = [
        {
            "id": f"edge-{next(EDGE_IDS)}",
            "source": e[0],
            "target": e[1],
            "sourceHandle": e[2] if len(e) == 3 else None,
        }
        for e in edges
    ]
    return parse_graph(json.dumps({"nodes": [node("t", "trigger"), *nodes], "edges": wire}))


def chain(*nodes: dict[str, Any]) -> Graph:
    """The trigger followed by `nodes`, one after the other."""
    ids = ["t", *(n["id"] for n in nodes)]
    return graph(list(nodes), list(itertools.pairwise(ids)))


def start(graph: Graph, now: datetime, facts: Facts = FACTS, zone: str = "UTC") -> Step:
    return advance(graph, Position(graph.trigger_id, now), facts, now, account_timezone=zone)


def send(node_id: str, mailing_id: str = MAILING_1) -> SendEmail:
    return SendEmail(node_id, mailing_id, subject=None, from_email=None, from_name=None)


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_series_sends_waits_and_ends() -> None:
    series = chain(email("e1"), delay("d1", 2, "days"), email("e2", MAILING_2), node("x", "exit"))

    first = start(series, MONDAY)

    assert first == Step(
        effects=(send("e1"),),
        visited=("e1", "d1"),
        position=Position("d1", MONDAY),
        wake_at=MONDAY + timedelta(days=2),
    )
    assert first.position is not None
    early = advance(series, first.position, FACTS, MONDAY + timedelta(days=1))
    assert early == Step((), (), first.position, MONDAY + timedelta(days=2))
    last = advance(series, first.position, FACTS, MONDAY + timedelta(days=2))
    assert last == Step((send("e2", MAILING_2),), ("e2", "x"), None, None)
    assert last.exited


def test_email_overrides_travel_with_the_send() -> None:
    series = chain(email("e1", subject="Hello", from_email="a@b.example", from_name="Ann"))

    step = start(series, MONDAY)

    assert step.effects == (SendEmail("e1", MAILING_1, "Hello", "a@b.example", "Ann"),)


def test_calling_again_before_the_wake_time_changes_nothing() -> None:
    series = chain(email("e1"), delay("d1", 1, "hours"), email("e2"))
    waiting = start(series, MONDAY).position
    assert waiting is not None

    for minutes in (0, 1, 59):
        step = advance(series, waiting, FACTS, MONDAY + timedelta(minutes=minutes))
        assert step == Step((), (), waiting, MONDAY + timedelta(hours=1))


@pytest.mark.parametrize(
    ("amount", "unit", "length"),
    [
        (30, "seconds", timedelta(seconds=30)),
        (1.5, "minutes", timedelta(seconds=90)),
        (3, "hours", timedelta(hours=3)),
        (0.5, "days", timedelta(hours=12)),
        (2, "weeks", timedelta(days=14)),
    ],
)
def test_delay_units(amount: float, unit: str, length: timedelta) -> None:
    step = start(chain(delay("d1", amount, unit), email("e1")), MONDAY)
    assert step.wake_at == MONDAY + length


def test_a_day_of_delay_is_24_hours_even_across_a_clock_change() -> None:
    series = chain(delay("d1", 1, "days"), email("e1"))
    arrived = datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK)

    step = advance(series, Position("d1", arrived), FACTS, arrived)

    assert step.wake_at == utc(2026, 3, 8, 17, 0)


def test_a_late_run_does_not_shorten_the_next_delay() -> None:
    series = chain(delay("d1", 1, "hours"), email("e1"), delay("d2", 1, "hours"), email("e2"))
    waiting = start(series, MONDAY).position
    assert waiting is not None
    late = MONDAY + timedelta(hours=5)

    step = advance(series, waiting, FACTS, late)

    assert step == Step(
        (send("e1"),), ("e1", "d2"), Position("d2", late), late + timedelta(hours=1)
    )


def test_a_delay_is_due_exactly_at_its_end() -> None:
    series = chain(delay("d1", 10, "minutes"), email("e1"))

    step = advance(series, Position("d1", MONDAY), FACTS, MONDAY + timedelta(minutes=10))

    assert step.effects == (send("e1"),)


def test_the_starting_node_runs_first() -> None:
    # Where relocate may put an enrollment after a live edit: on a node that has not run.
    series = chain(email("e1"), email("e2"))

    step = advance(series, Position("e2", MONDAY), FACTS, MONDAY)

    assert step == Step((send("e2"),), (), None, None)


def test_exit_ends_the_enrollment() -> None:
    step = start(chain(node("x", "exit")), MONDAY)
    assert step == Step((), ("x",), None, None)


@pytest.mark.parametrize("last", [email("e1"), node("a1", "action", do="unsubscribe")])
def test_a_node_without_out_edge_ends_the_enrollment(last: dict[str, Any]) -> None:
    step = start(chain(last), MONDAY)
    assert (step.visited, step.position, step.wake_at) == ((last["id"],), None, None)


@pytest.mark.parametrize(
    ("data", "effect"),
    [
        ({"do": "add_to_list", "list_id": "l1"}, RunAction("a1", "add_to_list", "l1", None, None)),
        (
            {"do": "remove_from_list", "list_id": "l1"},
            RunAction("a1", "remove_from_list", "l1", None, None),
        ),
        (
            {"do": "set_field", "name": "custom.stage", "value": "warm"},
            RunAction("a1", "set_field", None, "custom.stage", "warm"),
        ),
        ({"do": "unsubscribe"}, RunAction("a1", "unsubscribe", None, None, None)),
    ],
)
def test_action_effects(data: dict[str, Any], effect: RunAction) -> None:
    step = start(chain(node("a1", "action", **data), email("e1")), MONDAY)
    assert step.effects == (effect, send("e1"))


def branch(condition: dict[str, Any], before: list[dict[str, Any]] | None = None) -> Graph:
    """trigger -> before... -> condition, yes -> exit `yes`, no -> exit `no`."""
    before = before or []
    ids = ["t", *(n["id"] for n in before), "c1"]
    edges: list[Edge] = [*itertools.pairwise(ids), ("c1", "yes", "yes"), ("c1", "no", "no")]
    nodes = [*before, node("c1", "condition", **condition), node("yes", "exit")]
    return graph([*nodes, node("no", "exit")], edges)


def answer(graph: Graph, facts: Facts) -> str:
    step = start(graph, MONDAY, facts)
    assert step.position is None
    return step.visited[-1]


def test_opened() -> None:
    opened = branch({"check": "opened", "node": "e1"}, [email("e1")])

    assert answer(opened, Facts("s", opened=frozenset({"e1"}))) == "yes"
    assert answer(opened, Facts("s", opened=frozenset({"other"}))) == "no"
    assert answer(opened, Facts("s")) == "no"


def test_clicked_any_link() -> None:
    clicked = branch({"check": "clicked", "node": "e1"}, [email("e1")])

    assert answer(clicked, Facts("s", clicked={"e1": frozenset({"https://a.example"})})) == "yes"
    assert answer(clicked, Facts("s", clicked={"e9": frozenset({"https://a.example"})})) == "no"
    assert answer(clicked, Facts("s", opened=frozenset({"e1"}))) == "no"


def test_clicked_a_given_link() -> None:
    url = "https://a.example/offer"
    clicked = branch({"check": "clicked", "node": "e1", "url": url}, [email("e1")])

    assert answer(clicked, Facts("s", clicked={"e1": frozenset({url, "https://b"})})) == "yes"
    assert answer(clicked, Facts("s", clicked={"e1": frozenset({"https://b"})})) == "no"
    assert answer(clicked, Facts("s")) == "no"


def test_in_list() -> None:
    in_list = branch({"check": "in_list", "list_id": "l1"})

    assert answer(in_list, Facts("s", lists=frozenset({"l1", "l2"}))) == "yes"
    assert answer(in_list, Facts("s", lists=frozenset({"l2"}))) == "no"


def test_field_condition_reads_the_named_field() -> None:
    field = branch({"check": "field", "name": "custom.plan", "op": "eq", "value": "Pro"})

    assert answer(field, Facts("s", fields={"custom.plan": "  pro "})) == "yes"
    assert answer(field, Facts("s", fields={"custom.plan": "free"})) == "no"
    assert answer(field, Facts("s", fields={"plan": "pro"})) == "no"
    assert answer(field, Facts("s", fields={"custom.plan": None})) == "no"


@pytest.mark.parametrize(
    ("op", "actual", "expected", "result"),
    [
        ("eq", "Ann", "ann", True),
        ("eq", " ann ", "ANN", True),
        ("eq", "anne", "ann", False),
        ("neq", "anne", "ann", True),
        ("neq", "ANN", "ann", False),
        ("contains", "ann@Example.com", "example", True),
        ("contains", "ann@example.com", "sample", False),
        ("not_contains", "ann@example.com", "sample", True),
        ("not_contains", "ann@example.com", "EXAMPLE", False),
        ("starts_with", "Dr. Ann", "dr.", True),
        ("starts_with", "Ann", "dr.", False),
        ("ends_with", "ann@clinic.org", ".ORG", True),
        ("ends_with", "ann@clinic.com", ".org", False),
        ("empty", None, None, True),
        ("empty", "   ", None, True),
        ("empty", "x", None, False),
        ("not_empty", "x", None, True),
        ("not_empty", None, None, False),
        ("gt", "10", "9", True),
        ("gt", "9", "10", False),
        ("gt", " 2.5 ", "2", True),
        ("lt", "9", "10", True),
        ("lt", "-1", "0", True),
        ("lt", "10", "10", False),
        ("gt", "b", "a", True),
        ("gt", "10", "abc", False),
        ("lt", "B", "a", False),
        ("gt", "nan", "1", True),
        ("gt", None, "5", False),
        ("lt", None, "5", True),
        ("eq", None, "", True),
    ],
)
def test_field_ops(op: FieldOp, actual: str | None, expected: str | None, result: bool) -> None:
    assert field_matches(op, actual, expected) is result


def test_missing_field_counts_as_empty() -> None:
    field = branch({"check": "field", "name": "first_name", "op": "empty"})
    assert answer(field, Facts("s")) == "yes"


def test_an_action_counts_for_conditions_later_in_the_same_step() -> None:
    added = branch(
        {"check": "in_list", "list_id": "l1"},
        [node("a1", "action", do="add_to_list", list_id="l1")],
    )
    removed = branch(
        {"check": "in_list", "list_id": "l1"},
        [node("a1", "action", do="remove_from_list", list_id="l1")],
    )
    set_field = branch(
        {"check": "field", "name": "custom.stage", "op": "eq", "value": "warm"},
        [node("a1", "action", do="set_field", name="custom.stage", value="warm")],
    )

    assert answer(added, Facts("s")) == "yes"
    assert answer(removed, Facts("s", lists=frozenset({"l1"}))) == "no"
    assert answer(set_field, Facts("s", fields={"custom.stage": "cold"})) == "yes"


def split(a: float, b: float) -> Graph:
    nodes = [node("s1", "split", weights={"a": a, "b": b}), node("A", "exit"), node("B", "exit")]
    return graph(nodes, [("t", "s1"), ("s1", "A", "a"), ("s1", "B", "b")])


def test_split_is_stable_per_subscriber() -> None:
    even = split(1, 1)
    for key in ("alice", "bob", "carol"):
        picks = {start(even, MONDAY + timedelta(days=d), Facts(key)).visited[-1] for d in range(5)}
        assert len(picks) == 1


def test_split_point_is_the_documented_hash() -> None:
    assert split_point("alice", "s1") == split_point("alice", "s1")
    assert split_point("alice", "s1") != split_point("alice", "s2")
    assert 0 <= split_point("", "") < 1


def test_split_respects_weights() -> None:
    thirty_seventy = split(30, 70)

    picks = [start(thirty_seventy, MONDAY, Facts(f"sub-{i}")).visited[-1] for i in range(10_000)]

    assert picks.count("A") / len(picks) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize(("a", "b", "only"), [(0, 5, "B"), (5, 0, "A"), (1e308, 0, "A")])
def test_split_with_a_zero_weight(a: float, b: float, only: str) -> None:
    lopsided = split(a, b)
    picks = {start(lopsided, MONDAY, Facts(f"sub-{i}")).visited[-1] for i in range(200)}
    assert picks == {only}


def until(time: str, at: datetime, facts: Facts = FACTS, zone: str = "UTC", **data: Any) -> Step:
    """Arrive at a wait_until at `at` (advancing at that same instant)."""
    waits = chain(wait_until("w1", time, **data), email("e1"))
    return advance(waits, Position("w1", at), facts, at, account_timezone=zone)


def test_wait_until_later_the_same_day() -> None:
    step = until("17:30", MONDAY)
    assert step == Step((), (), Position("w1", MONDAY), utc(2026, 1, 5, 17, 30))


def test_wait_until_the_next_day() -> None:
    assert until("08:00", MONDAY).wake_at == utc(2026, 1, 6, 8, 0)


def test_wait_until_is_due_at_its_exact_instant() -> None:
    step = until("09:00", MONDAY)
    assert step == Step((send("e1"),), ("e1",), None, None)


def test_wait_until_skips_to_an_allowed_weekday() -> None:
    friday_evening = utc(2026, 1, 9, 18, 0)
    assert until("09:00", friday_evening, weekdays=[0, 1, 2, 3, 4]).wake_at == utc(2026, 1, 12, 9)


def test_wait_until_on_an_allowed_day_after_the_time_waits_a_week() -> None:
    assert until("08:00", MONDAY, weekdays=[0]).wake_at == utc(2026, 1, 12, 8, 0)


def test_wait_until_weekday_is_the_local_one() -> None:
    # 02:00 UTC on Saturday is still Friday, 21:00, in New York: Friday 22:00 is an hour away.
    saturday_utc = utc(2026, 1, 10, 2, 0)
    step = until("22:00", saturday_utc, weekdays=[4], timezone="America/New_York")
    assert step.wake_at == ny(2026, 1, 9, 22, 0) == utc(2026, 1, 10, 3, 0)


def test_wait_until_in_new_york_before_spring_forward() -> None:
    saturday_noon = ny(2026, 3, 7, 12, 0)
    step = until("09:00", saturday_noon, timezone="America/New_York")
    assert step.wake_at == utc(2026, 3, 8, 13, 0)  # 09:00 EDT, the day clocks went forward


def test_wait_until_a_time_in_the_spring_forward_gap_moves_forward_by_the_gap() -> None:
    # 02:30 does not exist in New York on 2026-03-08; the fold=0 reading keeps EST (-5):
    # 02:30 EST is 07:30 UTC, which the clocks show as 03:30 EDT.
    midnight = ny(2026, 3, 8, 0, 0)

    step = until("02:30", midnight, timezone="America/New_York")

    assert step.wake_at == utc(2026, 3, 8, 7, 30)
    assert step.wake_at.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"


def test_wait_until_after_the_gap_day_uses_the_new_offset() -> None:
    after = utc(2026, 3, 8, 8, 0)
    assert until("02:30", after, timezone="America/New_York").wake_at == utc(2026, 3, 9, 6, 30)


def test_wait_until_an_ambiguous_time_at_fall_back_means_the_first_one() -> None:
    midnight = utc(2026, 11, 1, 4, 0)  # 00:00 EDT

    step = until("01:30", midnight, timezone="America/New_York")

    assert step.wake_at == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST (06:30 UTC)


def test_wait_until_between_the_two_fall_back_occurrences_waits_for_the_next_day() -> None:
    between = utc(2026, 11, 1, 5, 45)  # 01:45 EDT; 01:30 EST is still to come

    step = until("01:30", between, timezone="America/New_York")

    assert step.wake_at == utc(2026, 11, 2, 6, 30)


def test_wait_until_on_the_fall_back_day_uses_the_new_offset() -> None:
    midnight = utc(2026, 11, 1, 4, 0)
    assert until("09:00", midnight, timezone="America/New_York").wake_at == utc(2026, 11, 1, 14)


def test_wait_until_uses_the_subscriber_zone() -> None:
    tokyo = Facts("s", timezone="Asia/Tokyo")
    # 09:00 in Tokyo (+9) is midnight UTC; MONDAY is 18:00 in Tokyo, so the next day.
    assert until("09:00", MONDAY, tokyo, zone="Europe/Berlin").wake_at == utc(2026, 1, 6, 0, 0)


def test_wait_until_falls_back_to_the_account_zone() -> None:
    expected = utc(2026, 1, 6, 8, 0)  # 09:00 in Berlin (+1)
    assert until("09:00", MONDAY, Facts("s"), zone="Europe/Berlin").wake_at == expected
    mistyped = Facts("s", timezone="Mars/Base")
    assert until("09:00", MONDAY, mistyped, zone="Europe/Berlin").wake_at == expected


def test_wait_until_node_zone_overrides_the_subscriber_zone() -> None:
    tokyo = Facts("s", timezone="Asia/Tokyo")
    step = until("09:00", MONDAY, tokyo, zone="Europe/Berlin", timezone="America/New_York")
    assert step.wake_at == utc(2026, 1, 5, 14, 0)


def test_leaving_a_wait_until_late_starts_the_next_delay_at_now() -> None:
    waits = chain(wait_until("w1", "10:00"), delay("d1", 1, "hours"), email("e1"))
    late = utc(2026, 1, 5, 15, 0)

    step = advance(waits, Position("w1", MONDAY), FACTS, late)

    assert step == Step((), ("d1",), Position("d1", late), late + timedelta(hours=1))


def test_wait_until_due_is_fixed_by_arrival_not_by_now() -> None:
    waits = chain(wait_until("w1", "10:00"), email("e1"))
    arrived = Position("w1", MONDAY)

    for hours in (0, 0.5, 0.99):
        step = advance(waits, arrived, FACTS, MONDAY + timedelta(hours=hours))
        assert step.wake_at == utc(2026, 1, 5, 10, 0)


def test_naive_times_are_refused() -> None:
    series = chain(email("e1"))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        advance(series, Position("t", MONDAY), FACTS, datetime(2026, 1, 5, 9, 0))
    with pytest.raises(ValueError, match="arrived_at must be timezone-aware"):
        Position("t", datetime(2026, 1, 5, 9, 0))


def test_unknown_position_and_bad_account_zone_are_refused() -> None:
    series = chain(email("e1"))
    with pytest.raises(ValueError, match="'ghost'"):
        advance(series, Position("ghost", MONDAY), FACTS, MONDAY)
    with pytest.raises(ValueError, match="'Nowhere/Zone'"):
        advance(series, Position("t", MONDAY), FACTS, MONDAY, account_timezone="Nowhere/Zone")


def test_results_are_in_utc() -> None:
    series = chain(email("e1"), delay("d1", 1, "hours"), email("e2"))
    now = datetime(2026, 1, 5, 4, 0, tzinfo=NEW_YORK)

    step = advance(series, Position("t", now), FACTS, now)

    assert step.position == Position("d1", now)
    assert step.position is not None
    assert step.position.arrived_at.tzinfo is UTC
    assert step.wake_at is not None
    assert step.wake_at.tzinfo is UTC
