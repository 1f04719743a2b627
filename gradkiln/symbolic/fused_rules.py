"""vjp, jvp and batching rules of the fused elementwise op, derived from its sympy expressions.

The gradient of a fused node is one more fused node: its expressions are the vector-Jacobian
products of the forward expressions (`sympy_bridge.vjp_exprs`), over the forward inputs, the
cotangents and the forward outputs (so tanh' reads the saved tanh instead of recomputing it),
each then summed back to its input's shape. The jvp is likewise one fused node; batching lifts
batched operands like any elementwise op.

A fused reduction (`fused_reduce`) chains the reduction's own rule with the fused rules: its
elementwise part is recomputed as a fused node (the walk drops it again when no rule reads it,
as for sum), the reduction's vjp gives that part's cotangent, and the fused vjp the rest. A
fused matmul (`fused_matmul`) is the other way round: the epilogue's fused rule gives the
cotangent (or tangent) of the product, then the matmul's rule; the product is recomputed only
where the epilogue's derivative reads it (not for bias, relu, tanh or residual adds, whose
derivatives read the node's output). Batching re-emits it as a batched matmul and fused node.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.ops.fused import Expressions, symbols
from ..graph.ops.fused_reduce import map_type
from ..graph.types import Dim, same_type
from .batching import BATCH_RULES, broadcasting_rule, lift_batched, register_batch
from .jvp_rules import JVP_RULES, Tangents, register_jvp
from .sympy_bridge import jvp_exprs, share, vjp_exprs
from .vjp_rules import VJP_RULES, register_vjp, unbroadcast


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
    outs, gs = (out, g) if isinstance(out, tuple) else ((out,), (g,))  # outs () for fused_reduce: none kept
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


def _elementwise_part(inputs: tuple[Tensor, ...], exprs: Expressions, reduce: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """(the input the reduction's rule gets, the forward values the fused rules may read): the
    elementwise part recomputed for max (its rule compares values); for sum and mean, whose rules
    read only the shape, an input of its type or else zeros of its type, so nothing is recomputed."""
    if reduce in ("sum", "mean"):
        ty = map_type(tuple(x.type for x in inputs), exprs)
        whole = next((x for x in inputs if same_type(x.type, ty)), None)
        if whole is None:
            whole = gb.broadcast_to(gb.constant(np.zeros((), ty.dtype), graph=inputs[0].graph), ty.shape)
        return whole, ()
    mapped = gb.emit("fused", *inputs, exprs=exprs)
    return mapped, (mapped,)


@register_vjp("fused_reduce")
def _fused_reduce_vjp(
    inputs: tuple[Tensor, ...],
    out: Tensor,
    g: Tensor,
    exprs: Expressions,
    reduce: str,
    axes: tuple[int, ...],
    keepdims: bool,
) -> list[Tensor | None]:
    mapped, known = _elementwise_part(inputs, exprs, reduce)
    g_mapped = VJP_RULES[reduce]((mapped,), out, g, axes=axes, keepdims=keepdims)
    return _fused_vjp(inputs, known, tuple(g_mapped), exprs)


@register_jvp("fused_reduce")
def _fused_reduce_jvp(
    inputs: tuple[Tensor, ...],
    out: Tensor,
    tangents: Tangents,
    exprs: Expressions,
    reduce: str,
    axes: tuple[int, ...],
    keepdims: bool,
) -> Tensor | None:
    mapped, known = _elementwise_part(inputs, exprs, reduce)
    t_mapped = _fused_jvp(inputs, known, tangents, exprs)
    if t_mapped is None:
        return None
    spread = gb.broadcast_to(t_mapped, mapped.shape)  # a tangent may read only narrower operands
    return JVP_RULES[reduce]((mapped,), out, [spread], axes=axes, keepdims=keepdims)


@register_batch("fused_reduce")
def _fused_reduce_batch(
    inputs: tuple[Tensor, ...],
    batched: tuple[bool, ...],
    out: Tensor,
    size: Dim,
    axes: tuple[int, ...],
    **attrs: object,
) -> Tensor:
    rank = out.ndim + (0 if attrs["keepdims"] else len(axes))  # of the elementwise part
    operands = [lift_batched(x, rank) if b else x for x, b in zip(inputs, batched)]
    result = gb.emit("fused_reduce", *operands, axes=tuple(a + 1 for a in axes), **attrs)
    return gb.broadcast_to(result, (size, *out.shape))


def _as_read(a: Tensor, b: Tensor, transpose_a: bool, transpose_b: bool) -> tuple[Tensor, Tensor]:
    """The matmul's operands as a fused matmul reads them (its flags applied)."""
    return _swapped(a, transpose_a), _swapped(b, transpose_b)


def _swapped(t: Tensor | None, flag: bool) -> Tensor | None:
    if t is None or not flag:
        return t
    return gb.transpose(t, (*range(t.ndim - 2), t.ndim - 1, t.ndim - 2))


@register_vjp("fused_matmul")
def _fused_matmul_vjp(
    inputs: tuple[Tensor, ...],
    out: Tensor | tuple[Tensor, ...],
    g: Tensor | tuple[Tensor, ...],
    exprs: Expressions,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> list[Tensor | None]:
    a, b, *extras = inputs
    read = _as_read(a, b, transpose_a, transpose_b)
    product = gb.emit("matmul", *read)  # the walk drops it again unless the epilogue's derivative reads it
    g_product, *g_extras = _fused_vjp((product, *extras), out, g, exprs)
    if g_product is None:
        return [None, None, *g_extras]
    g_a, g_b = VJP_RULES["matmul"](read, product, g_product)
    return [_swapped(g_a, transpose_a), _swapped(g_b, transpose_b), *g_extras]


@register_jvp("fused_matmul")
def _fused_matmul_jvp(
    inputs: tuple[Tensor, ...],
    out: Tensor | tuple[Tensor, ...],
    tangents: Tangents,
    exprs: Expressions,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> Tensor | list[Tensor | None] | None:
    a, b, *extras = inputs
    t_a, t_b, *t_extras = tangents
    read = _as_read(a, b, transpose_a, transpose_b)
    product = gb.emit("matmul", *read)
    t_read = [_swapped(t_a, transpose_a), _swapped(t_b, transpose_b)]
    t_product = None if t_a is None and t_b is None else JVP_RULES["matmul"](read, product, t_read)
    if t_product is None and all(t is None for t in t_extras):
        return None
    return _fused_jvp((product, *extras), out, [t_product, *t_extras], exprs)


@register_batch("fused_matmul")
def _fused_matmul_batch(
    inputs: tuple[Tensor, ...],
    batched: tuple[bool, ...],
    out: Tensor | tuple[Tensor, ...],
    size: Dim,
    exprs: Expressions,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> Tensor | tuple[Tensor, ...]:
    first = out[0] if isinstance(out, tuple) else out  # every output has the product's type
    read = _as_read(inputs[0], inputs[1], transpose_a, transpose_b)  # a batch axis first stays first
    product = BATCH_RULES["matmul"](read, batched[:2], first, size)
    return BATCH_RULES["fused"]((product, *inputs[2:]), (True, *batched[2:]), out, size, exprs=exprs)
