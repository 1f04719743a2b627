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
    for node in list(graph.nodes()):
        if node.op in ("input", "param"):
            continue
        key = (node.op, attrs_key(node.attrs), tuple(node.inputs), node.role == "recompute")
        kept = seen.setdefault(key, node.id)
        if kept != node.id:
            for index in range(len(node.types)):
                ctx.replace(graph, Value(node.id, index), Value(kept, index))
            merged.append(node.id)
    for node_id in merged:
        graph.remove_node(node_id)
    return bool(merged)
