"""Server-side layout of a lineage graph as SVG: layered by depth, upstream left, downstream
right, the asset itself in the middle column.

The catalogue gives each node its depth (negative upstream, positive downstream); each depth is
a column. Rows within a column are ordered by the barycentre of their neighbours (a few sweeps
each way), which removes most edge crossings in catalogue-shaped graphs at negligible cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NODE_W = 184
NODE_H = 46
COL_GAP = 52
ROW_GAP = 14
PAD = 16
NAME_CHARS = 19  # fits NODE_W at 13px bold in common sans fonts
MAX_NODES = 300
SWEEPS = 4


@dataclass(slots=True)
class Node:
    id: str
    name: str
    type: str
    depth: int
    kind: str  # root | asset | featureset | missing
    deleted: bool
    href: str | None
    x: int = 0
    y: int = 0
    label: str = ""
    sublabel: str = ""

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2

    @property
    def title(self) -> str:
        state = " (deleted)" if self.deleted else ""
        if self.kind == "missing":
            return f"{self.name}: named in depends_on but not in the catalogue"
        return f"{self.name} — {self.type}{state}"


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    path: str
    highlight: bool = False


@dataclass(slots=True)
class Drawing:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    upstream: list[Node] = field(default_factory=list)
    downstream: list[Node] = field(default_factory=list)
    hidden: int = 0  # nodes left out past MAX_NODES

    @property
    def empty(self) -> bool:
        return len(self.nodes) <= 1


def _short(text: str, limit: int = NAME_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(raw: dict[str, Any], root: str) -> str:
    if raw.get("id") == root:
        return "root"
    if raw.get("missing"):
        return "missing"
    if raw.get("type") == "featureset":
        return "featureset"
    return "asset"


def layout(
    graph: dict[str, Any],
    href: Callable[[dict[str, Any]], str | None],
    max_nodes: int = MAX_NODES,
) -> Drawing:
    """Positions every node of a catalogue lineage answer; ``href`` links a node or not."""
    root = str(graph.get("root", ""))
    raw_nodes = [n for n in graph.get("nodes", []) if isinstance(n, dict) and n.get("id")]
    # Nearest first, so a cap drops the far ends of the graph, never the asset itself.
    raw_nodes.sort(key=lambda n: (abs(int(n.get("depth") or 0)), str(n.get("name", ""))))
    hidden = max(0, len(raw_nodes) - max_nodes)
    raw_nodes = raw_nodes[:max_nodes]

    nodes: dict[str, Node] = {}
    for raw in raw_nodes:
        node = Node(
            id=str(raw["id"]),
            name=str(raw.get("name") or raw["id"]),
            type=str(raw.get("type") or ""),
            depth=int(raw.get("depth") or 0),
            kind=_kind(raw, root),
            deleted=bool(raw.get("deleted")),
            href=None,
        )
        node.href = None if node.kind == "missing" else href(raw)
        node.label = _short(node.name, NAME_CHARS - (3 if node.kind == "featureset" else 0))
        if node.kind == "missing":
            node.sublabel = "not in the catalogue"
        else:
            node.sublabel = node.type + (" · deleted" if node.deleted else "")
        nodes[node.id] = node

    pairs = [
        (str(e.get("source")), str(e.get("target")))
        for e in graph.get("edges", [])
        if isinstance(e, dict) and e.get("source") in nodes and e.get("target") in nodes
    ]

    columns: dict[int, list[Node]] = defaultdict(list)
    for node in nodes.values():
        columns[node.depth].append(node)
    depths = sorted(columns)
    for depth in depths:
        columns[depth].sort(key=lambda n: n.name.lower())
    _order(columns, depths, pairs)

    tallest = max((len(col) for col in columns.values()), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
    for index, depth in enumerate(depths):
        col = columns[depth]
        col_height = len(col) * NODE_H + (len(col) - 1) * ROW_GAP
        top = PAD + (height - PAD * 2 - col_height) // 2
        for row, node in enumerate(col):
            node.x = PAD + index * (NODE_W + COL_GAP)
            node.y = top + row * (NODE_H + ROW_GAP)
    width = PAD * 2 + len(depths) * NODE_W + max(0, len(depths) - 1) * COL_GAP

    edges = [
        Edge(s, t, _path(nodes[s], nodes[t]), highlight=root in (s, t))
        for s, t in sorted(set(pairs))
    ]
    ordered = [n for d in depths for n in columns[d]]
    return Drawing(
        width=max(width, NODE_W + PAD * 2),
        height=height,
        nodes=ordered,
        edges=edges,
        upstream=sorted((n for n in ordered if n.depth < 0), key=lambda n: (-n.depth, n.name)),
        downstream=sorted((n for n in ordered if n.depth > 0), key=lambda n: (n.depth, n.name)),
        hidden=hidden,
    )


def _order(columns: dict[int, list[Node]], depths: list[int], pairs: list[tuple[str, str]]) -> None:
    """Barycentre ordering: each column follows the mean row of its neighbours."""
    neighbours: dict[str, list[str]] = defaultdict(list)
    for s, t in pairs:
        neighbours[s].append(t)
        neighbours[t].append(s)

    def centre(node: Node, current: int, rows: dict[str, int]) -> float:
        linked = [rows[o] for o in neighbours[node.id] if o in rows]
        return sum(linked) / len(linked) if linked else float(current)

    def sweep(sequence: list[int]) -> None:
        for depth in sequence:
            rows = {n.id: i for d in depths if d != depth for i, n in enumerate(columns[d])}
            keyed = [(centre(n, i, rows), i, n) for i, n in enumerate(columns[depth])]
            keyed.sort(key=lambda item: (item[0], item[1]))
            columns[depth] = [n for _, _, n in keyed]

    if len(depths) < 2:
        return
    for _ in range(SWEEPS):
        sweep(depths[1:])
        sweep(list(reversed(depths[:-1])))


def _path(source: Node, target: Node) -> str:
    """A cubic curve from the source's right side to the target's left side."""
    x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
    x2, y2 = target.x, target.y + NODE_H // 2
    if x2 > x1:
        dx = max(24, (x2 - x1) // 2)
        return f"M{x1} {y1} C{x1 + dx} {y1} {x2 - dx} {y2} {x2 - 6} {y2}"
    if x2 == target.x and source.x == target.x:
        # Same column (a consumer of a sibling): a bow on the right side, into the right edge.
        xr = x1
        bow = xr + 28
        return f"M{xr} {y1} C{bow} {y1} {bow} {y2} {xr + 6} {y2}"
    # Backwards (a cycle in depends_on): loop around below the boxes.
    drop = max(source.y, target.y) + NODE_H + ROW_GAP // 2
    return (
        f"M{x1} {y1} C{x1 + 40} {y1} {x1 + 40} {drop} {(x1 + x2) // 2} {drop} "
        f"S{x2 - 40} {y2} {x2 - 6} {y2}"
    )
