"""Common subexpression elimination: one topological sweep hashing (op, attrs, inputs).

Inputs and params are never merged (each is fed by its own name); equal constants are. Nodes
of role "recompute" (checkpoint copies) are never merged with the originals they duplicate.
"""

from __future__ import annotations

from ..graph import Graph, Value, attrs_key
from .manager import PassContext, register_pass


@register_pass("cse")
def cse(graph: Graph, ctx: PassContext) -> bool:
    seen: dict[tuple, int] = {}
    merged = []
    for node_id in list(graph.topological_order()):
        node = graph.node(node_id)
        if node.op in ("input", "param"):
            continue
        key = (node.op, attrs_key(node.attrs), tuple(graph.inputs_of(node_id)), node.role == "recompute")
        kept = seen.setdefault(key, node_id)
        if kept != node_id:
            for index in range(len(node.types)):
                ctx.replace(graph, Value(node_id, index), Value(kept, index))
            merged.append(node_id)
    for node_id in merged:
        graph.remove_node(node_id)
    return bool(merged)
