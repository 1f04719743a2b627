"""Graph -> Graphviz: forward, gradient and source nodes coloured, shapes and dtypes on edges.

DOT is written without any system dependency; SVG, PNG and PDF need Graphviz's `dot`
executable (`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

import graphviz

from ..atomic import write_atomic
from ..graph import Graph, Node, Value, VizError
from ..graph.printer import format_attr

# fill colour per node role ("forward", "grad") and per source op
ROLE_COLOURS = {"forward": "#cfe2f3", "grad": "#f4cccc", "recompute": "#fce5cd"}
SOURCE_COLOURS = {"input": "#d9ead3", "param": "#fff2cc", "constant": "#eeeeee"}
FORMATS = ("svg", "png", "pdf")
_ATTR_LIMIT = 3  # attributes shown in a node label; the rest go to the tooltip


def to_dot(graph: Graph, outputs: Iterable[Value] | None = None) -> graphviz.Digraph:
    """A graphviz Digraph of `graph` (only what `outputs` need, when given); outputs get a
    double border."""
    outputs = list(outputs or [])
    node_ids = graph.needed_nodes(outputs) if outputs else graph.topological_order()
    output_nodes = {v.node for v in outputs}
    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": "TB"}, node_attr={"fontname": "Helvetica"})
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    for node_id in node_ids:
        node = graph.node(node_id)
        dot.node(str(node_id), **_node_style(node, node_id in output_nodes))
    shown = set(node_ids)
    for src, dst, data in graph.nx.edges(data=True):
        if src in shown and dst in shown:
            dot.edge(str(src), str(dst), label=str(graph.type_of(Value(src, data["out"]))))
    return dot


def _node_style(node: Node, is_output: bool) -> dict[str, str]:
    attrs = {k: format_attr(v) for k, v in node.attrs.items() if k not in ("value", "type")}
    shown = "\n".join(f"{k}={v}" for k, v in list(attrs.items())[:_ATTR_LIMIT])
    title = node.op if node.name is None else f"{node.name}\n{node.op}"
    colour = SOURCE_COLOURS.get(node.op) or ROLE_COLOURS.get(node.role, "#ffffff")
    return {
        "label": f"{title}\n{shown}".strip(),
        "tooltip": f"{node.label} = {node.op} : {', '.join(map(str, node.types))} ({node.role})",
        "shape": "box" if not node.opdef.source else "ellipse",
        "style": "filled,rounded",
        "fillcolor": colour,
        "peripheries": "2" if is_output else "1",
    }


def write_dot(graph: Graph, path: str | Path, outputs: Iterable[Value] | None = None) -> Path:
    """Write the DOT source of `graph` to `path` (needs no Graphviz install)."""
    return write_atomic(path, to_dot(graph, outputs).source.encode())


def render(graph: Graph, path: str | Path, outputs: Iterable[Value] | None = None) -> Path:
    """Render `graph` to `path`; the suffix picks the format: .dot, .svg, .png or .pdf.

    `outputs` (tensors or values) restricts the drawing to what they need.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    values = [getattr(v, "value", v) for v in outputs] if outputs is not None else None
    if fmt in ("dot", "gv"):
        return write_dot(graph, path, values)
    if fmt not in FORMATS:
        raise VizError(f"cannot render {path.name}: use a .dot, {', '.join('.' + f for f in FORMATS)} suffix")
    if shutil.which("dot") is None:
        raise VizError(
            f"rendering {path.name} needs the Graphviz `dot` executable, which is not on PATH: install it with "
            "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install "
            "graphviz`, or write a .dot file instead"
        )
    try:
        data = to_dot(graph, values).pipe(format=fmt)
    except graphviz.backend.ExecutableNotFound as err:  # dot vanished between the check and the call
        raise VizError(f"Graphviz `dot` failed for {path.name}: {err}") from None
    except graphviz.backend.CalledProcessError as err:
        raise VizError(f"Graphviz `dot` failed for {path.name}: {err.stderr.decode(errors='replace')[:300]}") from None
    return write_atomic(path, data)
