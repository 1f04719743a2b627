"""The Relax emitter of the fused elementwise op: its expressions as Relax operations, one binding
per subexpression (so a subexpression shared by several outputs is computed once), which TVM's
FuseOps then puts in one kernel with the neighbouring ops.

Why Relax operations and not one TE kernel written from the expressions: a hand-written TE
kernel hides the elementwise producers and epilogues of matmuls and convolutions from TVM's
fusion and from our CPU schedules (`tvm_schedules`), which then fail to match (the W1 MLP
step ran 6x slower in one measurement, on a busy machine); and TVM inlines let-bound values, so
one TE expression nesting heads whose lowering repeats the argument (tanh, sign, softplus, x**2)
grows exponentially. Relax bindings have neither problem, and FuseOps makes the single kernel
all the same.
"""

from __future__ import annotations

from typing import Any

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.ops.fused import fold, symbols
from .tvm_emitters import EMITTERS, EmitContext, register_emitter


@register_emitter("fused")
def _fused(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Each operation of the expressions through the emitter of the gradkiln op of that name (fold
    names them so), with the fused node standing in for its dtype."""
    dtype = node.types[0].dtype
    shape = ctx.dim.shape(node.types[0].shape)

    def apply(op: str, operands: list[Any]) -> relax.Expr:
        return ctx.bb.emit(EMITTERS[op](ctx, node, operands))

    by_symbol = dict(zip(symbols(len(args)), args))
    values = fold(node.attrs["exprs"], by_symbol.__getitem__, lambda v: relax.const(v, dtype), apply)
    outputs = [R.broadcast_to(v, shape) for v in values]
    return outputs[0] if len(outputs) == 1 else relax.Tuple(outputs)
