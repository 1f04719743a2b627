"""Fusion: maximal clusters of elementwise nodes become one `fused` node holding sympy expressions.

Clusters grow upward from their most downstream node (the root), in one reverse topological
sweep. A producer joins a cluster that one of its users is in when it has the root's shape and
dtype, the cluster has room (`ctx.fuse_limit` operations), and every user outside the cluster comes
after the root in topological order: then no path leaves the cluster and comes back, so the
fused node cannot create a cycle. A member read outside the cluster (a forward value the
backward pass needs, say) becomes one more output of the fused node, which computes all its
outputs in one kernel. Size-1 constants that are finite and nonzero are inlined as numbers
(sympy has no -0.0, and a literal zero, Inf or NaN lets TVM's simplifier fold `x * 0` or fail on
`x / 0`); the others stay operands. A cluster of one node stays as it is.

Fused nodes compute exactly what their members computed, bit for bit (without `unsafe_math`):
fused expressions read a product's reciprocal factors as divisions (`fold`: x * y**-1 is x / y),
so a reciprocal that is an operand of a product enters it as 1.0 * y**-1 (evaluated 1.0 / y, the
same value), and x * reciprocal(y) stays x * (1 / y), which differs from x / y where 1 / y
over- or underflows. exp2 is not fused: its expression 2**x rounds differently from numpy's exp2.
The expressions come from `symbolic.sympy_bridge`, so fused nodes differentiate again.
Then a matmul whose result only one elementwise (or fused) node of its type reads
becomes, with it, one `fused_matmul` node (the epilogue: bias, activation, residual add). And a
sum, mean or max whose input only it reads and a (fused) elementwise node computes
becomes one `fused_reduce` node: the elementwise result is never a value of its own.
With `ctx.unsafe_math`, sympy simplifies a fused node's expressions when they have at most
`ctx.simplify_limit` operations (`fusion_simplify.simplify_exprs`: kept only when not larger).
"""

from __future__ import annotations

import numpy as np
import sympy

from ..graph import Graph, Node, Value
from ..graph.dtypes import is_float
from ..graph.ops.fused import (
    EXPRESSIBLE,
    Expressions,
    expression_of,
    number,
    subexpressions,
    substitute,
    symbols,
)
from ..graph.ops.fused_reduce import REDUCTIONS
from ..graph.types import TensorType, broadcast_shapes, same_type
from .fusion_simplify import simplify_exprs
from .manager import PassContext, register_pass

INEXACT = frozenset({"exp2"})  # ops whose expression does not evaluate bit for bit as the op does


def _fusable(node: Node) -> bool:
    ty = node.types[0]
    return node.op in EXPRESSIBLE - INEXACT and is_float(ty.dtype) and all(t == ty for t in node.types)


def _operations(node: Node) -> int:
    """What a node adds to a cluster's size: 1, or a fused node's operation count (its composite
    subexpressions, each once: sympy's `is_number` on them walks the whole tree below without a
    memo, which made fusion time exponential in the depth of fused nodes)."""
    if node.op != "fused":
        return 1
    return sum(1 for e in subexpressions(list(node.attrs["exprs"])) if e.args)


def _is_scalar_constant(node: Node) -> bool:
    return node.op == "constant" and np.size(node.attrs["value"]) == 1


def _inlinable(node: Node) -> bool:
    """A size-1 constant sympy holds exactly and TVM cannot fold into a wrong or failing result:
    finite and nonzero (-0.0 would become 0; x / 0 failed to compile on llvm)."""
    if not _is_scalar_constant(node):
        return False
    value = np.asarray(node.attrs["value"]).reshape(-1)[0]
    return bool(np.isfinite(value) and value != 0)


def _as_operand(expr: sympy.Expr) -> sympy.Expr:
    """A reciprocal as 1.0 * y**-1, so that a product reading it does not turn into a division."""
    if isinstance(expr, sympy.Pow) and expr.exp == -1:
        return sympy.Mul(sympy.Float(1.0), expr, evaluate=False)
    return expr


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
                operations = _operations(node)
                root = self._cluster_to_join(node, operations)
                self.root_of[node_id] = root
                self.members.setdefault(root, []).append(node_id)
                self.size[root] = self.size.get(root, 0) + operations

    def _cluster_to_join(self, node: Node, operations: int) -> int:
        users = self.graph.consumers_of(node.id)
        roots = sorted({self.root_of[u] for u in users if u in self.root_of}, key=self.position.__getitem__)
        for root in roots:
            outside = [u for u in users if self.root_of.get(u) != root]
            if (
                self.size[root] + operations <= self.limit
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
    epilogues = _fuse_epilogues(graph, ctx)
    return _fuse_reductions(graph, ctx) or epilogues or bool(fused)


def _fuse_epilogues(graph: Graph, ctx: PassContext) -> bool:
    """Each matmul whose result only one elementwise or fused node of its type reads becomes, with
    that node, one `fused_matmul` node (with that node's outputs); a matmul with no such reader
    but a transposed operand becomes one with the epilogue x0. Operands that are transposes of
    the last two axes fold into the node's flags. One sweep."""
    wanted = set(ctx.outputs)
    pairs: dict[int, Node | None] = {}  # matmul id -> the consumer it takes in (None: x0 alone)
    taken: set[int] = set()  # a consumer takes in one matmul
    for node_id in graph.topological_order():
        node = graph.node(node_id)
        if node.op != "matmul":
            continue
        consumer = _epilogue_of(graph, node, wanted)
        if consumer is not None and consumer.id not in taken:
            pairs[node_id] = consumer
            taken.add(consumer.id)
        elif any(_swapped_operand(graph, v) is not None for v in node.inputs):
            pairs[node_id] = None
    for matmul_id, consumer in pairs.items():
        _fuse_epilogue(graph, ctx, graph.node(matmul_id), consumer)
    return bool(pairs)


def _epilogue_of(graph: Graph, matmul: Node, wanted: set[Value]) -> Node | None:
    product = matmul.outputs[0]
    users = {user for user, _ in graph.users_of(product)}
    if product in wanted or len(users) != 1:
        return None
    consumer = graph.node(users.pop())
    return consumer if _fusable(consumer) and same_type(consumer.types[0], matmul.types[0]) else None


def _swapped_operand(graph: Graph, value: Value) -> Value | None:
    """The input of a transpose swapping the last two axes (and keeping the others), or None."""
    producer = graph.node(value.node)
    if producer.op != "transpose":
        return None
    rank = len(producer.attrs["perm"])
    return producer.inputs[0] if tuple(producer.attrs["perm"]) == (*range(rank - 2), rank - 1, rank - 2) else None


def _fuse_epilogue(graph: Graph, ctx: PassContext, matmul: Node, consumer: Node | None) -> None:
    leaves = [matmul.outputs[0]]  # x0: the product
    if consumer is None:
        exprs, outputs, role = [symbols(1)[0]], matmul.outputs, matmul.role
    else:
        args = [_operand(graph, v, {}, leaves) for v in consumer.inputs]
        exprs, outputs, role = expression_of(consumer.op, args, consumer.attrs), consumer.outputs, consumer.role
    operands, flags = [], {}
    for value, flag in zip(matmul.inputs, ("transpose_a", "transpose_b")):
        source = _swapped_operand(graph, value)
        operands.append(value if source is None else source)
        flags[flag] = source is not None
    attrs = {"exprs": Expressions(tuple(exprs)), **flags}
    with graph.building_as(role):
        node = graph.add_node("fused_matmul", [*operands, *leaves[1:]], attrs, name=None)
    for old, new in zip(outputs, node.outputs):
        ctx.replace(graph, old, new)
    folded = set(matmul.inputs) - set(operands)
    for dead in ([] if consumer is None else [consumer.id]) + [matmul.id]:
        graph.remove_node(dead)
    for value in folded - set(ctx.outputs):  # a folded transpose nothing else reads
        if not graph.users_of(value):
            graph.remove_node(value.node)


def _fuse_reductions(graph: Graph, ctx: PassContext) -> bool:
    """Each sum, mean or max whose input only it reads and an elementwise node (fused or single)
    computes becomes one `fused_reduce` node, in one sweep."""
    wanted = set(ctx.outputs)
    reductions = [graph.node(i) for i in graph.topological_order() if graph.node(i).op in REDUCTIONS]
    fused = [r for r in reductions if _reducible_input(graph, r.inputs[0], wanted)]
    for reduction in fused:
        _fuse_reduction(graph, ctx, reduction)
    return bool(fused)


def _reducible_input(graph: Graph, value: Value, wanted: set[Value]) -> bool:
    producer = graph.node(value.node)
    return (
        _fusable(producer)
        and len(producer.types) == 1
        and value not in wanted
        and len(graph.users_of(value)) == 1
        and any(not _is_scalar_constant(graph.node(v.node)) for v in producer.inputs)
    )


def _fuse_reduction(graph: Graph, ctx: PassContext, reduction: Node) -> None:
    producer = graph.node(reduction.inputs[0].node)
    leaves: list[Value] = []
    args = [_operand(graph, v, {}, leaves) for v in producer.inputs]
    exprs = expression_of(producer.op, args, producer.attrs)
    if ctx.unsafe_math:
        exprs, leaves = _simplified(exprs, leaves, producer.types[0], ctx.simplify_limit, graph)
    attrs = {"exprs": Expressions(tuple(exprs)), "reduce": reduction.op, **reduction.attrs}
    with graph.building_as(reduction.role):
        node = graph.add_node("fused_reduce", leaves, attrs, name=None)
    ctx.replace(graph, reduction.outputs[0], node.outputs[0])
    graph.remove_node(reduction.id)
    graph.remove_node(producer.id)


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
    exprs = [env[v] for v in results]
    if ctx.unsafe_math:
        exprs, leaves = _simplified(exprs, leaves, root.types[0], ctx.simplify_limit, graph)
    operand = dict(zip(symbols(len(leaves)), leaves))
    direct = {
        v: operand[e]
        for v, e in zip(results, exprs)
        if e in operand and same_type(*map(graph.type_of, (v, operand[e])))
    }
    for value, leaf in direct.items():  # an output that is one of the operands: read it instead
        ctx.replace(graph, value, leaf)
    kept = [(v, e) for v, e in zip(results, exprs) if v not in direct]
    if kept:
        with graph.building_as(root.role):
            node = graph.add_node("fused", leaves, {"exprs": Expressions(tuple(e for _, e in kept))}, name=None)
        for index, (value, _) in enumerate(kept):
            ctx.replace(graph, value, Value(node.id, index))
    for node_id in reversed(members):
        graph.remove_node(node_id)


def _simplified(
    exprs: list[sympy.Expr], leaves: list[Value], ty: TensorType, limit: int, graph: Graph
) -> tuple[list[sympy.Expr], list[Value]]:
    """The expressions simplified by sympy, over only the leaves they still read when those give
    the cluster's type."""
    exprs = list(simplify_exprs(exprs, limit))
    used = [v for v, s in zip(leaves, symbols(len(leaves))) if any(s in e.free_symbols for e in exprs)]
    if used and same_type(TensorType(ty.dtype, broadcast_shapes(*(graph.type_of(v).shape for v in used))), ty):
        renamed = {symbols(len(leaves))[leaves.index(v)]: s for v, s in zip(used, symbols(len(used)))}
        exprs, leaves = [substitute(e, renamed) for e in exprs], used
    return exprs, leaves


def _operand(graph: Graph, value: Value, env: dict[Value, sympy.Expr], leaves: list[Value]) -> sympy.Expr:
    """A member's operand: a cluster value's expression, an inlined scalar, or an input symbol."""
    if value in env:
        return _as_operand(env[value])
    producer = graph.node(value.node)
    if _inlinable(producer):
        return number(producer.attrs["value"])
    if value not in leaves:
        leaves.append(value)
    return sympy.Symbol(f"x{leaves.index(value)}")
