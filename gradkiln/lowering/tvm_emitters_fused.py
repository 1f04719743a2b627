"""The Relax emitter of the fused elementwise op: one kernel computing every output expression.

Each input is read with numpy broadcasting (a static size-1 axis reads index 0; missing leading
axes are skipped). Output k is one stage of the kernel that reads the earlier outputs it contains
rather than recomputing them; a subexpression used twice, or the compound argument of a head
whose TIR repeats it, is one more stage (`_stage_points`). log1p and expm1 follow the
unfused emitters (log(1 + x), e**x - 1); softplus is the overflow-free max(x, 0) + log1p(e**-|x|).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import sympy
from tvm import relax, te, tirx

from ..graph import Node
from ..graph.ops.fused import FUNCTIONS, fold, subexpressions, substitute, symbols
from .tvm_emitters import EmitContext, register_emitter


def tir_ops(dtype: str) -> dict[str, Callable[..., tirx.PrimExpr]]:
    """fold's operations as TIR over values of `dtype`."""
    zero, one, two = tirx.const(0, dtype), tirx.const(1, dtype), tirx.const(2, dtype)
    return {
        "add": lambda a, b: a + b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "pow": tirx.pow,
        "sqrt": tirx.sqrt,
        "rsqrt": tirx.rsqrt,
        "reciprocal": lambda a: one / a,
        "square": lambda a: a * a,
        "exp": tirx.exp,
        "log": tirx.log,
        "tanh": lambda a: one - two / (tirx.exp(a * two) + one),
        "sin": tirx.sin,
        "cos": tirx.cos,
        "tan": tirx.tan,
        "asin": tirx.asin,
        "acos": tirx.acos,
        "atan": tirx.atan,
        "sinh": tirx.sinh,
        "cosh": tirx.cosh,
        "erf": tirx.erf,
        "sigmoid": tirx.sigmoid,
        "relu": lambda a: tirx.max(a, zero),
        "abs": tirx.abs,
        "sign": lambda a: tirx.if_then_else(a > zero, one, tirx.if_then_else(a < zero, -one, zero)),
        "log1p": lambda a: tirx.log(one + a),
        "expm1": lambda a: tirx.exp(a) - one,
        "softplus": lambda a: tirx.max(a, zero) + tirx.log(one + tirx.exp(-tirx.abs(a))),
    }


def _broadcast_read(x: te.Tensor, index: tuple[Any, ...]) -> tirx.PrimExpr:
    """x at the output position `index`, under numpy broadcasting."""
    lead = len(index) - len(x.shape)
    at = [0 if isinstance(d, tirx.IntImm) and int(d) == 1 else i for d, i in zip(x.shape, index[lead:])]
    return x(*at)


# Heads whose TIR uses the argument more than once (tanh's own lowering does too, so tanh is
# written with one exp instead): a compound argument of theirs is computed in a stage of its own,
# else nesting them grows the kernel exponentially (TVM inlines let-bound values).
REPEATS_ARGUMENT = (FUNCTIONS["sign"], FUNCTIONS["softplus"], FUNCTIONS["tan"])


def _stage_points(expr: sympy.Expr) -> list[sympy.Expr]:
    """The compound subexpressions of `expr` to compute in stages of their own, innermost first:
    those used more than once, and the arguments of heads that repeat them (x**2 included)."""
    order = subexpressions([expr])
    uses = Counter(a for e in order for a in e.args)
    repeats = {
        e.args[0] for e in order if isinstance(e, REPEATS_ARGUMENT) or (isinstance(e, sympy.Pow) and e.args[1] == 2)
    }
    return [e for e in order if e is not expr and e.args and not e.is_number and (uses[e] > 1 or e in repeats)]


def _stage(
    expr: sympy.Expr, by_symbol: dict[sympy.Symbol, te.Tensor], shape: list[Any], dtype: str, name: str
) -> te.Tensor:
    """`expr` as one TE computation reading the tensors of its symbols (broadcast)."""
    ops = tir_ops(dtype)

    def element(*index: tirx.PrimExpr) -> tirx.PrimExpr:
        def read(symbol: sympy.Symbol) -> tirx.PrimExpr:
            return _broadcast_read(by_symbol[symbol], index)

        (value,) = fold([expr], read, lambda v: tirx.const(v, dtype), lambda op, args: ops[op](*args))
        return value.astype(dtype)

    return te.compute(shape, element, name=name)


def _staged(
    expr: sympy.Expr, by_symbol: dict[sympy.Symbol, te.Tensor], shape: list[Any], dtype: str, name: str
) -> te.Tensor:
    """`expr` as a chain of stages: its stage points first (each reading the earlier ones), then itself."""
    points = _stage_points(expr)
    names = {e: sympy.Symbol(f"_{name}_{i}") for i, e in enumerate(points)}
    for i, point in enumerate(points):
        inner = {e: n for e, n in names.items() if e is not point}
        by_symbol[names[point]] = _stage(substitute(point, inner), by_symbol, shape, dtype, f"{name}_{i}")
    return _stage(substitute(expr, names), by_symbol, shape, dtype, name)


@register_emitter("fused")
def _fused(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """One stage per output, in one kernel; a later output reads what an earlier one computed."""
    exprs = list(node.attrs["exprs"])
    shape = ctx.dim.shape(node.types[0].shape)
    dtype = node.types[0].dtype
    names = [sympy.Symbol(f"_o{k}") for k in range(len(exprs))]

    def compute(*tensors: te.Tensor) -> te.Tensor | list[te.Tensor]:
        by_symbol: dict[sympy.Symbol, te.Tensor] = dict(zip(symbols(len(tensors)), tensors))
        stages: list[te.Tensor] = []
        for k, expr in enumerate(exprs):
            earlier = dict(zip(exprs[:k], names[:k]))
            stages.append(_staged(substitute(expr, earlier), by_symbol, shape, dtype, f"fused{k}"))
            by_symbol[names[k]] = stages[-1]
        return stages if len(stages) > 1 else stages[0]

    return ctx.bb.emit_te(compute, *args, primfunc_name_hint="fused")
