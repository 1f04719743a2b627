"""Invariant checks over a graph, run by the pass manager after each pass."""

from __future__ import annotations

import networkx as nx

from .errors import GraphError
from .ir import Graph
from .opdef import get_op


def verify(graph: Graph) -> None:
    """Acyclic; every node has its op's input count, contiguous slots and re-inferable types."""
    if not nx.is_directed_acyclic_graph(graph.nx):
        raise GraphError(f"graph '{graph.name}' has a cycle: {nx.find_cycle(graph.nx)}")
    for node in graph.nodes():
        slots = sorted(d["slot"] for _, _, d in graph.nx.in_edges(node.id, data=True))
        if slots != list(range(len(slots))):
            raise GraphError(f"{node.label} ({node.op}) has input slots {slots}, expected 0..{len(slots) - 1}")
        opdef = get_op(node.op)
        if opdef.num_inputs is not None and len(slots) != opdef.num_inputs:
            raise GraphError(f"{node.label} ({node.op}) has {len(slots)} inputs, expected {opdef.num_inputs}")
        types = tuple(opdef.infer(*[graph.type_of(v) for v in node.inputs], **node.attrs))
        if types != node.types:
            raise GraphError(
                f"{node.label} ({node.op}) records types {[str(t) for t in node.types]} "
                f"but its inputs give {[str(t) for t in types]}"
            )
