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

from typing import Any, Callable

from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.ops.fused import FUNCTIONS, fold, symbols
from .tvm_emitters import DIRECT, EmitContext, keep_nan, register_emitter, relu, tanh


def relax_ops(dtype: str) -> dict[str, Callable[..., relax.Expr]]:
    """fold's operations as Relax operations over values of `dtype`."""
    one = relax.const(1.0, dtype)
    return {
        "add": R.add,
        "mul": R.multiply,
        "div": R.divide,
        "pow": R.power,
        "sqrt": R.sqrt,
        "rsqrt": R.rsqrt,
        "reciprocal": lambda a: R.divide(one, a),
        "square": lambda a: R.multiply(a, a),
        "log1p": lambda a: R.log(R.add(a, one)),
        "expm1": lambda a: R.subtract(R.exp(a), one),
        "tanh": lambda a: tanh(a, dtype),
        "relu": lambda a: relu(a, dtype),
        "sign": lambda a: keep_nan(R.sign(a), a),
        **{op: DIRECT[op] for op in FUNCTIONS if op in DIRECT},
    }


@register_emitter("fused")
def _fused(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    dtype = node.types[0].dtype
    shape = ctx.dim.shape(node.types[0].shape)
    ops = relax_ops(dtype)

    def apply(op: str, operands: list[Any]) -> relax.Expr:
        return ctx.bb.emit(ops[op](*operands))

    by_symbol = dict(zip(symbols(len(args)), args))
    values = fold(node.attrs["exprs"], by_symbol.__getitem__, lambda v: relax.const(v, dtype), apply)
    outputs = [R.broadcast_to(v, shape) for v in values]
    return outputs[0] if len(outputs) == 1 else relax.Tuple(outputs)
