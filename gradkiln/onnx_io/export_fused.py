"""ONNX export of the fused ops: their expressions written out as the standard ops they were
fused from (Add, Mul, Tanh, ...), a subexpression shared by several outputs written once; an
output that reads only some inputs is expanded to the node's full broadcast shape (an Identity
names the others). A fused reduction is its expression followed by the reduction's export
(ReduceSum, ReduceMean, ReduceMax); a fused matmul is MatMul (after a Transpose for a
transposed operand) followed by its epilogue."""

from __future__ import annotations

import numpy as np

from ..graph import Node
from ..graph.ops.fused import fold, symbols
from ..graph.ops.fused_reduce import map_type
from ..graph.types import broadcast_shapes, dims_equal
from .export_rules import EXPORTERS, register_exporter
from .exporter import ExportContext


@register_exporter("fused")
def _fused(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    _expressions(ctx, node, ins, outs, [node.graph.type_of(v).shape for v in node.inputs], node.types[0].shape)


@register_exporter("fused_reduce")
def _fused_reduce(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    mapped = ctx.fresh("fused")
    shape = map_type(tuple(node.graph.type_of(v) for v in node.inputs), node.attrs["exprs"]).shape
    _expressions(ctx, node, ins, [mapped], [node.graph.type_of(v).shape for v in node.inputs], shape)
    EXPORTERS[node.attrs["reduce"]](ctx, node, [mapped], outs)


@register_exporter("fused_matmul")
def _fused_matmul(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    product = ctx.fresh("matmul")
    flags = (node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False))
    ranks = [node.graph.type_of(v).rank for v in node.inputs[:2]]
    EXPORTERS["matmul"](ctx, node, [_swapped(ctx, x, r, f) for x, r, f in zip(ins[:2], ranks, flags)], [product])
    shapes = [node.types[0].shape, *(node.graph.type_of(v).shape for v in node.inputs[2:])]
    _expressions(ctx, node, [product, *ins[2:]], outs, shapes, node.types[0].shape)


def _swapped(ctx: ExportContext, name: str, rank: int, flag: bool) -> str:
    """A matmul operand with its last two axes swapped (a Transpose) when `flag`."""
    if not flag:
        return name
    out = ctx.fresh("transpose")
    ctx.emit("Transpose", [name], [out], perm=[*range(rank - 2), rank - 1, rank - 2])
    return out


def _expressions(
    ctx: ExportContext, node: Node, ins: list[str], outs: list[str], shapes: list[tuple], full: tuple
) -> None:
    """Each operation of the expressions (over `ins`, of `shapes`) through the exporter of the
    gradkiln op of that name (fold names them so), with the node standing in for its dtype;
    each output at shape `full`."""
    dtype = node.types[0].dtype

    def apply(op: str, args: list[str]) -> str:
        out = ctx.fresh(op)
        EXPORTERS[op](ctx, node, args, [out])
        return out

    by_symbol = dict(zip(symbols(len(ins)), ins))
    names = fold(node.attrs["exprs"], by_symbol.__getitem__, lambda v: ctx.const(np.asarray(v, dtype), "k"), apply)
    inputs = dict(zip(symbols(len(ins)), shapes))
    for expr, name, out in zip(node.attrs["exprs"], names, outs):
        shape = broadcast_shapes(*(inputs[s] for s in expr.free_symbols)) if expr.free_symbols else ()
        if len(shape) == len(full) and all(map(dims_equal, shape, full)):
            ctx.emit("Identity", [name], [out])
        else:
            ctx.emit("Expand", [name, ctx.dims(full)], [out])
