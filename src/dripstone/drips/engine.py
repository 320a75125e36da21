"""The pure drip engine: given where an enrollment is, what it knows and `now`, decide the step.

No database, no web, no clock: plain values in, a `Step` out. The runner carries out the
step's effects in order and stores its position and wake time.

Time rules:

- A delay is elapsed time: due at arrived_at + amount * unit, with days of 24 hours and
  weeks of 7 days, whatever the wall clock does.
- Every node entered during a step arrives at `now`, so a step that ran late never
  shortens the waits after it.
- A wait_until is due at the first instant at or after its arrival whose local date is an
  allowed weekday and whose local time is the node's time. Each local date has exactly one
  such instant, found by zoneinfo's fold=0 reading of the wall-clock time: on a
  spring-forward day a time inside the gap keeps the offset from before the gap, which
  moves it forward by the gap's length (02:30 in New York on 2026-03-08 is 03:30 EDT,
  07:30 UTC); on a fall-back day an ambiguous time means its first occurrence (01:30 on
  2026-11-01 is 01:30 EDT, 05:30 UTC), and once that has passed the next due date is the
  next allowed day, not the repeated hour. The zone is the node's, else the subscriber's
  (ignored if not a known zone), else the account's.

Conditions see the changes of actions run earlier in the same step (lists, fields).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dripstone.drips.graph import (
    Action,
    ActionKind,
    Condition,
    Delay,
    Email,
    Exit,
    FieldOp,
    Graph,
    Handle,
    Split,
    WaitUntil,
)


@dataclass(frozen=True)
class Facts:
    """What the engine may know about one subscriber when deciding."""

    subscriber_key: str  # stable per subscriber: seeds the split
    # email, first_name, last_name, phone_number, and custom fields as "custom.<name>"
    # (graph.CUSTOM_FIELD_PREFIX): the names conditions and set_field actions use
    fields: Mapping[str, str | None] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()  # lists the subscriber is subscribed to
    opened: frozenset[str] = frozenset()  # email node ids whose message was opened
    clicked: Mapping[str, frozenset[str]] = field(default_factory=dict)  # node id -> urls
    timezone: str | None = None  # the subscriber's IANA zone, if known


@dataclass(frozen=True)
class Position:
    """Where an enrollment is: `node_id`, reached at `arrived_at` (aware).

    The node has not run yet: `advance` runs it first. The runner places a new enrollment
    on the trigger; every position `advance` returns is a delay or wait_until still waiting.
    """

    node_id: str
    arrived_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.arrived_at, "arrived_at")


@dataclass(frozen=True)
class SendEmail:
    """Send the email node's mailing to the subscriber."""

    node_id: str
    mailing_id: str
    subject: str | None
    from_email: str | None
    from_name: str | None


@dataclass(frozen=True)
class RunAction:
    """Carry out the action node's change to the subscriber."""

    node_id: str
    do: ActionKind
    list_id: str | None
    name: str | None
    value: str | None


Effect: TypeAlias = SendEmail | RunAction


@dataclass(frozen=True)
class Step:
    """What one call of `advance` decided.

    `visited` lists the nodes the enrollment moved into during this step, in order; the
    starting node is not in it (it was entered before), the node it now waits on is. So
    the starting node followed by every step's `visited` is the enrollment's whole path.
    """

    effects: tuple[Effect, ...]  # to carry out in this order
    visited: tuple[str, ...]
    position: Position | None  # where it now waits; None: it reached an end
    wake_at: datetime | None  # when to advance again; None when it has left

    @property
    def exited(self) -> bool:
        """True when the enrollment reached an end."""
        return self.position is None


def advance(
    graph: Graph,
    position: Position,
    facts: Facts,
    now: datetime,
    account_timezone: str = "UTC",
) -> Step:
    """Run every node that is due at `now` from `position`, stopping at a wait or an end."""
    _require_aware(now, "now")
    if position.node_id not in graph.nodes:
        raise ValueError(f"node {position.node_id!r} is not in the graph")
    account_zone = _zone(account_timezone)
    now = now.astimezone(UTC)
    state = _Subscriber(facts)
    effects: list[Effect] = []
    visited: list[str] = []
    node_id = position.node_id
    arrived_at = position.arrived_at.astimezone(UTC)
    # Each pass moves one edge forward in an acyclic graph: more passes than nodes is a bug.
    for _ in range(len(graph.nodes) + 1):
        node = graph.nodes[node_id]
        data = node.data
        handle: Handle | None = None
        due: datetime | None = None
        if isinstance(data, Delay):
            due = arrived_at + data.duration
        elif isinstance(data, WaitUntil):
            zone = _zone(data.timezone) if data.timezone else state.zone(account_zone)
            due = wait_until_due(data, arrived_at, zone)
        elif isinstance(data, Email):
            effects.append(
                SendEmail(node_id, data.mailing_id, data.subject, data.from_email, data.from_name)
            )
        elif isinstance(data, Action):
            effects.append(RunAction(node_id, data.do, data.list_id, data.name, data.value))
            state.apply(data)
        elif isinstance(data, Condition):
            handle = "yes" if state.holds(data) else "no"
        elif isinstance(data, Split):
            handle = "a" if split_point(facts.subscriber_key, node_id) < data.share_a else "b"
        elif isinstance(data, Exit):
            return Step(tuple(effects), tuple(visited), None, None)
        if due is not None and now < due:
            waiting = position if node_id == position.node_id else Position(node_id, arrived_at)
            return Step(tuple(effects), tuple(visited), waiting, due)
        target = graph.next(node_id, handle)
        if target is None:
            return Step(tuple(effects), tuple(visited), None, None)
        node_id, arrived_at = target, now
        visited.append(target)
    raise RuntimeError("the drip graph has a cycle")


def wait_until_due(wait: WaitUntil, arrived_at: datetime, zone: ZoneInfo) -> datetime:
    """The first instant at or after `arrived_at` that `wait` lets through, in UTC."""
    _require_aware(arrived_at, "arrived_at")
    arrived_at = arrived_at.astimezone(UTC)
    first_day = arrived_at.astimezone(zone).date() - timedelta(days=1)
    # From the day before (a gap can push a time past midnight) through a full week after.
    candidates = (
        _local_instant(first_day + timedelta(days=offset), wait, zone) for offset in range(9)
    )
    return min(
        instant
        for day, instant in candidates
        if instant >= arrived_at and (wait.weekdays is None or day.weekday() in wait.weekdays)
    )


def split_point(subscriber_key: str, node_id: str) -> float:
    """The subscriber's stable point in [0, 1) for the split node `node_id`."""
    digest = hashlib.sha256(f"{subscriber_key}:{node_id}".encode()).digest()
    # 53 bits, as many as a float holds exactly: 64 would let the top values round up to 1.0.
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def field_matches(op: FieldOp, actual: str | None, expected: str | None) -> bool:
    """Whether a subscriber's field value passes a field condition (case-insensitive)."""
    have = (actual or "").strip().casefold()
    want = (expected or "").strip().casefold()
    if op == "eq":
        return have == want
    if op == "neq":
        return have != want
    if op == "contains":
        return want in have
    if op == "not_contains":
        return want not in have
    if op == "starts_with":
        return have.startswith(want)
    if op == "ends_with":
        return have.endswith(want)
    if op == "empty":
        return have == ""
    if op == "not_empty":
        return have != ""
    left, right = _number(have), _number(want)
    if left is not None and right is not None:
        return left > right if op == "gt" else left < right
    return have > want if op == "gt" else have < want


class _Subscriber:
    """The facts as they stand mid-step: actions earlier in the step already count."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.fields = dict(facts.fields)
        self.lists = set(facts.lists)

    def apply(self, action: Action) -> None:
        if action.do == "add_to_list" and action.list_id is not None:
            self.lists.add(action.list_id)
        elif action.do == "remove_from_list" and action.list_id is not None:
            self.lists.discard(action.list_id)
        elif action.do == "set_field" and action.name is not None:
            self.fields[action.name] = action.value

    def holds(self, condition: Condition) -> bool:
        if condition.check == "opened":
            return condition.node in self.facts.opened
        if condition.check == "clicked":
            urls = self.facts.clicked.get(condition.node or "")
            if urls is None:
                return False
            return condition.url is None or condition.url in urls
        if condition.check == "in_list":
            return condition.list_id in self.lists
        assert condition.name is not None
        assert condition.op is not None
        return field_matches(condition.op, self.fields.get(condition.name), condition.value)

    def zone(self, account_zone: ZoneInfo) -> ZoneInfo:
        if self.facts.timezone:
            try:
                return ZoneInfo(self.facts.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # a stale or mistyped subscriber zone must not stop the campaign
        return account_zone


def _local_instant(day: date, wait: WaitUntil, zone: ZoneInfo) -> tuple[date, datetime]:
    local = datetime(day.year, day.month, day.day, wait.hour, wait.minute, tzinfo=zone, fold=0)
    return day, local.astimezone(UTC)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    # "nan" and "inf" parse as floats but are not numbers anyone typed into a form.
    return value if math.isfinite(value) else None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
