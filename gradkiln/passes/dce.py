"""Dead code elimination: drop every node the requested outputs do not need (inputs stay: they
are the graph's interface)."""

from __future__ import annotations

from ..graph import Graph
from .manager import PassContext, register_pass


@register_pass("dce")
def dce(graph: Graph, ctx: PassContext) -> bool:
    needed = set(graph.needed_nodes(ctx.outputs))
    dead = [n for n in reversed(graph.topological_order()) if n not in needed and graph.op_of(n) != "input"]
    for node_id in dead:  # users before producers, so each has no users left when removed
        graph.remove_node(node_id)
    return bool(dead)
