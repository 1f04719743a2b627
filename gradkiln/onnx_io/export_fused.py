"""ONNX export of the fused elementwise op: its expressions written out as the standard ops they
were fused from (Add, Mul, Tanh, ...), a subexpression shared by several outputs written once; an
output that reads only some inputs is expanded to the node's full broadcast shape (an Identity
names the others)."""

from __future__ import annotations

import numpy as np

from ..graph import Node
from ..graph.ops.fused import fold, symbols
from ..graph.types import broadcast_shapes, dims_equal
from .export_rules import EXPORTERS, register_exporter
from .exporter import ExportContext


@register_exporter("fused")
def _fused(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Each operation of the expressions through the exporter of the gradkiln op of that name
    (fold names them so), with the fused node standing in for its dtype."""
    dtype = node.types[0].dtype

    def apply(op: str, args: list[str]) -> str:
        out = ctx.fresh(op)
        EXPORTERS[op](ctx, node, args, [out])
        return out

    by_symbol = dict(zip(symbols(len(ins)), ins))
    names = fold(node.attrs["exprs"], by_symbol.__getitem__, lambda v: ctx.const(np.asarray(v, dtype), "k"), apply)
    full = node.types[0].shape
    inputs = dict(zip(symbols(len(ins)), (node.graph.type_of(v).shape for v in node.inputs)))
    for expr, name, out in zip(node.attrs["exprs"], names, outs):
        shape = broadcast_shapes(*(inputs[s] for s in expr.free_symbols)) if expr.free_symbols else ()
        if len(shape) == len(full) and all(map(dims_equal, shape, full)):
            ctx.emit("Identity", [name], [out])
        else:
            ctx.emit("Expand", [name, ctx.dims(full)], [out])
