"""The drip graph: parse and validate the React Flow JSON the editor saves, and walk it.

Pure: no database, no web. References to mailings and lists are only collected here
(`Graph.references`); whether they exist in the account is the caller's check.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, NoReturn, TypeAlias, TypeGuard, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dripstone.jsontext import unreadable
from dripstone.wire import is_uuid

NodeKind: TypeAlias = Literal[
    "trigger", "email", "delay", "wait_until", "condition", "split", "action", "exit"
]
Handle: TypeAlias = Literal["yes", "no", "a", "b"]
Unit: TypeAlias = Literal["seconds", "minutes", "hours", "days", "weeks"]
Check: TypeAlias = Literal["opened", "clicked", "field", "in_list"]
FieldOp: TypeAlias = Literal[
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
ActionKind: TypeAlias = Literal["add_to_list", "remove_from_list", "set_field", "unsubscribe"]

MAX_NODES = 500
MAX_NODE_ID_LENGTH = 64
# A longer delay is surely a typo, and capping it keeps every due date far from datetime's limits.
MAX_DELAY = timedelta(days=3660)
# tree_blob repeats a shared node under each parent: without a cap a chain of diamonds
# unfolds exponentially, and JSON encoders refuse nesting much deeper than ~1000 levels
# (each node costs three levels in the tree's shape).
MAX_TREE_SIZE = 10_000
MAX_TREE_DEPTH = 200

# A field as conditions and set_field name it: a standard field (email, first_name,
# last_name, phone_number) by its name, a custom field as "custom.<its name>".
CUSTOM_FIELD_PREFIX = "custom."
# What the subscribers API takes for a custom field's name and value.
MAX_CUSTOM_FIELD_NAME = 255
MAX_CUSTOM_FIELD_VALUE = 10_000
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_UNIT_SECONDS: dict[str, int] = {
    "seconds": 1,
    "minutes": 60,
    "hours": 3600,
    "days": 86400,
    "weeks": 7 * 86400,
}
_HANDLES: dict[str, tuple[Handle, ...]] = {"condition": ("yes", "no"), "split": ("a", "b")}
_NO_VALUE_OPS = frozenset({"empty", "not_empty"})


class GraphError(ValueError):
    """A graph that breaks the contract; `path` points into the JSON (`nodes[2].data.amount`)."""

    def __init__(self, path: str, message: str, node_id: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.node_id = node_id


@dataclass(frozen=True)
class Trigger:
    """The entry point of every enrollment."""


@dataclass(frozen=True)
class Email:
    """Send a campaign mailing (uuid, lower-cased), optionally overriding subject and sender."""

    mailing_id: str
    subject: str | None = None
    from_email: str | None = None
    from_name: str | None = None


@dataclass(frozen=True)
class Delay:
    """Wait a fixed amount of elapsed time."""

    amount: int | float
    unit: Unit

    @property
    def duration(self) -> timedelta:
        """The delay as a timedelta (weeks are seven days, days 24 hours)."""
        return timedelta(**{self.unit: self.amount})


@dataclass(frozen=True)
class WaitUntil:
    """Wait until a local time of day, optionally only on some weekdays (0 = Monday)."""

    time: str
    weekdays: tuple[int, ...] | None = None
    timezone: str | None = None

    @property
    def hour(self) -> int:
        """The hour of `time`."""
        return int(self.time[:2])

    @property
    def minute(self) -> int:
        """The minute of `time`."""
        return int(self.time[3:])


@dataclass(frozen=True)
class Condition:
    """A yes/no question; which fields are set depends on `check`."""

    check: Check
    node: str | None = None  # opened, clicked: an earlier email node
    url: str | None = None  # clicked
    name: str | None = None  # field
    op: FieldOp | None = None  # field
    value: str | None = None  # field, except for empty / not_empty
    list_id: str | None = None  # in_list


@dataclass(frozen=True)
class Split:
    """A random but per-subscriber stable split between handles `a` and `b`."""

    a: int | float
    b: int | float

    @property
    def share_a(self) -> float:
        """The fraction of subscribers sent down `a`, in [0, 1]."""
        # Scale first so huge weights cannot overflow the sum.
        top = max(self.a, self.b)
        return (self.a / top) / (self.a / top + self.b / top)


@dataclass(frozen=True)
class Action:
    """Change the subscriber: lists, a custom field, or unsubscribe.

    set_field sets one custom field (created on first use) to `value`. `name` is the field
    as a field condition names it, "custom.<field>": a condition after the action, in the
    same step or a later one, sees the new value under that name. Only custom fields can
    be set; a name written without the prefix ("stage") is the custom field of that name
    and is saved with it ("custom.stage").
    """

    do: ActionKind
    list_id: str | None = None  # add_to_list, remove_from_list
    name: str | None = None  # set_field: "custom.<field>"
    value: str | None = None  # set_field


@dataclass(frozen=True)
class Exit:
    """An explicit end."""


NodeData: TypeAlias = Trigger | Email | Delay | WaitUntil | Condition | Split | Action | Exit


@dataclass(frozen=True)
class Node:
    """One step of the graph; `position` is the editor's layout, kept for round-tripping."""

    id: str
    kind: NodeKind
    data: NodeData
    position: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Edge:
    """A directed edge; `handle` names the branch of a condition or split, else None."""

    source: str
    target: str
    handle: Handle | None = None
    id: str | None = None


@dataclass(frozen=True)
class Graph:
    """A validated drip graph. Build it with `parse_graph`."""

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    trigger_id: str
    _targets: dict[tuple[str, Handle | None], str] = field(init=False, repr=False, compare=False)
    _children: dict[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)
    _parents: dict[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        targets: dict[tuple[str, Handle | None], str] = {}
        children: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        parents: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        for edge in self.edges:
            targets[(edge.source, edge.handle)] = edge.target
            children[edge.source].append(edge)
            parents[edge.target].append(edge)
        object.__setattr__(self, "_targets", targets)
        object.__setattr__(self, "_children", {key: tuple(v) for key, v in children.items()})
        object.__setattr__(self, "_parents", {key: tuple(v) for key, v in parents.items()})

    def next(self, node_id: str, handle: Handle | None = None) -> str | None:
        """The node the out edge of `node_id` on `handle` leads to, or None if there is none."""
        if node_id not in self.nodes:
            raise KeyError(node_id)
        return self._targets.get((node_id, handle))

    def out_edges(self, node_id: str) -> tuple[Edge, ...]:
        """The edges leaving `node_id`, in edge order."""
        return self._children[node_id]

    def in_edges(self, node_id: str) -> tuple[Edge, ...]:
        """The edges entering `node_id`, in edge order."""
        return self._parents[node_id]

    def references(self) -> list[tuple[str, str, str]]:
        """(node id, kind of reference, value) for each mailing and list the graph names."""
        found: list[tuple[str, str, str]] = []
        for node in self.nodes.values():
            data = node.data
            if isinstance(data, Email):
                found.append((node.id, "campaign_mailing_id", data.mailing_id))
            elif isinstance(data, Condition | Action) and data.list_id is not None:
                found.append((node.id, "list_id", data.list_id))
        return found

    def mailing_ids(self) -> set[str]:
        """The campaign mailing ids the graph sends."""
        return {value for _, kind, value in self.references() if kind == "campaign_mailing_id"}

    def list_ids(self) -> set[str]:
        """The list ids the graph checks or changes."""
        return {value for _, kind, value in self.references() if kind == "list_id"}

    def email_node_ids(self) -> set[str]:
        """The ids of the email nodes."""
        return {node.id for node in self.nodes.values() if node.kind == "email"}

    def to_wire(self) -> dict[str, Any]:
        """The graph as the editor's JSON object, canonical."""
        nodes: list[dict[str, Any]] = []
        for node in self.nodes.values():
            wire: dict[str, Any] = {"id": node.id, "type": node.kind, "data": _data_to_wire(node)}
            if node.position is not None:
                wire["position"] = dict(node.position)
            nodes.append(wire)
        edges: list[dict[str, Any]] = []
        for edge in self.edges:
            wire = {"source": edge.source, "target": edge.target, "sourceHandle": edge.handle}
            if edge.id is not None:
                wire["id"] = edge.id
            edges.append(wire)
        return {"nodes": nodes, "edges": edges}

    def to_json(self) -> str:
        """The graph as canonical JSON; `parse_graph(g.to_json()) == g`."""
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def tree_blob(self) -> dict[str, Any]:
        """The graph unfolded into a nested tree from the trigger (shared nodes repeat)."""

        def shell(node_id: str) -> dict[str, Any]:
            node = self.nodes[node_id]
            return {"id": node.id, "type": node.kind, "data": _data_to_wire(node), "children": []}

        # Iterative, because a path may be deeper than Python's recursion comfortably allows.
        root = shell(self.trigger_id)
        stack = [(self.trigger_id, root)]
        while stack:
            node_id, blob = stack.pop()
            for edge in self.out_edges(node_id):
                child = shell(edge.target)
                blob["children"].append({"handle": edge.handle, "node": child})
                stack.append((edge.target, child))
        return root


def parse_graph(text: str) -> Graph:
    """Parse and validate the graph JSON, raising GraphError for the first problem found.

    Checks run in this order, each over nodes then edges in their list order: JSON and
    top-level shape; node count; each node (shape, id, kind, data, position); exactly one
    trigger; each edge (shape, endpoints, handle, duplicate handle); each node's required
    out edges (a lone trigger needs none: an empty campaign); opened/clicked references name
    email nodes; no cycles; every node reachable from the trigger; opened/clicked emails come
    before the condition on every path; the tree form stays within MAX_TREE_SIZE nodes and
    MAX_TREE_DEPTH levels.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        _fail("$", unreadable(exc))
    if not isinstance(document, dict):
        _fail("$", "must be a JSON object with `nodes` and `edges`")
    raw_nodes = document.get("nodes")
    raw_edges = document.get("edges")
    if not isinstance(raw_nodes, list):
        _fail("nodes", "must be a list")
    if not isinstance(raw_edges, list):
        _fail("edges", "must be a list")
    if len(raw_nodes) > MAX_NODES:
        _fail("nodes", f"at most {MAX_NODES} nodes are allowed, got {len(raw_nodes)}")

    nodes: dict[str, Node] = {}
    index_of: dict[str, int] = {}
    for index, raw in enumerate(raw_nodes):
        node = _parse_node(raw, f"nodes[{index}]", index_of)
        nodes[node.id] = node
        index_of[node.id] = index

    triggers = [node.id for node in nodes.values() if node.kind == "trigger"]
    if not triggers:
        _fail("nodes", "needs exactly one trigger node, found none")
    if len(triggers) > 1:
        second = triggers[1]
        _fail(
            f"nodes[{index_of[second]}]",
            f"node {second!r} is a second trigger; only one is allowed",
            second,
        )
    trigger_id = triggers[0]

    edges = _parse_edges(raw_edges, nodes)
    graph = Graph(nodes=nodes, edges=edges, trigger_id=trigger_id)
    _check_out_edges(graph, index_of)
    _check_email_references(graph, index_of)
    _check_acyclic(graph, index_of)
    _check_reachable(graph, index_of)
    _check_conditions_follow_emails(graph, index_of)
    _check_tree_size(graph)
    return graph


def relocate(old: Graph, new: Graph, node_id: str) -> str | None:
    """Where an enrollment on `node_id` of `old` continues in `new` after a live edit.

    If `node_id` is in `new` with the same kind, the enrollment stays there. Otherwise
    walk back through `old` from `node_id` (through each node's first in edge, in edge
    order) to the nearest ancestor that is still in `new`, and follow that ancestor's out
    edge in `new` on the handle the walked path left it by: its target is the node that
    replaced the old one. The trigger is the same entry whatever its id, so some ancestor
    always survives; if it has no such edge in `new` (it now ends the path), the answer is
    None: the enrollment exits. The target may be a node the enrollment already passed;
    only the caller, who knows the history, can tell.
    """
    if node_id not in old.nodes:
        raise KeyError(node_id)
    if node_id == old.trigger_id:
        return new.trigger_id
    if node_id in new.nodes and new.nodes[node_id].kind == old.nodes[node_id].kind:
        return node_id
    current = node_id
    for _ in range(len(old.nodes)):
        parents = old.in_edges(current)
        if not parents:
            return None
        edge = parents[0]
        source = new.trigger_id if edge.source == old.trigger_id else edge.source
        if source in new.nodes:
            target = new.next(source, edge.handle)
            return None if target == source else target
        current = edge.source
    return None


Outcome: TypeAlias = Literal["stays", "moves", "leaves"]


@dataclass(frozen=True)
class Relocation:
    """What a live edit does to the `count` enrollments waiting on `node_id`: they stay,
    move to `to`, or leave the campaign. `changed` is False for a node the edit left as it
    was (its enrollments stay and are looked at again, like everyone else's)."""

    node_id: str
    count: int
    outcome: Outcome
    to: str | None
    changed: bool


def relocations(old: Graph, new: Graph, waiting: Mapping[str, int]) -> list[Relocation]:
    """Per node with enrollments waiting (`waiting`: node id -> how many), where they go when
    `old` is replaced by `new`: the one rule both the edit preview and the edit follow.

    A node still in `new` with the same kind keeps its enrollments; one not in `old` (left
    over from an earlier edit) has nowhere to go; any other moves them by `relocate`. In
    `old`'s node order, then the left-over nodes by id.
    """
    order = [node_id for node_id in old.nodes if node_id in waiting]
    order += sorted(node_id for node_id in waiting if node_id not in old.nodes)
    plan: list[Relocation] = []
    for node_id in order:
        before = old.nodes.get(node_id)
        after = new.nodes.get(node_id)
        if before is None:
            target = None
        elif after is not None and after.kind == before.kind:
            target = node_id
        else:
            target = relocate(old, new, node_id)
        changed = (
            before is None
            or after is None
            or (after.kind, after.data)
            != (
                before.kind,
                before.data,
            )
        )
        if target is None:
            outcome: Outcome = "leaves"
        elif target == node_id:
            outcome = "stays"
        else:
            outcome = "moves"
        plan.append(
            Relocation(
                node_id=node_id,
                count=waiting[node_id],
                outcome=outcome,
                to=target if outcome == "moves" else None,
                changed=changed,
            )
        )
    return plan


def node_order(graph: Graph) -> dict[str, int]:
    """Each node's place in an order where every edge goes forward (the graph is acyclic)."""
    return {node_id: index for index, node_id in enumerate(_topological_order(graph))}


def custom_field_name(name: str) -> str:
    """The custom field a set_field `name` ("custom.<field>") sets."""
    return name.removeprefix(CUSTOM_FIELD_PREFIX)


def _fail(path: str, message: str, node_id: str | None = None) -> NoReturn:
    raise GraphError(path, message, node_id)


def _is_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _parse_node(raw: object, path: str, seen: Mapping[str, int]) -> Node:
    if not isinstance(raw, dict):
        _fail(path, "must be an object")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id:
        _fail(f"{path}.id", "must be a non-empty string")
    if len(node_id) > MAX_NODE_ID_LENGTH:
        _fail(f"{path}.id", f"must be at most {MAX_NODE_ID_LENGTH} characters", node_id)
    if node_id in seen:
        _fail(
            f"{path}.id",
            f"node id {node_id!r} is already used by nodes[{seen[node_id]}]",
            node_id,
        )
    kind = raw.get("type")
    if kind not in get_args(NodeKind):
        kinds = ", ".join(get_args(NodeKind))
        _fail(
            f"{path}.type", f"node {node_id!r}: unknown kind {kind!r}; use one of {kinds}", node_id
        )
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(f"{path}.data", f"node {node_id!r}: data must be an object", node_id)
    position = raw.get("position")
    if position is not None and not isinstance(position, dict):
        _fail(f"{path}.position", f"node {node_id!r}: position must be an object", node_id)
    parsed = _DataParser(data, f"{path}.data", node_id).parse(cast(NodeKind, kind))
    return Node(id=node_id, kind=cast(NodeKind, kind), data=parsed, position=position)


class _DataParser:
    """Reads one node's `data` object, failing with the path of the offending key."""

    def __init__(self, data: dict[str, Any], path: str, node_id: str) -> None:
        self.data = data
        self.path = path
        self.node_id = node_id

    def fail(self, key: str, message: str) -> NoReturn:
        _fail(f"{self.path}.{key}", f"node {self.node_id!r}: {message}", self.node_id)

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"{key} must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"{key} must be a string")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.data.get(key)
        if value not in choices:
            self.fail(key, f"{key} must be one of {', '.join(choices)}, got {value!r}")
        return cast(str, value)

    def parse(self, kind: NodeKind) -> NodeData:
        readers: dict[NodeKind, Callable[[], NodeData]] = {
            "trigger": Trigger,
            "email": self.parse_email,
            "delay": self.parse_delay,
            "wait_until": self.parse_wait_until,
            "condition": self.parse_condition,
            "split": self.parse_split,
            "action": self.parse_action,
            "exit": Exit,
        }
        return readers[kind]()

    def parse_email(self) -> Email:
        mailing_id = self.data.get("campaign_mailing_id")
        if not isinstance(mailing_id, str) or not is_uuid(mailing_id):
            self.fail("campaign_mailing_id", "campaign_mailing_id must be a mailing's uuid")
        return Email(
            mailing_id=mailing_id.lower(),
            subject=self.optional_text("subject"),
            from_email=self.optional_text("from_email"),
            from_name=self.optional_text("from_name"),
        )

    def parse_delay(self) -> Delay:
        amount = self.data.get("amount")
        if not _is_number(amount) or amount <= 0:
            self.fail("amount", f"amount must be a number greater than 0, got {amount!r}")
        unit = self.choice("unit", tuple(_UNIT_SECONDS))
        if amount * _UNIT_SECONDS[unit] > MAX_DELAY.total_seconds():
            self.fail("amount", f"a delay may be at most {MAX_DELAY.days} days")
        return Delay(amount=amount, unit=cast(Unit, unit))

    def parse_wait_until(self) -> WaitUntil:
        time = self.data.get("time")
        if not isinstance(time, str) or not _TIME.fullmatch(time):
            self.fail("time", f"time must be a 24-hour HH:MM time, got {time!r}")
        weekdays = self.data.get("weekdays")
        if weekdays is not None:
            if not isinstance(weekdays, list) or not weekdays:
                self.fail("weekdays", "weekdays must be a non-empty list of days 0-6 (0 = Monday)")
            for position, day in enumerate(weekdays):
                if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                    self.fail(f"weekdays[{position}]", f"weekday must be 0-6, got {day!r}")
            if len(set(weekdays)) != len(weekdays):
                self.fail("weekdays", "weekdays must not repeat a day")
        timezone = self.optional_text("timezone")
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.fail("timezone", f"unknown time zone {timezone!r}")
        return WaitUntil(
            time=time,
            weekdays=None if weekdays is None else tuple(sorted(weekdays)),
            timezone=timezone,
        )

    def parse_condition(self) -> Condition:
        check = cast(Check, self.choice("check", get_args(Check)))
        if check in ("opened", "clicked"):
            url = self.optional_text("url") if check == "clicked" else None
            return Condition(check=check, node=self.text("node"), url=url)
        if check == "in_list":
            return Condition(check=check, list_id=self.text("list_id"))
        name = self.text("name")
        op = cast(FieldOp, self.choice("op", get_args(FieldOp)))
        if op in _NO_VALUE_OPS:
            return Condition(check=check, name=name, op=op)
        value = self.data.get("value")
        if _is_number(value):
            value = str(value)
        if not isinstance(value, str):
            self.fail("value", f"value must be a string for op {op}")
        return Condition(check=check, name=name, op=op, value=value)

    def parse_split(self) -> Split:
        weights = self.data.get("weights")
        if not isinstance(weights, dict):
            self.fail("weights", 'weights must be an object like {"a": 50, "b": 50}')
        for handle in ("a", "b"):
            weight = weights.get(handle)
            if not _is_number(weight) or weight < 0:
                self.fail(f"weights.{handle}", f"weight {handle} must be a number of at least 0")
        if weights["a"] + weights["b"] <= 0:
            self.fail("weights", "weights must not both be 0")
        return Split(a=weights["a"], b=weights["b"])

    def parse_action(self) -> Action:
        do = cast(ActionKind, self.choice("do", get_args(ActionKind)))
        if do in ("add_to_list", "remove_from_list"):
            return Action(do=do, list_id=self.text("list_id"))
        if do == "set_field":
            field_name = custom_field_name(self.text("name"))
            if not field_name or field_name != field_name.strip() or "\x00" in field_name:
                self.fail(
                    "name",
                    "name must be a custom field, written custom.<field name> (as a field "
                    "condition names it), without surrounding spaces or NUL characters",
                )
            if len(field_name) > MAX_CUSTOM_FIELD_NAME:
                self.fail("name", f"a custom field name is at most {MAX_CUSTOM_FIELD_NAME} long")
            value = self.data.get("value")
            if not isinstance(value, str):
                self.fail("value", "value must be a string")
            if "\x00" in value:
                self.fail("value", "value must not contain NUL characters")
            if len(value) > MAX_CUSTOM_FIELD_VALUE:
                self.fail("value", f"value must be at most {MAX_CUSTOM_FIELD_VALUE} characters")
            return Action(do=do, name=CUSTOM_FIELD_PREFIX + field_name, value=value)
        return Action(do=do)


def _parse_edges(raw_edges: list[Any], nodes: Mapping[str, Node]) -> tuple[Edge, ...]:
    edges: list[Edge] = []
    used: dict[tuple[str, Handle | None], int] = {}
    edge_ids: dict[str, int] = {}
    for index, raw in enumerate(raw_edges):
        path = f"edges[{index}]"
        if not isinstance(raw, dict):
            _fail(path, "must be an object")
        edge_id = raw.get("id")
        if edge_id is not None:
            if not isinstance(edge_id, str) or not edge_id:
                _fail(f"{path}.id", "must be a non-empty string")
            if edge_id in edge_ids:
                _fail(
                    f"{path}.id",
                    f"edge id {edge_id!r} is already used by edges[{edge_ids[edge_id]}]",
                )
            edge_ids[edge_id] = index
        ends: list[str] = []
        for key in ("source", "target"):
            value = raw.get(key)
            if not isinstance(value, str):
                _fail(f"{path}.{key}", "must be a node id")
            if value not in nodes:
                _fail(f"{path}.{key}", f"unknown node {value!r}")
            ends.append(value)
        source, target = ends
        if source == target:
            _fail(f"{path}.target", f"node {source!r} links to itself", source)
        kind = nodes[source].kind
        handle = raw.get("sourceHandle")
        if kind in _HANDLES:
            allowed = _HANDLES[kind]
            if handle not in allowed:
                _fail(
                    f"{path}.sourceHandle",
                    f"{kind} node {source!r} branches on {' or '.join(allowed)}, got {handle!r}",
                    source,
                )
        elif kind == "exit":
            _fail(f"{path}.source", f"exit node {source!r} takes no out edges", source)
        elif handle is not None:
            _fail(
                f"{path}.sourceHandle",
                f"{kind} node {source!r} does not branch; sourceHandle must be null",
                source,
            )
        slot = (source, cast(Handle | None, handle))
        if slot in used:
            on = "" if handle is None else f" on {handle!r}"
            _fail(
                path,
                f"node {source!r} already has an out edge{on} (edges[{used[slot]}])",
                source,
            )
        used[slot] = index
        edges.append(Edge(source=source, target=target, handle=slot[1], id=edge_id))
    return tuple(edges)


def _check_out_edges(graph: Graph, index_of: Mapping[str, int]) -> None:
    for node in graph.nodes.values():
        path = f"nodes[{index_of[node.id]}]"
        if node.kind in _HANDLES:
            for handle in _HANDLES[node.kind]:
                if graph.next(node.id, handle) is None:
                    _fail(path, f"{node.kind} node {node.id!r} has no {handle!r} edge", node.id)
        elif node.kind in ("trigger", "delay", "wait_until") and graph.next(node.id) is None:
            # A trigger alone is a campaign with no steps yet: it can be saved, not started
            # (starting needs an email step).
            if node.kind == "trigger" and len(graph.nodes) == 1:
                continue
            _fail(path, f"{node.kind} node {node.id!r} needs an out edge", node.id)


def _check_email_references(graph: Graph, index_of: Mapping[str, int]) -> None:
    for node in graph.nodes.values():
        data = node.data
        if isinstance(data, Condition) and data.node is not None:
            path = f"nodes[{index_of[node.id]}].data.node"
            ref = graph.nodes.get(data.node)
            if ref is None:
                _fail(path, f"node {node.id!r}: unknown node {data.node!r}", node.id)
            if ref.kind != "email":
                _fail(path, f"node {node.id!r}: {data.node!r} is not an email node", node.id)


def _check_acyclic(graph: Graph, index_of: Mapping[str, int]) -> None:
    done: set[str] = set()
    for start in graph.nodes:
        if start in done:
            continue
        # Iterative depth-first search; `trail` is the current path, to name the cycle.
        trail: list[str] = [start]
        on_trail = {start}
        pending = [iter(graph.out_edges(start))]
        while pending:
            edge = next(pending[-1], None)
            if edge is None:
                pending.pop()
                finished = trail.pop()
                on_trail.discard(finished)
                done.add(finished)
                continue
            if edge.target in on_trail:
                loop = [*trail[trail.index(edge.target) :], edge.target]
                _fail(
                    f"nodes[{index_of[edge.target]}]",
                    f"cycle: {' -> '.join(loop)}",
                    edge.target,
                )
            if edge.target not in done:
                trail.append(edge.target)
                on_trail.add(edge.target)
                pending.append(iter(graph.out_edges(edge.target)))


def _reachable(graph: Graph, without: str | None = None) -> set[str]:
    seen = {graph.trigger_id}
    queue = deque([graph.trigger_id])
    while queue:
        for edge in graph.out_edges(queue.popleft()):
            if edge.target != without and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return seen


def _check_reachable(graph: Graph, index_of: Mapping[str, int]) -> None:
    seen = _reachable(graph)
    for node_id in graph.nodes:
        if node_id not in seen:
            _fail(
                f"nodes[{index_of[node_id]}]",
                f"node {node_id!r} is not reachable from the trigger",
                node_id,
            )


def _check_conditions_follow_emails(graph: Graph, index_of: Mapping[str, int]) -> None:
    for node in graph.nodes.values():
        data = node.data
        # The email comes first on every path exactly when removing it cuts the condition off.
        if (
            isinstance(data, Condition)
            and data.node is not None
            and node.id in _reachable(graph, without=data.node)
        ):
            _fail(
                f"nodes[{index_of[node.id]}].data.node",
                f"node {node.id!r}: email node {data.node!r} does not come before "
                "this condition on every path",
                node.id,
            )


def _check_tree_size(graph: Graph) -> None:
    size: dict[str, int] = {}
    depth: dict[str, int] = {}
    for node_id in reversed(_topological_order(graph)):
        children = [edge.target for edge in graph.out_edges(node_id)]
        size[node_id] = 1 + sum(size[child] for child in children)
        depth[node_id] = 1 + max((depth[child] for child in children), default=0)
        # Stop summing early: shared branches can make the count astronomically large.
        size[node_id] = min(size[node_id], MAX_TREE_SIZE + 1)
    if size[graph.trigger_id] > MAX_TREE_SIZE:
        _fail("$", f"the graph unfolds into more than {MAX_TREE_SIZE} steps; share fewer branches")
    if depth[graph.trigger_id] > MAX_TREE_DEPTH:
        _fail("$", f"a path may be at most {MAX_TREE_DEPTH} steps long")


def _topological_order(graph: Graph) -> list[str]:
    incoming = {node_id: len(graph.in_edges(node_id)) for node_id in graph.nodes}
    queue = deque(node_id for node_id, count in incoming.items() if count == 0)
    order: list[str] = []
    while queue:
        node_id = queue.popleft()
        order.append(node_id)
        for edge in graph.out_edges(node_id):
            incoming[edge.target] -= 1
            if incoming[edge.target] == 0:
                queue.append(edge.target)
    return order


def _data_to_wire(node: Node) -> dict[str, Any]:
    data = node.data
    wire: dict[str, Any]
    if isinstance(data, Email):
        wire = {
            "campaign_mailing_id": data.mailing_id,
            "subject": data.subject,
            "from_email": data.from_email,
            "from_name": data.from_name,
        }
    elif isinstance(data, Delay):
        wire = {"amount": data.amount, "unit": data.unit}
    elif isinstance(data, WaitUntil):
        weekdays = None if data.weekdays is None else list(data.weekdays)
        wire = {"time": data.time, "weekdays": weekdays, "timezone": data.timezone}
    elif isinstance(data, Condition):
        wire = {
            "check": data.check,
            "node": data.node,
            "url": data.url,
            "name": data.name,
            "op": data.op,
            "value": data.value,
            "list_id": data.list_id,
        }
    elif isinstance(data, Split):
        wire = {"weights": {"a": data.a, "b": data.b}}
    elif isinstance(data, Action):
        wire = {"do": data.do, "list_id": data.list_id, "name": data.name, "value": data.value}
    else:
        wire = {}
    return {key: value for key, value in wire.items() if value is not None}
