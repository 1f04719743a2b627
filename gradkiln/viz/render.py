"""Graph -> Graphviz: forward, gradient and source nodes coloured, shapes and dtypes on edges.

DOT is written without any system dependency; SVG, PNG and PDF need Graphviz's `dot`
executable (`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`).

Big graphs are summarised on request: `collapse_sources` folds params and constants into the
label of the node that reads them; `group_by="scope"` draws nodes in nested clusters by name
scope (see `scopes.py`) and `depth` collapses the clusters deeper than it into one box with a
node count; `max_nodes` does both, choosing the deepest depth that fits. Drawings of more than
`EDGE_LABEL_LIMIT` nodes show edge types as tooltips, not labels (Graphviz takes minutes to
place the labels of a few hundred edges).
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import graphviz

from ..atomic import write_atomic
from ..graph import Graph, Node, Value, VizError
from ..graph.printer import format_attr
from .scopes import SOURCES, Scope, assign_scopes

# fill colour per node role ("forward", "grad", "recompute", "optimizer": training-graph updates) and per source op
ROLE_COLOURS = {"forward": "#cfe2f3", "grad": "#f4cccc", "recompute": "#fce5cd", "optimizer": "#d9d2e9"}
SOURCE_COLOURS = {"input": "#d9ead3", "param": "#fff2cc", "constant": "#eeeeee"}
FORMATS = ("svg", "png", "pdf")
# drawings with more nodes carry edge types as tooltips: dot spends minutes placing labels on them
EDGE_LABEL_LIMIT = 150
EXPRESSION_CHARS = 400  # of each fused expression in a tooltip
_ATTR_LIMIT = 3  # attributes (and collapsed sources) shown in a node label; the rest go to the tooltip


@dataclass(frozen=True)
class Summary:
    """How to summarise a drawing (see the module docstring); the default draws every node."""

    collapse_sources: bool = False
    group_by: str | None = None
    depth: int | None = None
    max_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.group_by not in (None, "scope"):
            raise VizError(f"group_by={self.group_by!r} is not supported: use group_by='scope' or None")
        for name in ("depth", "max_nodes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise VizError(f"{name}={value!r}: expected a non-negative int or None")


@dataclass
class _Layout:
    """What to draw: each shown node's unit (its own id, or the box it is collapsed into),
    the sources folded into labels, and the cluster tree."""

    unit: dict[int, str] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    boxes: dict[str, tuple[Scope, str, list[int]]] = field(default_factory=dict)  # id -> (scope, role, nodes)
    cluster: dict[str, tuple[Scope, str]] = field(default_factory=dict)  # unit -> (cluster path, role)


def to_dot(
    graph: Graph,
    outputs: Iterable[Value] | None = None,
    *,
    collapse_sources: bool = False,
    group_by: str | None = None,
    depth: int | None = None,
    max_nodes: int | None = None,
) -> graphviz.Digraph:
    """A graphviz Digraph of `graph` (only what `outputs` need, when given); outputs get a
    double border. The keyword options summarise big graphs (module docstring)."""
    outputs = list(outputs or [])
    node_ids, output_nodes, layout = _plan(graph, outputs, Summary(collapse_sources, group_by, depth, max_nodes))
    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": "TB"}, node_attr={"fontname": "Helvetica"})
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    _emit_units(dot, graph, node_ids, layout, output_nodes)
    edges = _unit_edges(graph, node_ids, layout)
    where = "label" if len(set(layout.unit.values())) <= EDGE_LABEL_LIMIT else "tooltip"
    for (src, dst), values in edges.items():
        text = str(graph.type_of(next(iter(values)))) if len(values) == 1 else f"{len(values)} values"
        dot.edge(src, dst, **{where: text})
    return dot


def drawn_units(graph: Graph, outputs: Iterable[Value] | None = None, **summary: Any) -> int:
    """How many boxes and nodes `to_dot(graph, outputs, **summary)` draws, without drawing (Graphviz
    needs seconds per hundred units; callers can refuse a drawing too big to be useful)."""
    return len(set(_plan(graph, list(outputs or []), Summary(**summary))[2].unit.values()))


def _plan(graph: Graph, outputs: list[Value], summary: Summary) -> tuple[list[int], set[int], _Layout]:
    node_ids = graph.needed_nodes(outputs) if outputs else graph.topological_order()
    output_nodes = {v.node for v in outputs}
    return node_ids, output_nodes, _layout(graph, node_ids, output_nodes, summary)


def _layout(graph: Graph, node_ids: list[int], output_nodes: set[int], summary: Summary) -> _Layout:
    layout = _Layout()
    if summary.collapse_sources or summary.max_nodes is not None:
        layout.hidden = {
            n for n in node_ids if graph.nx.nodes[n]["op"] in ("param", "constant") and n not in output_nodes
        }
    shown = [n for n in node_ids if n not in layout.hidden]
    if summary.group_by is None and summary.max_nodes is None:
        layout.unit = {n: str(n) for n in shown}
        return layout
    scopes = assign_scopes(graph, node_ids)
    depth, box_ids = summary.depth, {}
    if depth is None and summary.max_nodes is not None:
        depth = _fitting_depth(graph, shown, scopes, summary.max_nodes)
    for n in shown:
        scope, role = scopes[n], graph.nx.nodes[n]["role"]
        if depth is not None and len(scope) > depth:
            key = (scope[: depth + 1], role)
            box = box_ids.setdefault(key, f"box{len(box_ids)}")
            layout.boxes.setdefault(box, (*key, []))[2].append(n)
            layout.unit[n] = box
            layout.cluster[box] = (scope[:depth], role)
        else:
            layout.unit[n] = str(n)
            layout.cluster[str(n)] = (scope, role)
    return layout


def _fitting_depth(graph: Graph, shown: list[int], scopes: dict[int, Scope], max_nodes: int) -> int:
    """The deepest scope depth at which at most `max_nodes` units are drawn (0 if none fits)."""
    deepest = max((len(scopes[n]) for n in shown), default=0)
    for depth in range(deepest, 0, -1):
        units = {(scopes[n][: depth + 1], graph.nx.nodes[n]["role"]) if len(scopes[n]) > depth else n for n in shown}
        if len(units) <= max_nodes:
            return depth
    return 0


def _emit_units(
    dot: graphviz.Digraph, graph: Graph, node_ids: list[int], layout: _Layout, output_nodes: set[int]
) -> None:
    """Add every node and box, inside nested clusters by (role, scope path) when grouping."""
    hidden_inputs: dict[int, list[Node]] = {}
    for n in node_ids:
        if n not in layout.hidden:
            hidden_inputs[n] = [graph.node(v.node) for v in graph.inputs_of(n) if v.node in layout.hidden]
    tree: dict = {"units": [], "children": {}}
    for unit in dict.fromkeys(layout.unit.values()):
        path, role = layout.cluster.get(unit, ((), "forward"))
        branch = tree
        for depth in range(1, len(path) + 1):
            branch = branch["children"].setdefault((role, path[:depth]), {"units": [], "children": {}})
        branch["units"].append(unit)

    def style(unit: str) -> dict[str, str]:
        if unit in layout.boxes:
            scope, role, members = layout.boxes[unit]
            params = {p.id for m in members for p in hidden_inputs[m] if p.op == "param"}
            return _box_style(scope, role, len(members), len(params))
        node_id = int(unit)
        return _node_style(graph.node(node_id), node_id in output_nodes, hidden_inputs[node_id])

    clusters = itertools.count()

    def emit(target: graphviz.Digraph, branch: dict) -> None:
        for unit in branch["units"]:
            target.node(unit, **style(unit))
        for (role, path), child in branch["children"].items():
            if len(child["units"]) == 1 and not child["children"]:  # a cluster of one unit says nothing more
                emit(target, child)
                continue
            with target.subgraph(name=f"cluster{next(clusters)}") as sub:
                suffix = "" if role == "forward" else f" ({role})"
                sub.attr(
                    label=f"{'.'.join(path)}{suffix}",
                    style="rounded,dashed",
                    color="#999999",
                    fontsize="10",
                    fontname="Helvetica",
                )
                emit(sub, child)

    emit(dot, tree)


def _unit_edges(graph: Graph, node_ids: list[int], layout: _Layout) -> dict[tuple[str, str], set[Value]]:
    """Edges between drawn units, merged: each carries the set of values flowing along it."""
    edges: dict[tuple[str, str], set[Value]] = {}
    for dst in node_ids:
        if dst in layout.hidden:
            continue
        for value in graph.inputs_of(dst):
            src_unit, dst_unit = layout.unit.get(value.node), layout.unit[dst]
            if src_unit is not None and (src_unit != dst_unit or src_unit not in layout.boxes):
                edges.setdefault((src_unit, dst_unit), set()).add(value)
    return edges


def _source_line(source: Node) -> str:
    if source.op == "param":
        return f"{source.name}: {source.types[0]}"
    value = source.attrs.get("value")
    if value is not None and value.size == 1:
        return f"const {format_attr(value.reshape(()).item())}"
    return f"const {source.types[0]}"


def _fused_lines(node: Node) -> tuple[list[str], list[str]]:
    """A fused node's label line (its size) and tooltip lines (each output's sympy expression;
    x0 is the product in a fused_matmul, and a fused_reduce reduces out0)."""
    exprs = list(node.attrs["exprs"])
    shown = f"{len(exprs)} output{'s' * (len(exprs) != 1)}, sympy expressions in the tooltip"
    return [shown], [f"out{k} = {str(e)[:EXPRESSION_CHARS]}" for k, e in enumerate(exprs)]


def _node_style(node: Node, is_output: bool, folded: Sequence[Node] = ()) -> dict[str, str]:
    attrs = {k: format_attr(v) for k, v in node.attrs.items() if k not in ("value", "type", "exprs")}
    lines = [f"{k}={v}" for k, v in attrs.items()] + [_source_line(s) for s in folded]
    expressions: list[str] = []
    if "exprs" in node.attrs:  # fused, fused_reduce, fused_matmul
        head, expressions = _fused_lines(node)
        lines = head + lines
    shown = "\n".join(
        lines[:_ATTR_LIMIT] + ([f"(+{len(lines) - _ATTR_LIMIT} more)"] if len(lines) > _ATTR_LIMIT else [])
    )
    title = node.op if node.name is None else f"{node.name}\n{node.op}"
    colour = SOURCE_COLOURS.get(node.op) or ROLE_COLOURS.get(node.role, "#ffffff")
    tooltip = f"{node.label} = {node.op} : {', '.join(map(str, node.types))} ({node.role})"
    return {
        "label": f"{title}\n{shown}".strip(),
        "tooltip": "\n".join([tooltip, *lines, *expressions]),
        "shape": "box" if node.op not in SOURCES else "ellipse",
        "style": "filled,rounded",
        "fillcolor": colour,
        "peripheries": "2" if is_output else "1",
    }


def _box_style(scope: Scope, role: str, count: int, params: int) -> dict[str, str]:
    suffix = "" if role == "forward" else f" ({role})"
    detail = f"{count} node{'s' * (count != 1)}" + (f", {params} param{'s' * (params != 1)}" if params else "")
    return {
        "label": f"{'.'.join(scope)}{suffix}\n{detail}",
        "tooltip": f"scope {'.'.join(scope)}{suffix}: {detail}, collapsed",
        "shape": "box3d",
        "style": "filled",
        "fillcolor": ROLE_COLOURS.get(role, "#ffffff"),
    }


def write_dot(graph: Graph, path: str | Path, outputs: Iterable[Value] | None = None, **summary: object) -> Path:
    """Write the DOT source of `graph` to `path` (needs no Graphviz install)."""
    return write_atomic(path, to_dot(graph, outputs, **summary).source.encode())


def pipe(dot: graphviz.Digraph, fmt: str, what: str) -> bytes:
    """Run Graphviz `dot` on `dot`, producing `fmt` bytes; a missing or failing `dot` is a VizError
    naming `what` was being drawn."""
    if shutil.which("dot") is None:
        raise VizError(
            f"rendering {what} needs the Graphviz `dot` executable, which is not on PATH: install it with "
            "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install "
            "graphviz`, or write a .dot file instead"
        )
    try:
        return dot.pipe(format=fmt)
    except graphviz.backend.ExecutableNotFound as err:  # dot vanished between the check and the call
        raise VizError(f"Graphviz `dot` failed for {what}: {err}") from None
    except graphviz.backend.CalledProcessError as err:
        raise VizError(f"Graphviz `dot` failed for {what}: {err.stderr.decode(errors='replace')[:300]}") from None


def to_svg(graph: Graph, outputs: Iterable[Value] | None = None, **summary: object) -> str:
    """The graph as SVG text for inline use (HTML, notebooks): the `<svg>` element only,
    without the XML prolog. Takes `to_dot`'s summary options."""
    text = pipe(to_dot(graph, outputs, **summary), "svg", f"graph {graph.name!r}").decode()
    return text[text.index("<svg") :]


def render(graph: Graph, path: str | Path, outputs: Iterable[Value] | None = None, **summary: object) -> Path:
    """Render `graph` to `path`; the suffix picks the format: .dot, .svg, .png or .pdf.

    `outputs` (tensors or values) restricts the drawing to what they need; `summary` takes
    `to_dot`'s options (`collapse_sources`, `group_by="scope"`, `depth`, `max_nodes`).
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    values = [getattr(v, "value", v) for v in outputs] if outputs is not None else None
    if fmt in ("dot", "gv"):
        return write_dot(graph, path, values, **summary)
    if fmt not in FORMATS:
        raise VizError(f"cannot render {path.name}: use a .dot, {', '.join('.' + f for f in FORMATS)} suffix")
    return write_atomic(path, pipe(to_dot(graph, values, **summary), fmt, path.name))
