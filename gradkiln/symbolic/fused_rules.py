"""vjp, jvp and batching rules of the fused elementwise op, derived from its sympy expressions.

The gradient of a fused node is one more fused node: its expressions are the vector-Jacobian
products of the forward expressions (`sympy_bridge.vjp_exprs`), over the forward inputs, the
cotangents and the forward outputs (so tanh' reads the saved tanh instead of recomputing it),
each then summed back to its input's shape. The jvp is likewise one fused node; batching lifts
batched operands like any elementwise op.
"""

from __future__ import annotations

from typing import Sequence

import sympy

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.ops.fused import Expressions, symbols
from .batching import broadcasting_rule, register_batch
from .jvp_rules import Tangents, register_jvp
from .sympy_bridge import jvp_exprs, share, vjp_exprs
from .vjp_rules import register_vjp, unbroadcast


def emit_fused(exprs: Sequence[sympy.Expr], operands: Sequence[Tensor]) -> list[Tensor | None]:
    """One fused node computing `exprs` over `operands` (symbol x_i is operands[i]): operands no
    expression reads are dropped, repeated ones merged; a zero expression gives None."""
    used = set().union(*(e.free_symbols for e in exprs))
    kept: dict[object, sympy.Symbol] = {}
    renamed: dict[sympy.Expr, sympy.Expr] = {}
    for symbol, operand in zip(symbols(len(operands)), operands):
        if symbol in used:
            target = kept.setdefault(operand.value, sympy.Symbol(f"x{len(kept)}"))
            renamed[symbol] = target
    by_value = {t.value: t for t in operands}
    live = [i for i, e in enumerate(exprs) if not _is_zero(e)]
    results: list[Tensor | None] = [None] * len(exprs)
    if live:
        outs = gb.emit(
            "fused", *(by_value[v] for v in kept), exprs=Expressions(tuple(share([exprs[i] for i in live], renamed)))
        )
        for i, out in zip(live, outs if isinstance(outs, tuple) else (outs,)):
            results[i] = out
    return results


def _is_zero(expr: sympy.Expr) -> bool:
    """0, also unevaluated (`0 + 0` from differentiating sign): a constant has no operand to read."""
    return expr == 0 or (not expr.free_symbols and float(expr) == 0)


@register_vjp("fused")
def _fused_vjp(
    inputs: tuple[Tensor, ...], out: Tensor | tuple[Tensor, ...], g: Tensor | tuple[Tensor, ...], exprs: Expressions
) -> list[Tensor | None]:
    outs, gs = (out, g) if isinstance(out, tuple) else ((out,), (g,))
    xs = symbols(len(inputs))
    ys = symbols(len(outs), len(inputs))
    g_symbols = symbols(len(gs), len(inputs) + len(outs))
    grads = share(vjp_exprs(exprs, g_symbols, xs), dict(zip(exprs, ys)))
    emitted = emit_fused(grads, [*inputs, *outs, *gs])
    return [None if d is None else unbroadcast(d, x) for d, x in zip(emitted, inputs)]


@register_jvp("fused")
def _fused_jvp(
    inputs: tuple[Tensor, ...], out: Tensor | tuple[Tensor, ...], tangents: Tangents, exprs: Expressions
) -> Tensor | list[Tensor | None]:
    outs = out if isinstance(out, tuple) else (out,)
    xs = symbols(len(inputs))
    ys = symbols(len(outs), len(inputs))
    present = [(x, t) for x, t in zip(xs, tangents) if t is not None]
    t_symbols = symbols(len(present), len(inputs) + len(outs))
    derived = jvp_exprs(exprs, {x: s for (x, _), s in zip(present, t_symbols)})
    emitted = emit_fused(share(derived, dict(zip(exprs, ys))), [*inputs, *outs, *(t for _, t in present)])
    return emitted[0] if len(emitted) == 1 else emitted


register_batch("fused")(broadcasting_rule("fused"))
