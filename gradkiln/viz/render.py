"""Graph -> Graphviz: forward, gradient and source nodes coloured, shapes and dtypes on edges.

DOT is written without any system dependency; SVG, PNG and PDF need Graphviz's `dot`
executable (`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`).

Big graphs are summarised on request: `collapse_sources` folds params and constants into the
label of the node that reads them; `group_by="scope"` draws nodes in nested clusters by name
scope (see `scopes.py`) and `depth` collapses the clusters deeper than it into one box with a
node count; `max_nodes` does both, choosing the deepest depth that fits, and when even the
top-level scopes do not fit (a graph without name scopes), it also collapses the nodes outside
the scopes into one box per op and role, the most numerous ops first, until the drawing fits (or
every op is one box). Drawings of more than `EDGE_LABEL_LIMIT` nodes show edge
types as tooltips, not labels (Graphviz takes minutes to place the labels of a few hundred edges).

Every name, label and tooltip is written as an escaped DOT string (`_text`): graph, node, scope,
op and input names come from user code or ONNX files, and a raw one could rewrite the drawing
(a name like `<x> {n [URL="javascript:..."]} digraph <y>`). `dot` runs with a timeout and is
killed when it expires, when the caller is interrupted, and (Linux) when the caller dies; drawings
of more than `RENDER_LIMIT` units are refused (write .dot, or summarise with `max_nodes`).
"""

from __future__ import annotations

import ctypes
import itertools
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import graphviz

from ..atomic import write_atomic
from ..graph import Graph, Node, Value, VizError
from ..graph.ops.collective import COLLECTIVES
from ..graph.printer import format_attr
from .scopes import SOURCES, Scope, assign_scopes

# fill colour per node role ("forward", "grad", "recompute", "optimizer": training-graph updates) and per source op
ROLE_COLOURS = {"forward": "#cfe2f3", "grad": "#f4cccc", "recompute": "#fce5cd", "optimizer": "#d9d2e9"}
SOURCE_COLOURS = {"input": "#d9ead3", "param": "#fff2cc", "constant": "#eeeeee"}
COLLECTIVE_COLOUR = "#76a5af"  # all_reduce, all_gather, ...: where workers communicate, in any role
FORMATS = ("svg", "png", "pdf")
# drawings with more nodes carry edge types as tooltips: dot spends minutes placing labels on them
EDGE_LABEL_LIMIT = 150
EXPRESSION_CHARS = 400  # of each fused expression in a tooltip
_ATTR_LIMIT = 3  # attributes (and collapsed sources) shown in a node label; the rest go to the tooltip
DOT_TIMEOUT = 300.0  # seconds `dot` may take to lay out one drawing before it is killed
RENDER_LIMIT = 5000  # units (nodes and boxes) beyond which `dot` is not run: its layout takes many minutes


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
    # box id -> (title: "scope a.b" or, outside any scope, "op matmul"; role; nodes)
    boxes: dict[str, tuple[str, str, list[int]]] = field(default_factory=dict)
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
    return _layout_dot(graph, list(outputs or []), Summary(collapse_sources, group_by, depth, max_nodes))[0]


def _layout_dot(graph: Graph, outputs: list[Value], summary: Summary) -> tuple[graphviz.Digraph, int]:
    """`to_dot`'s drawing and the number of units (nodes and boxes) it holds."""
    node_ids, output_nodes, layout = _plan(graph, outputs, summary)
    units = len(set(layout.unit.values()))
    dot = graphviz.Digraph(_text(graph.name), graph_attr={"rankdir": "TB"}, node_attr={"fontname": "Helvetica"})
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    _emit_units(dot, graph, node_ids, layout, output_nodes)
    edges = _unit_edges(graph, node_ids, layout)
    where = "label" if units <= EDGE_LABEL_LIMIT else "tooltip"
    for (src, dst), values in edges.items():
        text = str(graph.type_of(next(iter(values)))) if len(values) == 1 else f"{len(values)} values"
        dot.edge(src, dst, **{where: _text(text)})
    return dot, units


def _drawing(graph: Graph, outputs: Iterable[Value] | None, summary: dict[str, Any], what: str) -> graphviz.Digraph:
    """The DOT drawing to hand to `dot`, refused when it holds more than RENDER_LIMIT units."""
    dot, units = _layout_dot(graph, list(outputs or []), Summary(**summary))
    if units > RENDER_LIMIT:
        raise VizError(
            f"{what}: {units} boxes to lay out, over the {RENDER_LIMIT} that Graphviz lays out in reasonable time "
            "(it would take many minutes): summarise with max_nodes=150 (--max-nodes 150 on the command line), "
            "or write a .dot file"
        )
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
        layout.hidden = {n for n in node_ids if graph.op_of(n) in ("param", "constant") and n not in output_nodes}
    shown = [n for n in node_ids if n not in layout.hidden]
    if summary.group_by is None and summary.max_nodes is None:
        layout.unit = {n: str(n) for n in shown}
        return layout
    scopes = assign_scopes(graph, node_ids)
    depth, by_op, box_ids = summary.depth, set(), {}
    if depth is None and summary.max_nodes is not None:
        depth = _fitting_depth(graph, shown, scopes, summary.max_nodes)
        by_op = _ops_to_collapse(graph, shown, scopes, depth, summary.max_nodes, output_nodes)
    for n in shown:
        scope, role, op = scopes[n], graph.role_of(n), graph.op_of(n)
        if depth is not None and len(scope) > depth:
            key: tuple = (scope[: depth + 1], role)
            title, path = f"scope {'.'.join(key[0])}", scope[:depth]
        elif (op, role) in by_op and n not in output_nodes:
            key = (op, role)
            title, path = f"op {op}", ()
        else:
            layout.unit[n] = str(n)
            layout.cluster[str(n)] = (scope, role)
            continue
        box = box_ids.setdefault(key, f"box{len(box_ids)}")
        layout.boxes.setdefault(box, (title, role, []))[2].append(n)
        layout.unit[n] = box
        layout.cluster[box] = (path, role)
    return layout


def _units(graph: Graph, shown: list[int], scopes: dict[int, Scope], depth: int) -> set:
    """The units drawn when scopes deeper than `depth` are collapsed into boxes."""
    return {(scopes[n][: depth + 1], graph.role_of(n)) if len(scopes[n]) > depth else n for n in shown}


def _ops_to_collapse(
    graph: Graph, shown: list[int], scopes: dict[int, Scope], depth: int, max_nodes: int, keep: set[int]
) -> set[tuple[str, str]]:
    """The (op, role) pairs whose nodes outside the collapsed scopes (but those in `keep`: the
    outputs stay visible) go into one box each, the most numerous first, until at most `max_nodes`
    units remain (none when the scopes suffice)."""
    units = len(_units(graph, shown, scopes, depth))
    loose = Counter((graph.op_of(n), graph.role_of(n)) for n in shown if len(scopes[n]) <= depth and n not in keep)
    collapsed: set[tuple[str, str]] = set()
    for key, count in loose.most_common():
        if units <= max_nodes or count == 1:
            break
        collapsed.add(key)
        units -= count - 1
    return collapsed


def _fitting_depth(graph: Graph, shown: list[int], scopes: dict[int, Scope], max_nodes: int) -> int:
    """The deepest scope depth at which at most `max_nodes` units are drawn (0 if none fits)."""
    deepest = max((len(scopes[n]) for n in shown), default=0)
    for depth in range(deepest, 0, -1):
        if len(_units(graph, shown, scopes, depth)) <= max_nodes:
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
            title, role, members = layout.boxes[unit]
            params = {p.id for m in members for p in hidden_inputs[m] if p.op == "param"}
            return _box_style(title, role, len(members), len(params))
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
                    label=_text(f"{'.'.join(path)}{suffix}"),
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
    colour = COLLECTIVE_COLOUR if node.op in COLLECTIVES else colour
    tooltip = f"{node.label} = {node.op} : {', '.join(map(str, node.types))} ({node.role})"
    return {
        "label": _text(f"{title}\n{shown}".strip()),
        "tooltip": _text("\n".join([tooltip, *lines, *expressions])),
        "shape": "box" if node.op not in SOURCES else "ellipse",
        "style": "filled,rounded",
        "fillcolor": colour,
        "peripheries": "2" if is_output else "1",
    }


def _box_style(title: str, role: str, count: int, params: int) -> dict[str, str]:
    suffix = "" if role == "forward" else f" ({role})"
    detail = f"{count} node{'s' * (count != 1)}" + (f", {params} param{'s' * (params != 1)}" if params else "")
    return {
        "label": _text(f"{title.removeprefix('scope ')}{suffix}\n{detail}"),
        "tooltip": _text(f"{title}{suffix}: {detail}, collapsed"),
        "shape": "box3d",
        "style": "filled",
        "fillcolor": ROLE_COLOURS.get(role, "#ffffff"),
    }


def _text(text: str) -> str:
    """`text` as a literal DOT string: backslashes escaped (no `\\N` or `\\l` expansion), never read
    as an HTML-like `<...>` label; graphviz's quoting then escapes the double quotes."""
    return graphviz.escape(str(text))


def write_dot(graph: Graph, path: str | Path, outputs: Iterable[Value] | None = None, **summary: object) -> Path:
    """Write the DOT source of `graph` to `path` (needs no Graphviz install)."""
    return write_atomic(path, to_dot(graph, outputs, **summary).source.encode())


def pipe(dot: graphviz.Digraph, fmt: str, what: str, timeout: float | None = None) -> bytes:
    """Run Graphviz `dot` on `dot`, producing `fmt` bytes; a missing or failing `dot` is a VizError
    naming `what` was being drawn. `dot` is killed after `timeout` seconds (default DOT_TIMEOUT)
    and whenever this call does not return normally (KeyboardInterrupt included)."""
    if shutil.which("dot") is None:
        raise VizError(
            f"rendering {what} needs the Graphviz `dot` executable, which is not on PATH: install it with "
            "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install "
            "graphviz`, or write a .dot file instead"
        )
    limit = DOT_TIMEOUT if timeout is None else timeout
    command = ["dot", f"-T{fmt}"]
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except OSError as err:  # dot vanished between the check and the call
        raise VizError(f"Graphviz `dot` failed for {what}: {err}") from None
    try:
        out, err = child.communicate(dot.source.encode(), timeout=limit)
    except subprocess.TimeoutExpired:
        raise VizError(
            f"Graphviz `dot` took more than {limit:g} s to lay out {what} and was stopped: draw fewer boxes "
            "(max_nodes=150, or --max-nodes 150 on the command line) or write a .dot file"
        ) from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise VizError(f"Graphviz `dot` failed for {what}: {err.decode(errors='replace')[:300]}")
    return out


def _die_with_parent() -> None:
    """In the forked `dot` (Linux): ask the kernel to SIGKILL it when its parent dies, so a killed
    caller leaves no layout running."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def to_svg(graph: Graph, outputs: Iterable[Value] | None = None, **summary: object) -> str:
    """The graph as SVG text for inline use (HTML, notebooks): the `<svg>` element only,
    without the XML prolog. Takes `to_dot`'s summary options."""
    what = f"graph {graph.name!r}"
    text = pipe(_drawing(graph, outputs, summary, what), "svg", what).decode()
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
    return write_atomic(path, pipe(_drawing(graph, values, summary, path.name), fmt, path.name))
