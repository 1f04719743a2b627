"""Relax emitters of resize and resize_grad: per resized axis, one take by the table's constant
indices (out, taps), a multiply by the constant weights and a sum over the taps (FuseOps makes
each axis one kernel); tf_crop_and_resize's extrapolated positions are a where on a constant mask.
resize_grad runs the transposed tables (`grad_tables`), so both directions are gathers, with no
atomic scatter. The tables are the numpy reference's, computed once from the node's static sizes.
float16 is computed in float32 (the reference computes in float64) and cast back.
"""

from __future__ import annotations

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ....graph import Node
from ....graph.ops.resize import AxisTable, grad_tables, tables
from .context import EmitContext, register_emitter


def _axis(ctx: EmitContext, x: relax.Expr, table: AxisTable, rank: int, fill: float, dtype: str) -> relax.Expr:
    axis = table.axis
    around = ((1,) * axis, (1,) * (rank - axis - 1))
    if table.weights.shape[1] == 1 and (table.weights == 1).all():  # nearest: a pure gather
        out = ctx.bb.emit(R.take(x, relax.const(table.indices[:, 0], "int64"), axis))
    else:
        weights = relax.const(table.weights.reshape(around[0] + table.weights.shape + around[1]).astype(dtype), dtype)
        gathered = ctx.bb.emit(R.take(x, relax.const(table.indices, "int64"), axis))
        out = ctx.bb.emit(R.sum(R.multiply(gathered, weights), axis=[axis + 1]))
    if table.outside is not None:
        mask = relax.const(table.outside.reshape(around[0] + (-1,) + around[1]), "bool")
        out = ctx.bb.emit(R.where(mask, relax.const(fill, dtype), out))
    return out


def _apply(ctx: EmitContext, node: Node, x: relax.Expr, axis_tables: list[AxisTable]) -> relax.Expr:
    dtype = node.types[0].dtype
    compute = "float64" if dtype == "float64" else "float32"
    out = x if compute == dtype else ctx.bb.emit(R.astype(x, compute))
    for table in axis_tables:
        out = _axis(ctx, out, table, len(node.types[0].shape), node.attrs["extrapolation_value"], compute)
    return out if compute == dtype else R.astype(out, dtype)


@register_emitter("resize")
def _resize(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    in_shape = node.graph.type_of(node.inputs[0]).shape
    return _apply(ctx, node, args[0], tables(in_shape, node.attrs))


@register_emitter("resize_grad")
def _resize_grad(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    attrs = dict(node.attrs)
    g_shape = node.graph.type_of(node.inputs[0]).shape
    return _apply(ctx, node, args[0], grad_tables(g_shape, attrs.pop("input_sizes"), attrs))
