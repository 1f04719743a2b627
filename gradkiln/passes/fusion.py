"""Fusion: maximal clusters of elementwise nodes become one `fused` node holding sympy expressions.

Clusters grow upward from their most downstream node (the root), in one reverse topological
sweep. A producer joins a cluster that one of its users is in when it has the root's shape and
dtype, the cluster has room (`ctx.fuse_limit` operations), and every user outside the cluster comes
after the root in topological order: then no path leaves the cluster and comes back, so the
fused node cannot create a cycle. A member read outside the cluster (a forward value the
backward pass needs, say) becomes one more output of the fused node, which computes all its
outputs in one kernel. Size-1 constants are inlined as numbers. A cluster of one node stays as
it is. The expressions come from `symbolic.sympy_bridge`, so fused nodes differentiate again.
"""

from __future__ import annotations

import numpy as np
import sympy

from ..graph import Graph, Node, Value
from ..graph.dtypes import is_float
from ..graph.ops.fused import EXPRESSIBLE, Expressions, expression_of, number, subexpressions
from ..graph.types import same_type
from .manager import PassContext, register_pass


def _fusable(node: Node) -> bool:
    ty = node.types[0]
    return node.op in EXPRESSIBLE and is_float(ty.dtype) and all(t == ty for t in node.types)


def _operations(node: Node) -> int:
    """What a node adds to a cluster's size: 1, or a fused node's operation count."""
    if node.op != "fused":
        return 1
    return sum(1 for e in subexpressions(list(node.attrs["exprs"])) if e.args and not e.is_number)


def _is_scalar_constant(node: Node) -> bool:
    return node.op == "constant" and np.size(node.attrs["value"]) == 1


class _Clusters:
    """The cluster of each fusable node, as the id of its root, built in one reverse sweep."""

    def __init__(self, graph: Graph, limit: int) -> None:
        self.graph, self.limit = graph, limit
        self.order = graph.topological_order()
        self.position = {node_id: i for i, node_id in enumerate(self.order)}
        self.root_of: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        self.size: dict[int, int] = {}
        for node_id in reversed(self.order):
            node = graph.node(node_id)
            if _fusable(node):
                root = self._cluster_to_join(node)
                self.root_of[node_id] = root
                self.members.setdefault(root, []).append(node_id)
                self.size[root] = self.size.get(root, 0) + _operations(node)

    def _cluster_to_join(self, node: Node) -> int:
        users = set(self.graph.nx.successors(node.id))
        roots = sorted({self.root_of[u] for u in users if u in self.root_of}, key=self.position.__getitem__)
        for root in roots:
            outside = [u for u in users if self.root_of.get(u) != root]
            if (
                self.size[root] + _operations(node) <= self.limit
                and same_type(node.types[0], self.graph.node(root).types[0])
                and all(self.position[u] > self.position[root] for u in outside)
            ):
                return root
        return node.id


@register_pass("fusion")
def fusion(graph: Graph, ctx: PassContext) -> bool:
    clusters = _Clusters(graph, ctx.fuse_limit)
    fused = [members for members in clusters.members.values() if len(members) > 1]
    for members in fused:
        _fuse(graph, ctx, sorted(members, key=clusters.position.__getitem__))
    return bool(fused)


def _fuse(graph: Graph, ctx: PassContext, members: list[int]) -> None:
    """Replace `members` (in topological order) by one fused node."""
    inside = set(members)
    env: dict[Value, sympy.Expr] = {}
    leaves: list[Value] = []
    for node_id in members:
        node = graph.node(node_id)
        args = [_operand(graph, v, env, leaves) for v in node.inputs]
        env.update(zip(node.outputs, expression_of(node.op, args, node.attrs)))
    wanted = set(ctx.outputs)
    results = [
        v
        for node_id in members
        for v in graph.node(node_id).outputs
        if v in wanted or any(user not in inside for user, _ in graph.users_of(v))
    ]
    if not results or not leaves:
        return
    root = graph.node(members[-1])
    exprs = Expressions(tuple(env[v] for v in results))
    with graph.building_as(root.role):
        node = graph.add_node("fused", leaves, {"exprs": exprs}, name=None)
    for index, value in enumerate(results):
        ctx.replace(graph, value, Value(node.id, index))
    for node_id in reversed(members):
        graph.remove_node(node_id)


def _operand(graph: Graph, value: Value, env: dict[Value, sympy.Expr], leaves: list[Value]) -> sympy.Expr:
    """A member's operand: a cluster value's expression, an inlined scalar, or an input symbol."""
    if value in env:
        return env[value]
    producer = graph.node(value.node)
    if _is_scalar_constant(producer):
        return number(producer.attrs["value"])
    if value not in leaves:
        leaves.append(value)
    return sympy.Symbol(f"x{leaves.index(value)}")
