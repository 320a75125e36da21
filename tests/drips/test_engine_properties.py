"""Properties of the drip engine over random valid graphs, subscribers and clocks."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dripstone.drips.engine import Facts, Position, Step, advance, wait_until_due
from dripstone.drips.graph import Delay, Graph, WaitUntil, parse_graph, relocate

ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]
MAILINGS = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
LIST_IDS = ["l1", "l2", "l3"]
FIELD_NAMES = ["email", "first_name", "custom.plan", "custom.age"]
FIELD_VALUES = [None, "", "pro", "Pro ", "10", "2.5", "ann@example.com"]
OPS = [
    "eq",
    "neq",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "empty",
    "not_empty",
    "gt",
    "lt",
]
STEP_KINDS = ["email", "delay", "wait_until", "condition", "split", "action", "exit"]
REQUIRED_HANDLES: dict[str, list[str | None]] = {
    "trigger": [None],
    "delay": [None],
    "wait_until": [None],
    "condition": ["yes", "no"],
    "split": ["a", "b"],
}
OPTIONAL_HANDLES: dict[str, list[str | None]] = {"email": [None], "action": [None]}
EXAMPLES = settings(max_examples=200, deadline=None)


def dominating_emails(
    kinds: list[str], edges: list[tuple[int, int, str | None]], target: int
) -> list[int]:
    """The email nodes on every path from the trigger (node 0) to `target`."""

    def reaches_without(removed: int) -> bool:
        seen, stack = {0}, [0]
        while stack:
            current = stack.pop()
            for source, child, _ in edges:
                if source == current and child != removed and child not in seen:
                    seen.add(child)
                    stack.append(child)
        return target in seen

    return [i for i, kind in enumerate(kinds) if kind == "email" and not reaches_without(i)]


@st.composite
def node_data(draw: st.DrawFn, kind: str, emails_before: list[int]) -> dict[str, Any]:
    if kind == "email":
        data: dict[str, Any] = {"campaign_mailing_id": draw(st.sampled_from(MAILINGS))}
        if draw(st.booleans()):
            data["subject"] = "Hello"
        return data
    if kind == "delay":
        amount = draw(st.integers(1, 3) | st.floats(0.01, 3.0, allow_nan=False))
        unit = draw(st.sampled_from(["seconds", "minutes", "hours", "days", "weeks"]))
        return {"amount": amount, "unit": unit}
    if kind == "wait_until":
        data = {"time": f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"}
        weekdays = draw(
            st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True)
        )
        if weekdays is not None:
            data["weekdays"] = weekdays
        zone = draw(st.none() | st.sampled_from(ZONES))
        if zone is not None:
            data["timezone"] = zone
        return data
    if kind == "condition":
        checks = ["field", "in_list"] + (["opened", "clicked"] if emails_before else [])
        check = draw(st.sampled_from(checks))
        if check in ("opened", "clicked"):
            data = {"check": check, "node": f"n{draw(st.sampled_from(emails_before))}"}
            if check == "clicked" and draw(st.booleans()):
                data["url"] = draw(st.sampled_from(["https://a.example", "https://b.example"]))
            return data
        if check == "in_list":
            return {"check": check, "list_id": draw(st.sampled_from(LIST_IDS))}
        value = draw(st.sampled_from(["pro", "10", "ann", ""]))
        return {
            "check": check,
            "name": draw(st.sampled_from(FIELD_NAMES)),
            "op": draw(st.sampled_from(OPS)),
            "value": value,
        }
    if kind == "split":
        a = draw(st.integers(0, 5))
        return {"weights": {"a": a, "b": draw(st.integers(0 if a else 1, 5))}}
    if kind == "action":
        do = draw(st.sampled_from(["add_to_list", "remove_from_list", "set_field", "unsubscribe"]))
        if do == "set_field":
            return {"do": do, "name": draw(st.sampled_from(FIELD_NAMES)), "value": "pro"}
        if do == "unsubscribe":
            return {"do": do}
        return {"do": do, "list_id": draw(st.sampled_from(LIST_IDS))}
    return {}


@st.composite
def graph_documents(draw: st.DrawFn) -> str:
    """A valid graph by construction: edges only run from earlier to later nodes (acyclic),
    every node but the trigger gets an edge from an earlier one (reachable), and every
    required handle is filled, by a later node or a new end."""
    kinds = ["trigger", *draw(st.lists(st.sampled_from(STEP_KINDS), min_size=1, max_size=12))]
    edges: list[tuple[int, int, str | None]] = []
    open_slots: list[tuple[int, str | None]] = [(0, None)]
    for index in range(1, len(kinds)):
        if not open_slots:
            del kinds[index:]
            break
        source, handle = open_slots.pop(draw(st.integers(0, len(open_slots) - 1)))
        edges.append((source, index, handle))
        kind = kinds[index]
        handles = REQUIRED_HANDLES.get(kind, []) + OPTIONAL_HANDLES.get(kind, [])
        open_slots += [(index, handle) for handle in handles]
    for source, handle in open_slots:
        later = list(range(source + 1, len(kinds)))
        required = handle in REQUIRED_HANDLES.get(kinds[source], [])
        merge: bool = draw(st.booleans())
        if later and merge:
            edges.append((source, draw(st.sampled_from(later)), handle))
        elif required:
            kinds.append(draw(st.sampled_from(["exit", "email"])))
            edges.append((source, len(kinds) - 1, handle))

    nodes = []
    for index, kind in enumerate(kinds):
        emails = dominating_emails(kinds, edges, index) if kind == "condition" else []
        data = draw(node_data(kind, emails))
        nodes.append({"id": f"n{index}", "type": kind, "data": data})
    wire_edges = [
        {"id": f"e{i}", "source": f"n{s}", "target": f"n{t}", "sourceHandle": h}
        for i, (s, t, h) in enumerate(edges)
    ]
    order = draw(st.permutations(range(len(nodes))))
    return json.dumps({"nodes": [nodes[i] for i in order], "edges": wire_edges})


@st.composite
def facts_for(draw: st.DrawFn, graph: Graph) -> Facts:
    emails = sorted(graph.email_node_ids())
    urls = st.frozensets(st.sampled_from(["https://a.example", "https://b.example"]))
    clicked = draw(st.dictionaries(st.sampled_from(emails), urls)) if emails else {}
    return Facts(
        subscriber_key=draw(st.text(max_size=8)),
        fields=draw(st.dictionaries(st.sampled_from(FIELD_NAMES), st.sampled_from(FIELD_VALUES))),
        lists=draw(st.frozensets(st.sampled_from(LIST_IDS))),
        opened=frozenset(draw(st.lists(st.sampled_from(emails)))) if emails else frozenset(),
        clicked=clicked,
        timezone=draw(st.none() | st.sampled_from([*ZONES, "Not/AZone"])),
    )


@dataclass
class Life:
    """Everything that happened to one simulated enrollment."""

    path: list[str]
    entered: dict[str, datetime]
    left: dict[str, datetime]
    effects: list[str]
    steps: list[tuple[datetime, Step]]


# What can happen to a subscriber between two steps: an open or a click of an email node
# (counted only once that email was sent), joining or leaving a list, a field changing.
Event = tuple[str, str, str | None]


@st.composite
def events_for(draw: st.DrawFn, graph: Graph) -> list[Event]:
    emails = sorted(graph.email_node_ids())
    kinds = ["join", "leave", "set"] + (["open", "click"] if emails else [])
    found: list[Event] = []
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=3)):
        if kind in ("open", "click"):
            url = draw(st.sampled_from(["https://a.example", "https://b.example"]))
            found.append((kind, draw(st.sampled_from(emails)), url))
        elif kind == "set":
            found.append(
                (kind, draw(st.sampled_from(FIELD_NAMES)), draw(st.sampled_from(FIELD_VALUES)))
            )
        else:
            found.append((kind, draw(st.sampled_from(LIST_IDS)), None))
    return found


def happen(facts: Facts, events: list[Event], sent: list[str]) -> Facts:
    """`facts` after `events`; opens and clicks only of emails already sent."""
    for kind, name, value in events:
        if kind == "open" and name in sent:
            facts = replace(facts, opened=facts.opened | {name})
        elif kind == "click" and name in sent and value is not None:
            clicked = {**facts.clicked, name: facts.clicked.get(name, frozenset()) | {value}}
            facts = replace(facts, opened=facts.opened | {name}, clicked=clicked)
        elif kind == "join":
            facts = replace(facts, lists=facts.lists | {name})
        elif kind == "leave":
            facts = replace(facts, lists=facts.lists - {name})
        elif kind == "set":
            facts = replace(facts, fields={**facts.fields, name: value})
    return facts


Scenario = tuple[Graph, Facts, datetime, list[timedelta], str, list[list[Event]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    graph = parse_graph(draw(graph_documents()))
    facts = draw(facts_for(graph))
    start = draw(st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)))
    gaps = draw(st.lists(st.timedeltas(timedelta(0), timedelta(days=3)), max_size=15))
    history = draw(st.lists(events_for(graph), min_size=len(gaps), max_size=len(gaps)))
    return graph, facts, start, gaps, draw(st.sampled_from(ZONES)), history


def live(
    graph: Graph,
    facts: Facts,
    start: datetime,
    gaps: list[timedelta],
    zone: str,
    history: list[list[Event]],
) -> Life:
    """Advance one enrollment from the trigger, at the given clock readings, until it ends;
    before each step, what the history says happened in the gap happens."""
    position: Position | None = Position(graph.trigger_id, start)
    wake = start
    life = Life([graph.trigger_id], {graph.trigger_id: start}, {}, [], [])
    clock = start
    quiet: Iterator[tuple[timedelta, list[Event]]] = itertools.repeat((timedelta(0), []))
    for gap, events in itertools.chain(zip(gaps, history, strict=True), quiet):
        assert position is not None
        # Each call is at or after the wake time, so each one passes a wait: a bound.
        assert len(life.steps) <= len(graph.nodes)
        clock += gap
        facts = happen(facts, events, life.effects)
        if clock < wake:
            # Polling early changes nothing and emits nothing.
            assert advance(graph, position, facts, clock, zone) == Step((), (), position, wake)
        now = max(clock, wake)
        step = advance(graph, position, facts, now, zone)
        life.steps.append((now, step))
        life.effects += [effect.node_id for effect in step.effects]
        moved = [position.node_id, *step.visited]
        for node_id in moved[: len(moved) if step.position is None else -1]:
            life.left[node_id] = now
        for node_id in step.visited:
            life.entered[node_id] = now
        life.path += step.visited
        if step.position is None:
            return life
        assert step.wake_at is not None
        position, wake = step.position, step.wake_at
    raise AssertionError("unreachable")


@given(graph_documents())
@EXAMPLES
def test_generated_graphs_are_valid_and_round_trip(text: str) -> None:
    graph = parse_graph(text)

    assert parse_graph(graph.to_json()) == graph
    for node_id in graph.nodes:
        assert relocate(graph, graph, node_id) == node_id


@given(scenarios())
@EXAMPLES
def test_every_enrollment_ends_and_waits_only_forward(
    scenario: Scenario,
) -> None:
    life = live(*scenario)

    for now, step in life.steps[:-1]:
        assert step.position is not None
        assert step.wake_at is not None
        assert step.wake_at > now
        assert scenario[0].nodes[step.position.node_id].kind in ("delay", "wait_until")
    assert life.steps[-1][1].position is None


@given(scenarios())
@EXAMPLES
def test_no_node_is_entered_twice_and_no_effect_repeats(
    scenario: Scenario,
) -> None:
    graph = scenario[0]

    life = live(*scenario)

    assert len(life.path) == len(set(life.path))
    assert len(life.effects) == len(set(life.effects))
    acting = [n for n in life.path if graph.nodes[n].kind in ("email", "action")]
    assert life.effects == acting


@given(scenarios())
@EXAMPLES
def test_delays_are_never_shortened(
    scenario: Scenario,
) -> None:
    graph = scenario[0]

    life = live(*scenario)

    for node_id, left in life.left.items():
        data = graph.nodes[node_id].data
        if isinstance(data, Delay):
            assert left >= life.entered[node_id] + data.duration


@given(scenarios())
@EXAMPLES
def test_every_life_is_a_path_through_the_graph(
    scenario: Scenario,
) -> None:
    graph = scenario[0]

    life = live(*scenario)

    links = {(edge.source, edge.target) for edge in graph.edges}
    assert life.path[0] == graph.trigger_id
    assert all(pair in links for pair in itertools.pairwise(life.path))
    last = graph.nodes[life.path[-1]]
    assert last.kind == "exit" or not graph.out_edges(last.id)


@given(
    st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.integers(0, 23),
    st.integers(0, 59),
    st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
    st.sampled_from(ZONES),
)
@EXAMPLES
def test_wait_until_lands_on_the_wall_clock_time(
    arrived: datetime, hour: int, minute: int, weekdays: list[int] | None, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    wait = WaitUntil(f"{hour:02d}:{minute:02d}", None if weekdays is None else tuple(weekdays))

    due = wait_until_due(wait, arrived, zone)

    assert arrived <= due <= arrived + timedelta(days=8)
    day = due.astimezone(zone).date()
    # The wall-clock time on that local date, read with fold=0: exact, or for a time in a
    # spring-forward gap shifted by the gap, or for a repeated time its first occurrence.
    assert due == datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
    assert weekdays is None or day.weekday() in weekdays
    for back in range(1, 9):
        earlier = day - timedelta(days=back)
        if weekdays is None or earlier.weekday() in weekdays:
            instant = datetime.combine(earlier, time(hour, minute), tzinfo=zone)
            assert instant.astimezone(UTC) < arrived
