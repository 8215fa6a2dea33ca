"""Server-side layout of a lineage graph as SVG: layered by depth, upstream left, downstream
right, the asset itself in the middle column.

Each edge keeps its origin (a manifest's ``depends_on``, an OpenLineage run, a metastore):
edges are drawn in the style of their origin, and two origins linking the same pair are drawn
side by side, a few pixels apart, so neither hides the other.

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
# Legend text per edge origin, in the order the legend lists them.
ORIGINS = {
    "manifest": "declared in a manifest (depends_on)",
    "openlineage": "reported by an OpenLineage run",
    "metastore": "read from a metastore",
}
ORIGIN_GAP = 4  # pixels between parallel edges of different origins


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
    origin: str = "manifest"
    run_id: str | None = None

    @property
    def title(self) -> str:
        text = ORIGINS.get(self.origin, self.origin)
        return f"{text} (run {self.run_id})" if self.run_id else text


@dataclass(slots=True)
class Drawing:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    upstream: list[Node] = field(default_factory=list)
    downstream: list[Node] = field(default_factory=list)
    hidden: int = 0  # nodes the picture leaves out past MAX_NODES (the lists have them)
    origins: list[tuple[str, str]] = field(default_factory=list)  # (origin, legend text)

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

    # Every node goes in the lists below the picture; the picture takes the nearest.
    every: list[Node] = []
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
        every.append(node)
    nodes = {node.id: node for node in every[:max_nodes]}

    drawn: dict[tuple[str, str, str], str | None] = {}
    for e in graph.get("edges", []):
        if isinstance(e, dict) and e.get("source") in nodes and e.get("target") in nodes:
            key = (str(e["source"]), str(e["target"]), str(e.get("origin") or "manifest"))
            drawn.setdefault(key, e.get("run_id"))
    pairs = [(s, t) for s, t, _ in drawn]

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

    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s, t, origin in sorted(drawn, key=lambda k: (k[0], k[1], _origin_rank(k[2]))):
        by_pair[(s, t)].append(origin)
    edges = []
    for (s, t), origins in sorted(by_pair.items()):
        for index, origin in enumerate(origins):
            shift = (index - (len(origins) - 1) / 2) * ORIGIN_GAP
            edges.append(
                Edge(
                    s,
                    t,
                    _path(nodes[s], nodes[t], round(shift)),
                    highlight=root in (s, t),
                    origin=origin,
                    run_id=drawn[(s, t, origin)],
                )
            )
    present = {e.origin for e in edges}
    legend = [(o, ORIGINS.get(o, o)) for o in sorted(present, key=_origin_rank)]
    ordered = [n for d in depths for n in columns[d]]
    return Drawing(
        width=max(width, NODE_W + PAD * 2),
        height=height,
        nodes=ordered,
        edges=edges,
        upstream=sorted((n for n in every if n.depth < 0), key=lambda n: (-n.depth, n.name)),
        downstream=sorted((n for n in every if n.depth > 0), key=lambda n: (n.depth, n.name)),
        hidden=hidden,
        origins=legend,
    )


def _origin_rank(origin: str) -> tuple[int, str]:
    known = list(ORIGINS)
    return (known.index(origin) if origin in known else len(known), origin)


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


def _path(source: Node, target: Node, shift: int = 0) -> str:
    """A cubic curve from the source's right side to the target's left side, ``shift`` pixels
    below the middle of both (parallel edges of different origins)."""
    x1, y1 = source.x + NODE_W, source.y + NODE_H // 2 + shift
    x2, y2 = target.x, target.y + NODE_H // 2 + shift
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
