"""The Relax emitter of the fused elementwise op: its expressions as Relax operations, one binding
per subexpression (so a subexpression shared by several outputs is computed once), which TVM's
FuseOps then puts in one kernel with the neighbouring ops.

Why Relax operations and not one TE kernel written from the expressions: a hand-written TE
kernel hides the elementwise producers and epilogues of matmuls and convolutions from TVM's
fusion and from our CPU schedules (`tvm.schedules.common`), which then fail to match (the W1 MLP
step ran 6x slower in one measurement, on a busy machine); and TVM inlines let-bound values, so
one TE expression nesting heads whose lowering repeats the argument (tanh, sign, x**2 and others)
grows exponentially. Relax bindings have neither problem, and FuseOps makes the single kernel
all the same.

A fused reduction is the same bindings followed by the reduction's own emitter: FuseOps puts
elementwise producers into the reduction's kernel, so `sum(x * x)` is one loop nest that never
writes the squares. A fused matmul is the matmul's emitter followed by its epilogue's bindings,
which FuseOps and our CPU schedules (`tvm.schedules.common`: matmul kernels with fused epilogues) put
in the matmul kernel's output loop.
"""

from __future__ import annotations

from typing import Any

import tvm_ffi
from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ....graph import Node
from ....graph.ops.fused import fold, symbols
from ....graph.ops.fused_reduce import map_type
from .context import EMITTERS, EmitContext, register_emitter


@register_emitter("fused")
def _fused(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    outputs = _expressions(ctx, node, args, node.types[0].shape)
    return outputs[0] if len(outputs) == 1 else relax.Tuple(outputs)


@register_emitter("fused_reduce")
def _fused_reduce(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """The elementwise part at its own broadcast shape, then the reduction's emitter."""
    mapped = map_type(tuple(node.graph.type_of(v) for v in node.inputs), node.attrs["exprs"])
    (values,) = _expressions(ctx, node, args, mapped.shape)
    return EMITTERS[node.attrs["reduce"]](ctx, node, [ctx.bb.emit(values)])


@register_emitter("fused_matmul")
def _fused_matmul(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    flags = (node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False))
    ranks = [node.graph.type_of(v).rank for v in node.inputs[:2]]
    read = [_swapped(ctx, x, rank, flag) for x, rank, flag in zip(args[:2], ranks, flags)]
    product = ctx.bb.emit(EMITTERS["matmul"](ctx, node, read))
    outputs = _expressions(ctx, node, [product, *args[2:]], node.types[0].shape)
    return outputs[0] if len(outputs) == 1 else relax.Tuple(outputs)


def _swapped(ctx: EmitContext, arg: relax.Expr, rank: int, flag: bool) -> relax.Expr:
    """A matmul operand with its last two axes swapped when `flag` (FuseOps inlines the transpose)."""
    if not flag:
        return arg
    return ctx.bb.emit(R.permute_dims(arg, [*range(rank - 2), rank - 1, rank - 2]))


def _expressions(ctx: EmitContext, node: Node, args: list[relax.Expr], shape: tuple) -> list[relax.Expr]:
    """Each operation of the node's expressions through the emitter of the gradkiln op of that
    name (fold names them so), with the node standing in for its dtype; each result broadcast
    to `shape` where it has another shape (a copy kernel otherwise, which also keeps FuseOps
    from putting a matmul's consumers into its kernel)."""
    dtype = node.types[0].dtype

    def apply(op: str, operands: list[Any]) -> relax.Expr:
        return ctx.bb.emit(EMITTERS[op](ctx, node, operands))

    by_symbol = dict(zip(symbols(len(args)), args))
    values = fold(node.attrs["exprs"], by_symbol.__getitem__, lambda v: relax.const(v, dtype), apply)
    target = relax.ShapeExpr(ctx.dim.shape(shape))
    return [v if _has_shape(v, target) else R.broadcast_to(v, target) for v in values]


def _has_shape(value: relax.Expr, shape: relax.ShapeExpr) -> bool:
    ty = value.ty
    known = isinstance(ty, relax.TensorType) and isinstance(ty.shape, relax.ShapeExpr)
    return known and tvm_ffi.structural_equal(ty.shape, shape)
