"""The drip graph contract: what parses, what is refused (and where), and how it is walked."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from dripstone.drips.graph import (
    MAX_NODES,
    Action,
    Condition,
    Delay,
    Email,
    Graph,
    GraphError,
    Relocation,
    Split,
    WaitUntil,
    custom_field_name,
    parse_graph,
    relocate,
    relocations,
)

MAILING_1 = "11111111-1111-4111-8111-111111111111"
MAILING_2 = "22222222-2222-4222-8222-222222222222"


def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": data, "position": {"x": 0, "y": 0}}


def email(node_id: str, mailing_id: str = MAILING_1) -> dict[str, Any]:
    return node(node_id, "email", campaign_mailing_id=mailing_id)


def delay(node_id: str, amount: Any = 1, unit: Any = "days") -> dict[str, Any]:
    return node(node_id, "delay", amount=amount, unit=unit)


EDGE_IDS = itertools.count()


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    edge_id = f"edge-{next(EDGE_IDS)}"
    return {"id": edge_id, "source": source, "target": target, "sourceHandle": handle}


def document(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> str:
    return json.dumps({"nodes": nodes, "edges": edges})


def refused(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> GraphError:
    with pytest.raises(GraphError) as caught:
        parse_graph(document(nodes, edges))
    return caught.value


def every_kind() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        node("t", "trigger"),
        {"id": "e1", "type": "email", "data": {"campaign_mailing_id": MAILING_1, "subject": "Hi"}},
        delay("d1", 2.5, "hours"),
        node("w1", "wait_until", time="09:00", weekdays=[4, 0, 2], timezone="America/New_York"),
        node("c1", "condition", check="opened", node="e1"),
        node("s1", "split", weights={"a": 30, "b": 70}),
        node("a1", "action", do="add_to_list", list_id="list-1"),
        node("x", "exit"),
        email("e2", MAILING_2),
        node("c2", "condition", check="field", name="custom.plan", op="eq", value="pro"),
        node("a2", "action", do="set_field", name="custom.stage", value="warm"),
        node("c3", "condition", check="clicked", node="e1", url="https://example.com/a"),
        node("c4", "condition", check="in_list", list_id="list-2"),
        node("a3", "action", do="unsubscribe"),
        node("a4", "action", do="remove_from_list", list_id="list-3"),
        node("c5", "condition", check="field", name="email", op="not_empty"),
    ]
    edges = [
        edge("t", "e1"),
        edge("e1", "d1"),
        edge("d1", "w1"),
        edge("w1", "c1"),
        edge("c1", "s1", "yes"),
        edge("s1", "a1", "a"),
        edge("a1", "x"),
        edge("s1", "e2", "b"),
        edge("c1", "c2", "no"),
        edge("c2", "a2", "yes"),
        edge("a2", "x"),
        edge("c2", "c3", "no"),
        edge("c3", "x", "yes"),
        edge("c3", "c4", "no"),
        edge("c4", "a3", "yes"),
        edge("c4", "c5", "no"),
        edge("c5", "a4", "yes"),
        edge("c5", "x", "no"),
        edge("a4", "x"),
    ]
    return nodes, edges


def simple() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [node("t", "trigger"), email("e1"), node("x", "exit")], [
        edge("t", "e1"),
        edge("e1", "x"),
    ]


def test_every_kind_parses_into_typed_nodes() -> None:
    graph = parse_graph(document(*every_kind()))

    assert graph.trigger_id == "t"
    assert graph.nodes["e1"].data == Email(MAILING_1, subject="Hi")
    assert graph.nodes["d1"].data == Delay(2.5, "hours")
    assert graph.nodes["w1"].data == WaitUntil("09:00", (0, 2, 4), "America/New_York")
    assert graph.nodes["c1"].data == Condition("opened", node="e1")
    assert graph.nodes["c2"].data == Condition("field", name="custom.plan", op="eq", value="pro")
    assert graph.nodes["c3"].data == Condition("clicked", node="e1", url="https://example.com/a")
    assert graph.nodes["c4"].data == Condition("in_list", list_id="list-2")
    assert graph.nodes["c5"].data == Condition("field", name="email", op="not_empty")
    assert graph.nodes["s1"].data == Split(30, 70)
    assert graph.nodes["a1"].data == Action("add_to_list", list_id="list-1")
    assert graph.nodes["a2"].data == Action("set_field", name="custom.stage", value="warm")
    assert graph.nodes["a3"].data == Action("unsubscribe")
    assert graph.nodes["a4"].data == Action("remove_from_list", list_id="list-3")
    assert graph.next("c1", "yes") == "s1"
    assert graph.next("c1", "no") == "c2"
    assert graph.next("s1", "b") == "e2"
    assert graph.next("e2") is None
    assert graph.next("x") is None


def test_references_name_their_nodes() -> None:
    graph = parse_graph(document(*every_kind()))

    assert graph.references() == [
        ("e1", "campaign_mailing_id", MAILING_1),
        ("a1", "list_id", "list-1"),
        ("e2", "campaign_mailing_id", MAILING_2),
        ("c4", "list_id", "list-2"),
        ("a4", "list_id", "list-3"),
    ]
    assert graph.mailing_ids() == {MAILING_1, MAILING_2}
    assert graph.list_ids() == {"list-1", "list-2", "list-3"}
    assert graph.email_node_ids() == {"e1", "e2"}


def test_to_json_round_trips_and_is_canonical() -> None:
    graph = parse_graph(document(*every_kind()))

    again = parse_graph(graph.to_json())

    assert again == graph
    assert again.to_json() == graph.to_json()
    assert json.loads(graph.to_json())["nodes"][0] == {
        "id": "t",
        "type": "trigger",
        "data": {},
        "position": {"x": 0, "y": 0},
    }


def test_to_json_drops_unknown_keys_and_keeps_position() -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "t", "type": "trigger", "selected": True},
        {
            "id": "e1",
            "type": "email",
            "data": {"campaign_mailing_id": MAILING_1.upper(), "label": "Welcome"},
            "position": {"x": 10, "y": 20},
        },
    ]
    edges = [{"source": "t", "target": "e1", "animated": True}]

    wire = json.loads(parse_graph(document(nodes, edges)).to_json())

    assert wire == {
        "nodes": [
            {"id": "t", "type": "trigger", "data": {}},
            {
                "id": "e1",
                "type": "email",
                "data": {"campaign_mailing_id": MAILING_1},
                "position": {"x": 10, "y": 20},
            },
        ],
        "edges": [{"source": "t", "target": "e1", "sourceHandle": None}],
    }


def test_tree_blob_repeats_shared_nodes_under_each_parent() -> None:
    nodes = [
        node("t", "trigger"),
        node("s", "split", weights={"a": 1, "b": 1}),
        email("e1"),
        email("e2", MAILING_2),
        node("x", "exit"),
    ]
    edges = [edge("t", "s"), edge("s", "e1", "a"), edge("s", "e2", "b"), edge("e1", "x")]
    edges.append(edge("e2", "x"))

    blob = parse_graph(document(nodes, edges)).tree_blob()

    exit_blob = {"id": "x", "type": "exit", "data": {}, "children": []}
    assert blob == {
        "id": "t",
        "type": "trigger",
        "data": {},
        "children": [
            {
                "handle": None,
                "node": {
                    "id": "s",
                    "type": "split",
                    "data": {"weights": {"a": 1, "b": 1}},
                    "children": [
                        {
                            "handle": "a",
                            "node": {
                                "id": "e1",
                                "type": "email",
                                "data": {"campaign_mailing_id": MAILING_1},
                                "children": [{"handle": None, "node": exit_blob}],
                            },
                        },
                        {
                            "handle": "b",
                            "node": {
                                "id": "e2",
                                "type": "email",
                                "data": {"campaign_mailing_id": MAILING_2},
                                "children": [{"handle": None, "node": exit_blob}],
                            },
                        },
                    ],
                },
            }
        ],
    }
    json.dumps(blob)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("{not json", "$"),
        ("", "$"),
        ("[" * 100_000, "$"),
        ("[]", "$"),
        ('"graph"', "$"),
        ('{"edges": []}', "nodes"),
        ('{"nodes": {}, "edges": []}', "nodes"),
        ('{"nodes": []}', "edges"),
    ],
)
def test_bad_documents_are_refused_at_the_top(text: str, path: str) -> None:
    with pytest.raises(GraphError) as caught:
        parse_graph(text)

    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


def test_not_json_says_so() -> None:
    with pytest.raises(GraphError, match=r"^\$: not valid JSON$"):
        parse_graph("nodes: []")


def test_error_is_a_value_error_with_path_message_and_node() -> None:
    nodes, edges = simple()
    nodes[1]["data"]["campaign_mailing_id"] = "nope"

    error = refused(nodes, edges)

    assert isinstance(error, ValueError)
    assert error.path == "nodes[1].data.campaign_mailing_id"
    assert error.node_id == "e1"
    assert str(error) == f"{error.path}: {error.message}"
    assert "'e1'" in error.message


def test_no_trigger() -> None:
    error = refused([email("e1")], [])
    assert (error.path, error.node_id) == ("nodes", None)
    assert "trigger" in error.message


def test_two_triggers() -> None:
    nodes, edges = simple()
    nodes.append(node("t2", "trigger"))
    edges.append(edge("t2", "x"))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[3]", "t2")
    assert "second trigger" in error.message


def test_node_without_id() -> None:
    nodes, edges = simple()
    del nodes[2]["id"]

    error = refused(nodes, edges)

    assert error.path == "nodes[2].id"


def test_node_that_is_not_an_object() -> None:
    nodes: list[Any] = [node("t", "trigger"), "e1"]
    assert refused(nodes, []).path == "nodes[1]"


@pytest.mark.parametrize("bad_id", ["", 7, None, "x" * 65])
def test_bad_node_ids(bad_id: Any) -> None:
    nodes, edges = simple()
    nodes[1]["id"] = bad_id
    assert refused(nodes, edges).path == "nodes[1].id"


def test_duplicate_ids() -> None:
    nodes, edges = simple()
    nodes.append(email("e1", MAILING_2))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[3].id", "e1")
    assert "nodes[1]" in error.message


def test_unknown_kind() -> None:
    nodes, edges = simple()
    nodes[1]["type"] = "sms"

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[1].type", "e1")
    assert "'sms'" in error.message


def test_too_many_nodes() -> None:
    nodes = [node("t", "trigger")] + [email(f"e{i}") for i in range(MAX_NODES)]
    edges = [edge("t", "e0")] + [edge(f"e{i}", f"e{i + 1}") for i in range(MAX_NODES - 1)]

    error = refused(nodes, edges)

    assert error.path == "nodes"
    assert str(MAX_NODES) in error.message


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"amount": 0, "unit": "days"}, "amount"),
        ({"amount": -1, "unit": "days"}, "amount"),
        ({"amount": "3", "unit": "days"}, "amount"),
        ({"amount": True, "unit": "days"}, "amount"),
        ({"unit": "days"}, "amount"),
        ({"amount": 11, "unit": "years"}, "unit"),
        ({"amount": 3}, "unit"),
        ({"amount": 10_000, "unit": "days"}, "amount"),
        ({"amount": 10**400, "unit": "seconds"}, "amount"),
    ],
)
def test_bad_delay(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), node("d1", "delay", **data), node("x", "exit")]

    error = refused(nodes, [edge("t", "d1"), edge("d1", "x")])

    assert (error.path, error.node_id) == (f"nodes[1].data.{path}", "d1")


def test_delay_amount_nan_is_refused() -> None:
    text = document([node("t", "trigger"), delay("d1", 1)], [edge("t", "d1")])
    with pytest.raises(GraphError) as caught:
        parse_graph(text.replace('"amount": 1', '"amount": NaN'))
    assert caught.value.path == "nodes[1].data.amount"


def test_unknown_unit_lists_the_units() -> None:
    error = refused([node("t", "trigger"), delay("d1", 1, "fortnights")], [edge("t", "d1")])
    assert error.path == "nodes[1].data.unit"
    assert "seconds, minutes, hours, days, weeks" in error.message


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"time": "25:00"}, "time"),
        ({"time": "9:00"}, "time"),
        ({"time": "09:60"}, "time"),
        ({"time": "09:00\n"}, "time"),
        ({"time": 900}, "time"),
        ({}, "time"),
        ({"time": "09:00", "weekdays": []}, "weekdays"),
        ({"time": "09:00", "weekdays": [1, 1]}, "weekdays"),
        ({"time": "09:00", "weekdays": [0, 7]}, "weekdays[1]"),
        ({"time": "09:00", "weekdays": ["1"]}, "weekdays[0]"),
        ({"time": "09:00", "weekdays": [True]}, "weekdays[0]"),
        ({"time": "09:00", "weekdays": 1}, "weekdays"),
        ({"time": "09:00", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"time": "09:00", "timezone": "/etc/passwd"}, "timezone"),
        ({"time": "09:00", "timezone": ""}, "timezone"),
    ],
)
def test_bad_wait_until(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), node("w1", "wait_until", **data), node("x", "exit")]

    error = refused(nodes, [edge("t", "w1"), edge("w1", "x")])

    assert (error.path, error.node_id) == (f"nodes[1].data.{path}", "w1")


def test_bad_time_message_names_the_value() -> None:
    nodes = [node("t", "trigger"), node("w1", "wait_until", time="25:00")]
    assert "'25:00'" in refused(nodes, [edge("t", "w1")]).message


def test_bad_timezone_message_names_the_zone() -> None:
    nodes = [node("t", "trigger"), node("w1", "wait_until", time="09:00", timezone="Nowhere/X")]
    assert "'Nowhere/X'" in refused(nodes, [edge("t", "w1")]).message


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "check"),
        ({"check": "replied"}, "check"),
        ({"check": "opened"}, "node"),
        ({"check": "clicked", "node": "e1", "url": 5}, "url"),
        ({"check": "field", "op": "eq", "value": "x"}, "name"),
        ({"check": "field", "name": "email", "op": "like", "value": "x"}, "op"),
        ({"check": "field", "name": "email", "op": "eq"}, "value"),
        ({"check": "field", "name": "email", "op": "gt", "value": None}, "value"),
        ({"check": "in_list"}, "list_id"),
        ({"check": "in_list", "list_id": ""}, "list_id"),
    ],
)
def test_bad_condition_data(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), email("e1"), node("c1", "condition", **data), node("x", "exit")]
    edges = [edge("t", "e1"), edge("e1", "c1"), edge("c1", "x", "yes"), edge("c1", "x", "no")]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == (f"nodes[2].data.{path}", "c1")


def test_field_condition_value_may_be_a_number() -> None:
    condition = node("c1", "condition", check="field", name="custom.age", op="gt", value=40)
    nodes = [node("t", "trigger"), condition, node("x", "exit")]
    edges = [edge("t", "c1"), edge("c1", "x", "yes"), edge("c1", "x", "no")]

    graph = parse_graph(document(nodes, edges))

    assert graph.nodes["c1"].data == Condition("field", name="custom.age", op="gt", value="40")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "weights"),
        ({"weights": [1, 1]}, "weights"),
        ({"weights": {"a": 1}}, "weights.b"),
        ({"weights": {"a": -1, "b": 1}}, "weights.a"),
        ({"weights": {"a": "1", "b": 1}}, "weights.a"),
        ({"weights": {"a": 0, "b": 0}}, "weights"),
    ],
)
def test_bad_split_data(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), node("s1", "split", **data), node("x", "exit")]
    edges = [edge("t", "s1"), edge("s1", "x", "a"), edge("s1", "x", "b")]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == (f"nodes[1].data.{path}", "s1")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "do"),
        ({"do": "delete"}, "do"),
        ({"do": "add_to_list"}, "list_id"),
        ({"do": "remove_from_list", "list_id": 3}, "list_id"),
        ({"do": "set_field", "value": "x"}, "name"),
        ({"do": "set_field", "name": "custom.x"}, "value"),
        ({"do": "set_field", "name": "custom.", "value": "x"}, "name"),
        ({"do": "set_field", "name": "custom. x", "value": "x"}, "name"),
        ({"do": "set_field", "name": "custom." + "x" * 256, "value": "x"}, "name"),
        ({"do": "set_field", "name": "a\x00b", "value": "x"}, "name"),
        ({"do": "set_field", "name": "custom.x", "value": "a\x00b"}, "value"),
        ({"do": "set_field", "name": "custom.x", "value": "x" * 10_001}, "value"),
    ],
)
def test_bad_action_data(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), node("a1", "action", **data)]

    error = refused(nodes, [edge("t", "a1")])

    assert (error.path, error.node_id) == (f"nodes[1].data.{path}", "a1")


@pytest.mark.parametrize("name", ["custom.stage", "stage"])
def test_set_field_names_a_custom_field_the_way_a_field_condition_does(name: str) -> None:
    nodes = [
        node("t", "trigger"),
        node("a1", "action", do="set_field", name=name, value="warm"),
        node("c1", "condition", check="field", name="custom.stage", op="eq", value="warm"),
        node("x", "exit"),
    ]
    edges = [edge("t", "a1"), edge("a1", "c1"), edge("c1", "x", "yes"), edge("c1", "x", "no")]

    graph = parse_graph(document(nodes, edges))

    assert graph.nodes["a1"].data == Action("set_field", name="custom.stage", value="warm")
    assert json.loads(graph.to_json())["nodes"][1]["data"]["name"] == "custom.stage"
    assert custom_field_name("custom.stage") == "stage"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "campaign_mailing_id"),
        ({"campaign_mailing_id": "mailing-1"}, "campaign_mailing_id"),
        ({"campaign_mailing_id": MAILING_1, "subject": 3}, "subject"),
        ({"campaign_mailing_id": MAILING_1, "from_email": ["a@b.c"]}, "from_email"),
    ],
)
def test_bad_email_data(data: dict[str, Any], path: str) -> None:
    nodes = [node("t", "trigger"), node("e1", "email", **data)]

    error = refused(nodes, [edge("t", "e1")])

    assert (error.path, error.node_id) == (f"nodes[1].data.{path}", "e1")


def test_data_and_position_must_be_objects() -> None:
    nodes, edges = simple()
    nodes[1]["data"] = "mailing"
    assert refused(nodes, edges).path == "nodes[1].data"
    nodes, edges = simple()
    nodes[1]["position"] = [0, 0]
    assert refused(nodes, edges).path == "nodes[1].position"


def test_edge_to_unknown_node() -> None:
    nodes, edges = simple()
    edges.append(edge("x", "ghost"))

    error = refused(nodes, edges)

    assert error.path == "edges[2].target"
    assert "'ghost'" in error.message


def test_edge_from_unknown_node() -> None:
    nodes, edges = simple()
    edges.insert(0, edge("ghost", "x"))
    assert refused(nodes, edges).path == "edges[0].source"


@pytest.mark.parametrize("bad_edge", [5, {"source": "t"}, {"source": "t", "target": 1}])
def test_malformed_edges(bad_edge: Any) -> None:
    nodes, edges = simple()
    edges.append(bad_edge)
    assert refused(nodes, edges).path.startswith("edges[2]")


def test_duplicate_edge_ids() -> None:
    nodes, edges = simple()
    edges[1]["id"] = edges[0]["id"]
    assert refused(nodes, edges).path == "edges[1].id"


def test_self_loop() -> None:
    nodes, edges = simple()
    edges[1] = edge("e1", "e1")

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[1].target", "e1")


def test_plain_node_edge_must_not_carry_a_handle() -> None:
    nodes, edges = simple()
    edges[1]["sourceHandle"] = "yes"

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[1].sourceHandle", "e1")


def test_second_out_edge_of_a_plain_node() -> None:
    nodes, edges = simple()
    nodes.append(email("e2"))
    edges.append(edge("e1", "e2"))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[2]", "e1")
    assert "already has an out edge" in error.message


def test_exit_takes_no_out_edge() -> None:
    nodes, edges = simple()
    nodes.append(email("e2"))
    edges.append(edge("x", "e2"))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[2].source", "x")


def condition_graph(handles: list[str | None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        node("t", "trigger"),
        node("c1", "condition", check="in_list", list_id="l1"),
        node("x", "exit"),
    ]
    return nodes, [edge("t", "c1")] + [edge("c1", "x", handle) for handle in handles]


@pytest.mark.parametrize(("handles", "missing"), [(["yes"], "'no'"), (["no"], "'yes'")])
def test_condition_without_both_edges(handles: list[str | None], missing: str) -> None:
    error = refused(*condition_graph(handles))

    assert (error.path, error.node_id) == ("nodes[1]", "c1")
    assert missing in error.message


@pytest.mark.parametrize("handle", [None, "a", "maybe"])
def test_condition_edge_with_a_wrong_handle(handle: str | None) -> None:
    nodes, edges = condition_graph(["yes", handle])

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[2].sourceHandle", "c1")


def test_condition_with_two_yes_edges() -> None:
    nodes, edges = condition_graph(["yes", "yes"])

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("edges[2]", "c1")


def test_split_without_b_edge() -> None:
    nodes = [node("t", "trigger"), node("s1", "split", weights={"a": 1, "b": 1}), node("x", "exit")]

    error = refused(nodes, [edge("t", "s1"), edge("s1", "x", "a")])

    assert (error.path, error.node_id) == ("nodes[1]", "s1")
    assert "'b'" in error.message


def test_split_edge_with_a_condition_handle() -> None:
    nodes = [node("t", "trigger"), node("s1", "split", weights={"a": 1, "b": 1}), node("x", "exit")]

    error = refused(nodes, [edge("t", "s1"), edge("s1", "x", "yes")])

    assert (error.path, error.node_id) == ("edges[1].sourceHandle", "s1")


@pytest.mark.parametrize(
    ("edges", "index"),
    [
        ([edge("d1", "w1"), edge("w1", "x")], 0),
        ([edge("t", "d1"), edge("w1", "x")], 1),
        ([edge("t", "d1"), edge("d1", "w1")], 2),
    ],
)
def test_nodes_that_must_lead_somewhere(edges: list[dict[str, Any]], index: int) -> None:
    nodes = [node("t", "trigger"), delay("d1"), node("w1", "wait_until", time="09:00")]
    nodes.append(node("x", "exit"))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == (f"nodes[{index}]", nodes[index]["id"])
    assert "needs an out edge" in error.message


def test_a_lone_trigger_is_an_empty_campaign_but_a_trigger_among_steps_must_lead_on() -> None:
    parsed = parse_graph(document([node("t", "trigger")], []))

    assert list(parsed.nodes) == ["t"]
    assert parsed.email_node_ids() == set()
    error = refused([node("t", "trigger"), node("x", "exit")], [])
    assert (error.path, error.node_id) == ("nodes[0]", "t")
    assert "needs an out edge" in error.message


def test_unreachable_node() -> None:
    nodes, edges = simple()
    nodes.append(email("lost"))

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[3]", "lost")
    assert "not reachable" in error.message


def test_cycle() -> None:
    nodes = [node("t", "trigger"), delay("d1"), delay("d2")]
    edges = [edge("t", "d1"), edge("d1", "d2"), edge("d2", "d1")]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[1]", "d1")
    assert "cycle: d1 -> d2 -> d1" in error.message


def test_cycle_back_to_the_trigger() -> None:
    nodes = [node("t", "trigger"), email("e1")]

    error = refused(nodes, [edge("t", "e1"), edge("e1", "t")])

    assert error.node_id == "t"
    assert "cycle" in error.message


def test_opened_refers_to_an_email_that_is_not_an_ancestor() -> None:
    nodes = [
        node("t", "trigger"),
        node("c1", "condition", check="opened", node="e1"),
        email("e1"),
        node("x", "exit"),
    ]
    edges = [edge("t", "c1"), edge("c1", "e1", "yes"), edge("c1", "x", "no")]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[1].data.node", "c1")
    assert "'e1'" in error.message


def test_clicked_refers_to_an_email_on_only_one_path() -> None:
    nodes = [
        node("t", "trigger"),
        node("s1", "split", weights={"a": 1, "b": 1}),
        email("e1"),
        delay("d1"),
        node("c1", "condition", check="clicked", node="e1"),
        node("x", "exit"),
    ]
    edges = [
        edge("t", "s1"),
        edge("s1", "e1", "a"),
        edge("s1", "d1", "b"),
        edge("e1", "c1"),
        edge("d1", "c1"),
        edge("c1", "x", "yes"),
        edge("c1", "x", "no"),
    ]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[4].data.node", "c1")
    assert "every path" in error.message


@pytest.mark.parametrize(("ref", "words"), [("d1", "not an email node"), ("zz", "unknown node")])
def test_opened_must_name_an_email_node(ref: str, words: str) -> None:
    nodes = [
        node("t", "trigger"),
        delay("d1"),
        node("c1", "condition", check="opened", node=ref),
        node("x", "exit"),
    ]
    edges = [edge("t", "d1"), edge("d1", "c1"), edge("c1", "x", "yes"), edge("c1", "x", "no")]

    error = refused(nodes, edges)

    assert (error.path, error.node_id) == ("nodes[2].data.node", "c1")
    assert words in error.message


def test_a_graph_that_unfolds_too_far_is_refused() -> None:
    nodes = [node("t", "trigger")]
    edges = [edge("t", "s0")]
    for i in range(14):
        nodes.append(node(f"s{i}", "split", weights={"a": 1, "b": 1}))
        edges += [edge(f"s{i}", f"s{i + 1}", "a"), edge(f"s{i}", f"s{i + 1}", "b")]
    nodes.append(node("s14", "exit"))

    error = refused(nodes, edges)

    assert error.path == "$"
    assert "unfolds" in error.message


def test_a_path_that_is_too_long_is_refused() -> None:
    nodes = [node("t", "trigger")] + [email(f"e{i}") for i in range(210)]
    edges = [edge("t", "e0")] + [edge(f"e{i}", f"e{i + 1}") for i in range(209)]

    error = refused(nodes, edges)

    assert error.path == "$"


def test_the_first_problem_is_reported() -> None:
    nodes, edges = simple()
    nodes[2]["type"] = "bogus"
    nodes.append(node("t2", "trigger"))
    edges.append(edge("x", "ghost"))

    assert refused(nodes, edges).path == "nodes[2].type"


def parse(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Graph:
    return parse_graph(document(nodes, edges))


def test_relocate_stays_on_a_node_that_is_kept() -> None:
    old = parse(
        [node("t", "trigger"), delay("d1"), email("e1")], [edge("t", "d1"), edge("d1", "e1")]
    )
    new = parse(
        [node("t", "trigger"), email("e0"), delay("d1", 5), email("e1")],
        [edge("t", "e0"), edge("e0", "d1"), edge("d1", "e1")],
    )

    assert relocate(old, new, "d1") == "d1"


def test_relocate_moves_to_the_node_that_replaced_it() -> None:
    old = parse(
        [node("t", "trigger"), email("e1"), delay("d1"), email("e2")],
        [edge("t", "e1"), edge("e1", "d1"), edge("d1", "e2")],
    )
    new = parse(
        [node("t", "trigger"), email("e1"), node("w9", "wait_until", time="09:00"), email("e2")],
        [edge("t", "e1"), edge("e1", "w9"), edge("w9", "e2")],
    )

    assert relocate(old, new, "d1") == "w9"


def test_relocate_treats_a_changed_kind_as_a_replacement() -> None:
    old = parse(
        [node("t", "trigger"), delay("d1"), email("e1")], [edge("t", "d1"), edge("d1", "e1")]
    )
    new = parse(
        [node("t", "trigger"), email("d1"), email("e1")], [edge("t", "d1"), edge("d1", "e1")]
    )

    assert relocate(old, new, "d1") == "d1"
    assert new.nodes["d1"].kind == "email"


def test_relocate_follows_the_handle_the_old_path_took() -> None:
    def branching(no_target: str) -> Graph:
        return parse(
            [
                node("t", "trigger"),
                node("c1", "condition", check="in_list", list_id="l1"),
                delay("d_yes"),
                delay(no_target),
                node("x", "exit"),
            ],
            [
                edge("t", "c1"),
                edge("c1", "d_yes", "yes"),
                edge("c1", no_target, "no"),
                edge("d_yes", "x"),
                edge(no_target, "x"),
            ],
        )

    assert relocate(branching("d_no"), branching("d_other"), "d_no") == "d_other"


def test_relocate_walks_back_past_removed_ancestors() -> None:
    old = parse(
        [node("t", "trigger"), email("e1"), delay("d1"), delay("d2"), email("e2")],
        [edge("t", "e1"), edge("e1", "d1"), edge("d1", "d2"), edge("d2", "e2")],
    )
    new = parse(
        [node("t", "trigger"), email("e1"), email("e2")],
        [edge("t", "e1"), edge("e1", "e2")],
    )

    assert relocate(old, new, "d2") == "e2"


def test_relocate_exits_when_the_ancestor_now_ends_the_path() -> None:
    old = parse(
        [node("t", "trigger"), email("e1"), delay("d1"), email("e2")],
        [edge("t", "e1"), edge("e1", "d1"), edge("d1", "e2")],
    )
    new = parse([node("t", "trigger"), email("e1")], [edge("t", "e1")])

    assert relocate(old, new, "d1") is None


def test_relocate_takes_a_renamed_trigger_for_the_same_entry() -> None:
    old = parse(
        [node("t", "trigger"), delay("d1"), email("e1")], [edge("t", "d1"), edge("d1", "e1")]
    )
    new = parse([node("start", "trigger"), email("e9")], [edge("start", "e9")])

    assert relocate(old, new, "t") == "start"  # still waiting to begin (a paused campaign)
    assert relocate(old, new, "d1") == "e9"  # the trigger's next step now


def test_relocate_uses_the_first_parent_by_edge_order() -> None:
    nodes = [
        node("t", "trigger"),
        node("s1", "split", weights={"a": 1, "b": 1}),
        email("ea"),
        email("eb"),
        delay("d1"),
        email("end"),
    ]
    edges = [
        edge("t", "s1"),
        edge("s1", "ea", "a"),
        edge("s1", "eb", "b"),
        edge("eb", "d1"),
        edge("ea", "d1"),
        edge("d1", "end"),
    ]
    old = parse(nodes, edges)
    new_nodes = [n for n in nodes if n["id"] != "d1"] + [email("ea_next"), email("eb_next")]
    new_edges = [*edges[:3], edge("ea", "ea_next"), edge("eb", "eb_next")]
    new_edges.append(edge("ea_next", "end"))
    new_edges.append(edge("eb_next", "end"))

    assert relocate(old, parse(new_nodes, new_edges), "d1") == "eb_next"


def test_relocate_rejects_a_node_the_old_graph_lacks() -> None:
    graph = parse(*simple())
    with pytest.raises(KeyError):
        relocate(graph, graph, "ghost")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"nodes": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        (
            '{"nodes": [], "edges": [], "x": ' + "9" * 5000 + "}",
            "holds an integer longer than 4,300 digits",
        ),
    ],
)
def test_json_python_cannot_read_says_why(text: str, message: str) -> None:
    with pytest.raises(GraphError, match=rf"^\$: {message}$"):
        parse_graph(text)


def test_relocations_say_per_waiting_node_who_stays_moves_or_leaves() -> None:
    old = parse(
        [node("t", "trigger"), email("e1"), delay("d1"), delay("d2"), email("e2"), email("e3")],
        [edge("t", "e1"), edge("e1", "d1"), edge("d1", "d2"), edge("d2", "e2"), edge("e2", "e3")],
    )
    # d1 becomes a wait_until w9 (its people move there); d2's delay changes (they stay);
    # e3 is removed and the path now ends at e2 (its people leave).
    new = parse(
        [
            node("t", "trigger"),
            email("e1"),
            node("w9", "wait_until", time="09:00"),
            delay("d2", 3),
            email("e2"),
        ],
        [edge("t", "e1"), edge("e1", "w9"), edge("w9", "d2"), edge("d2", "e2")],
    )

    plan = relocations(old, new, {"d2": 7, "d1": 4, "e3": 1, "gone": 2, "e1": 5})

    assert plan == [
        Relocation("e1", 5, "stays", None, changed=False),
        Relocation("d1", 4, "moves", "w9", changed=True),
        Relocation("d2", 7, "stays", None, changed=True),
        Relocation("e3", 1, "leaves", None, changed=True),
        Relocation("gone", 2, "leaves", None, changed=True),
    ]


def test_relocations_agree_with_relocate_for_every_node() -> None:
    old = parse(
        [node("t", "trigger"), email("e1"), delay("d1"), email("e2")],
        [edge("t", "e1"), edge("e1", "d1"), edge("d1", "e2")],
    )
    new = parse([node("t2", "trigger"), email("e3")], [edge("t2", "e3")])

    plan = relocations(old, new, dict.fromkeys(old.nodes, 1))

    for moved in plan:
        target = relocate(old, new, moved.node_id)
        assert moved.to == (target if target != moved.node_id else None)
        assert (moved.outcome == "leaves") == (target is None)
