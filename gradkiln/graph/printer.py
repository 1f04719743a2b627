"""Print a graph as code: one line per node, `%7 = matmul(%x, %w1) : f32[N,512]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the graph calls the printer; it needs the types for its hints only
    from .ir import Graph, Node


def format_attr(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 4:
            return np.array2string(value, separator=",").replace("\n", "")
        return f"<{value.dtype}{list(value.shape)}>"
    if isinstance(value, tuple):
        return "(" + ",".join(format_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def format_node(node: Node) -> str:
    graph = node.graph
    args = [graph.label_of(v) for v in node.inputs]
    args += [f"{k}={format_attr(v)}" for k, v in node.attrs.items() if not (node.op == "input" and k == "type")]
    types = ", ".join(str(t) for t in node.types)
    role = "" if node.role == "forward" else f"  # {node.role}"
    return f"{node.label} = {node.op}({', '.join(args)}) : {types}{role}"


def format_graph(graph: Graph) -> str:
    lines = [f"graph {graph.name} {{"]
    lines += [f"  {format_node(n)}" for n in graph.nodes()]
    return "\n".join(lines + ["}"])
