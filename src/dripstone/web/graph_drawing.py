"""A drip campaign's graph laid out for an inline SVG: plain values in, boxes and arrows out.

Nodes go in layers from the trigger downwards, each node one layer below the longest path
that reaches it, so every arrow points down. Within a layer nodes are ordered by where their
parents are (then by their order in the graph), which keeps most arrows from crossing. No
I/O and no markup: a template draws the result, and another drawing can replace this one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BOX_WIDTH = 220
LINE_HEIGHT = 17
PADDING = 10
GAP_X = 36
GAP_Y = 56
MARGIN = 16
MAX_CHARACTERS = 30  # of a line in a box, at the SVG's 12px font


@dataclass(frozen=True)
class NodeIn:
    """A node to draw: its id, its kind and the lines of text in its box (kind first);
    lines from `quiet_from` on are secondary (counts, say)."""

    id: str
    kind: str
    lines: Sequence[str]
    quiet_from: int | None = None


@dataclass(frozen=True)
class EdgeIn:
    source: str
    target: str
    label: str | None = None  # a branch's handle: yes, no, a, b


@dataclass(frozen=True)
class Box:
    id: str
    kind: str
    x: float
    y: float
    width: float
    height: float
    lines: tuple[tuple[float, str], ...]  # (baseline y, text)
    layer: int
    quiet_from: int | None = None


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    path: str  # an SVG path from the source's bottom to just above the target's top
    head: str  # the arrowhead's triangle, as <polygon points>
    label: str | None
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Drawing:
    width: float
    height: float
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]


def shorten(text: str, limit: int = MAX_CHARACTERS) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _layers(nodes: Sequence[NodeIn], edges: Sequence[EdgeIn], root: str) -> dict[str, int]:
    """Each node's layer: the length of the longest path from `root` to it (the graph is
    acyclic). Nodes no path reaches go below the others."""
    children: dict[str, list[str]] = {n.id: [] for n in nodes}
    indegree = {n.id: 0 for n in nodes}
    for e in edges:
        if e.source in children and e.target in indegree:
            children[e.source].append(e.target)
            indegree[e.target] += 1
    layer = {n.id: 0 for n in nodes}
    ready = [n.id for n in nodes if indegree[n.id] == 0]
    seen: set[str] = set()
    while ready:
        current = ready.pop(0)
        seen.add(current)
        for child in children[current]:
            layer[child] = max(layer[child], layer[current] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    deepest = max(layer.values(), default=0)
    for n in nodes:
        if n.id not in seen:  # on a cycle: cannot happen in a validated graph
            layer[n.id] = deepest + 1
    if root in layer and layer[root] != 0:
        layer[root] = 0
    return layer


def lay_out(nodes: Sequence[NodeIn], edges: Sequence[EdgeIn], root: str) -> Drawing:
    """Place every node in a box and every edge as an arrow between two boxes."""
    layer = _layers(nodes, edges, root)
    order = {n.id: i for i, n in enumerate(nodes)}
    parents: dict[str, list[str]] = {n.id: [] for n in nodes}
    for e in edges:
        if e.target in parents:
            parents[e.target].append(e.source)
    rows: dict[int, list[str]] = {}
    for n in sorted(nodes, key=lambda n: (layer[n.id], order[n.id])):
        rows.setdefault(layer[n.id], []).append(n.id)
    column: dict[str, float] = {}
    for depth in sorted(rows):
        row = rows[depth]

        def where(node_id: str) -> tuple[float, int]:
            placed = [column[p] for p in parents[node_id] if p in column]
            return (sum(placed) / len(placed) if placed else 0.0, order[node_id])

        # Branches sit under their parent in handle order (yes before no, a before b).
        row.sort(key=lambda i: (where(i)[0], _handle_rank(edges, i), order[i]))
        for index, node_id in enumerate(row):
            column[node_id] = index - (len(row) - 1) / 2
    height_of = {n.id: 2 * PADDING + LINE_HEIGHT * max(len(n.lines), 1) for n in nodes}
    row_height = {d: max(height_of[i] for i in ids) for d, ids in rows.items()}
    widest = max((len(ids) for ids in rows.values()), default=1)
    width = 2 * MARGIN + widest * BOX_WIDTH + (widest - 1) * GAP_X
    centre = width / 2
    top: dict[int, float] = {}
    y = float(MARGIN)
    for depth in sorted(rows):
        top[depth] = y
        y += row_height[depth] + GAP_Y
    height = y - GAP_Y + MARGIN
    boxes: dict[str, Box] = {}
    for n in nodes:
        x = centre + column[n.id] * (BOX_WIDTH + GAP_X) - BOX_WIDTH / 2
        box_top = top[layer[n.id]]
        lines = tuple(
            (box_top + PADDING + LINE_HEIGHT * (i + 1) - 4, shorten(text))
            for i, text in enumerate(n.lines)
        )
        boxes[n.id] = Box(
            n.id, n.kind, x, box_top, BOX_WIDTH, height_of[n.id], lines, layer[n.id], n.quiet_from
        )
    arrows = tuple(
        _arrow(boxes[e.source], boxes[e.target], e.label)
        for e in edges
        if e.source in boxes and e.target in boxes
    )
    return Drawing(width, height, tuple(boxes[n.id] for n in nodes), arrows)


_HANDLE_RANK = {"yes": 0, "a": 0, "no": 1, "b": 1}


def _handle_rank(edges: Sequence[EdgeIn], node_id: str) -> int:
    labels = [e.label for e in edges if e.target == node_id and e.label]
    return min((_HANDLE_RANK.get(label, 2) for label in labels), default=2)


def _arrow(source: Box, target: Box, label: str | None) -> Arrow:
    x1, y1 = source.x + source.width / 2, source.y + source.height
    x2, y2 = target.x + target.width / 2, target.y - 6
    bend = (y2 - y1) / 2
    path = (
        f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
    )
    head = f"{x2 - 5:.1f},{y2:.1f} {x2 + 5:.1f},{y2:.1f} {x2:.1f},{y2 + 6:.1f}"
    # The label sits a little below the source, on the arrow's side of it.
    label_x = x1 + (x2 - x1) * 0.2 + (10 if x2 >= x1 else -10)
    return Arrow(source.id, target.id, path, head, label, label_x, y1 + 18)
