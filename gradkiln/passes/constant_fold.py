"""Constant folding: evaluate nodes whose inputs are all constants with their numpy semantics,
keeping results up to `ctx.fold_limit` elements (folding must not bloat the graph). An index op
whose constant indices are out of range in mode "raise" stays, so the run reports it as without folding."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, IndexOutOfRangeError, Value, get_op
from ..graph.types import is_symbolic
from .manager import PassContext, register_pass


@register_pass("constant_fold")
def constant_fold(graph: Graph, ctx: PassContext) -> bool:
    folded = False
    for node_id in list(graph.topological_order()):
        opdef = get_op(graph.op_of(node_id))
        if opdef.source or not opdef.foldable:
            continue
        inputs = graph.inputs_of(node_id)
        if not inputs or any(graph.op_of(v.node) != "constant" for v in inputs):
            continue
        node = graph.node(node_id)
        if any(map(is_symbolic, node.attrs.values())) or any(not t.is_static for t in node.types):
            continue
        if sum(int(np.prod(t.shape)) for t in node.types) > ctx.fold_limit:
            continue
        args = [graph.node(v.node).attrs["value"] for v in inputs]
        try:
            with np.errstate(all="ignore"):
                result = opdef.compute(*args, **node.attrs)
        except IndexOutOfRangeError:  # left to the run, which raises with the node (numpy) or fills (compiled)
            continue
        results = result if isinstance(result, tuple) else (result,)
        for index, (array, t) in enumerate(zip(results, node.types)):
            value = np.array(array, dtype=t.dtype, order="C")
            const = graph.add_node("constant", (), {"value": value}, role=node.role)
            ctx.replace(graph, Value(node.id, index), const.outputs[0])
        graph.remove_node(node.id)
        folded = True
    return folded
