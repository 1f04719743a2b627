"""Name scopes of nodes, so a big graph can be drawn as nested clusters ("layer1" > "0" > "conv1").

A node named with dots or slashes ("layer1.0.conv1.weight", ONNX's "/layer1/conv/Conv") is in
the scope of its name without the last part; an imported node without a name, in the scope of
the ONNX node it was imported for (`Node.origin`: torch writes module paths there). Other
unnamed nodes (most of them: only sources and a few outputs carry names) inherit one from their
inputs, in one topological sweep:

- a node reading a named param or constant takes that source's scope (a layer's matmul is in
  the layer of its weight);
- a forward node otherwise takes the latest scope, in forward order, among its inputs (the
  batch norm arithmetic after a convolution is in the norm's scope; a residual add is in the
  block's);
- a gradient node takes the earliest scope, in forward order, among its inputs, ignoring views
  of forward values (`transpose(x)` in a weight gradient) when another input has a scope. The
  backward pass flows from later layers to earlier ones, so a gradient node belongs to the
  earliest layer it touches; views are ignored because a weight gradient reads the previous
  layer's activation through one.

Linear in the size of the graph.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..graph import Graph
from ..passes.memory import VIEWS

Scope = tuple[str, ...]
SOURCES = frozenset({"input", "param", "constant"})
_SEPARATOR = re.compile(r"[./]")


def name_scope(name: str | None) -> Scope | None:
    """The scope path of a node name: its parts but the last; None for an unnamed node."""
    if name is None:
        return None
    parts = [p for p in _SEPARATOR.split(name) if p]
    return tuple(parts[:-1])


def assign_scopes(graph: Graph, node_ids: Sequence[int]) -> dict[int, Scope]:
    """The scope of each node in `node_ids` (a topological order closed under inputs)."""
    scopes: dict[int, Scope] = {}
    weak: set[int] = set()  # views that inherited their scope
    first_seen: dict[Scope, int] = {}
    for position, node_id in enumerate(node_ids):
        node = graph.node(node_id)
        own = name_scope(node.name if node.name is not None else node.origin)
        if own is None:
            own = _inherited(graph, node_id, node.role, scopes, weak, first_seen)
            if node.op in VIEWS:
                weak.add(node_id)
        scopes[node_id] = own
        first_seen.setdefault(own, position)
    return scopes


def _inherited(
    graph: Graph, node_id: int, role: str, scopes: dict[int, Scope], weak: set[int], first_seen: dict[Scope, int]
) -> Scope:
    inputs = [v.node for v in graph.inputs_of(node_id)]
    from_sources = [scopes[i] for i in inputs if scopes[i] and graph.op_of(i) in SOURCES]
    if from_sources:
        return from_sources[0]
    scoped = [i for i in inputs if scopes[i]]
    strong = [i for i in scoped if i not in weak] or scoped
    if not strong:
        return ()
    pick = min if role == "grad" else max
    return pick((scopes[i] for i in strong), key=first_seen.__getitem__)
