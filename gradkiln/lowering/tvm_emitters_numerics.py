"""Relax emitters of ops whose direct Relax forms lose numpy's results: mod, floordiv, log1p, expm1, elu.

TVM computes a float floor_mod as a - floor(a / b) * b: mod(3e38, -3) gave 1e31 (numpy: -1),
mod(x, +-inf) NaN (numpy: x, or +-inf when the signs differ) and floordiv(1, -inf) -0 (numpy: -1).
Floats here follow numpy's `npy_divmod`: C's fmod (LLVM's frem, exact), moved to the divisor's
sign, and the quotient (a - mod) / b snapped to an integer; float16 is computed in float32 and
rounded once, as numpy's half loops do. Integer division by 0 (and INT_MIN // -1) traps on x86
and killed the process; numpy gives 0 (and INT_MIN), so the divisor is guarded.

log(1 + x) and exp(x) - 1 lose every digit for small x (log1p(1e-40) gave 0): they use Goldberg's
and Kahan's corrections, exact where 1 + x or e**x rounds to 1.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax, te, tirx
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.dtypes import is_float
from .tvm_emit_context import EmitContext, register_emitter


def _float_divmod(a: Any, b: Any, op: str) -> Any:
    """numpy's `npy_divmod` on two float scalars: C's fmod (LLVM's frem: exact, the sign of a),
    moved by b where it is non-zero with the sign opposite to b's; the quotient (a - fmod) / b,
    one less where the remainder moved, snapped to the nearest integer. Zero results take the
    sign numpy gives them; b = 0 gives fmod's NaN and a / b. Each operand is read once, into a Let:
    an inlined producer's own Let (a fused mod's) read several times is ill-formed TIR."""
    return _let(a, lambda x: _let(b, lambda y: _divmod_of_variables(x, y, op)))


def _divmod_of_variables(a: Any, b: Any, op: str) -> Any:
    dtype = str(a.ty)
    zero, one = tirx.const(0.0, dtype), tirx.const(1.0, dtype)

    def with_fmod(fmod: Any) -> Any:
        flip = tirx.Select(fmod < zero, b > zero, tirx.And(fmod > zero, b < zero))
        if op == "mod":
            return tirx.Select(fmod == zero, tirx.copysign(zero, b), tirx.Select(flip, fmod + b, fmod))
        div = (a - fmod) / b
        return _let(tirx.Select(flip, div - one, div), lambda q: _snapped(q, a / b))

    by_zero = a / b if op == "floordiv" else tirx.Mod(a, b)
    return tirx.Select(b == zero, by_zero, _let(tirx.Mod(a, b), with_fmod))


def _snapped(quotient: Any, ratio: Any) -> Any:
    """The nearly integral quotient rounded to the integer numpy picks; 0 with the sign of a / b."""
    dtype = str(quotient.ty)
    floor = tirx.floor(quotient)
    nearest = tirx.Select(quotient - floor > tirx.const(0.5, dtype), floor + tirx.const(1.0, dtype), floor)
    zero = tirx.const(0.0, dtype)
    return tirx.Select(quotient == zero, tirx.copysign(zero, ratio), nearest)


def _let(value: Any, body: Callable[[Any], Any]) -> Any:
    var = tirx.Var("v", str(value.ty))
    return tirx.Let(var, value, body(var))


def _int_divmod(a: Any, b: Any, op: str) -> Any:
    """Integer floordiv or mod, with numpy's 0 for a divisor of 0 and, for signed types, -a
    (wrapping) and 0 for -1: the divisors x86 traps on (x // 0, INT_MIN // -1)."""
    dtype = str(a.ty)
    zero, one = tirx.const(0, dtype), tirx.const(1, dtype)
    signed = np.issubdtype(np.dtype(dtype), np.signedinteger)
    minus_one = b == tirx.const(-1, dtype) if signed else tirx.const(False, "bool")
    safe = tirx.Select(tirx.Or(b == zero, minus_one), one, b)
    result = tirx.floormod(a, safe) if op == "mod" else tirx.floordiv(a, safe)
    whole = zero if op == "mod" else zero - a
    return tirx.Select(b == zero, zero, tirx.Select(minus_one, whole, result))


def _emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """One elementwise kernel over the operands broadcast to the result's shape (float16 in float32)."""
    dtype, shape = node.types[0].dtype, ctx.dim.shape(node.types[0].shape)
    wide = "float32" if dtype == "float16" else dtype
    operands = [_widened(ctx, x, shape, wide) for x in args]
    scalar = _float_divmod if is_float(dtype) else _int_divmod

    def compute(a: te.Tensor, b: te.Tensor) -> te.Tensor:
        return te.compute(a.shape, lambda *i: scalar(a(*i), b(*i), node.op), name=node.op)

    result = ctx.bb.emit_te(compute, *operands, primfunc_name_hint=node.op)
    return R.astype(result, dtype) if wide != dtype else result


def _widened(ctx: EmitContext, x: relax.Expr, shape: list[Any], dtype: str) -> relax.Expr:
    """x broadcast to `shape` and cast to `dtype`, where it is not already."""
    if not all(map(ctx.analyzer.can_prove_equal, x.ty.shape.values, shape)) or len(x.ty.shape.values) != len(shape):
        x = ctx.bb.emit(R.broadcast_to(x, relax.ShapeExpr(shape)))
    return ctx.bb.emit(R.astype(x, dtype)) if x.ty.dtype != dtype else x


register_emitter("floordiv")(_emit)
register_emitter("mod")(_emit)


def _log1p(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """log(u) * x / (u - 1) with u = 1 + x (Goldberg): the rounding of u cancels; x where u is 1,
    u where it is inf (log(u) * x / (u - 1) would be inf / inf)."""
    (x,) = args
    dtype = node.types[0].dtype
    u = ctx.bb.emit(R.add(x, relax.const(1.0, dtype)))
    ratio = R.multiply(R.log(u), R.divide(x, R.subtract(u, relax.const(1.0, dtype))))
    return R.where(R.equal(u, relax.const(1.0, dtype)), x, R.where(R.equal(u, relax.const(np.inf, dtype)), u, ratio))


def _expm1(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return expm1(ctx, args[0], node.types[0].dtype)


def _elu(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """numpy's where(x > 0, x, alpha * expm1(x)): exact near 0, NaN kept (a minimum(x, 0) before
    exp turned NaN into 0: LLVM's minnum drops NaN)."""
    (x,) = args
    dtype = node.types[0].dtype
    negative = R.multiply(relax.const(node.attrs["alpha"], dtype), expm1(ctx, x, dtype))
    return R.where(R.greater(x, relax.const(0.0, dtype)), x, negative)


def expm1(ctx: EmitContext, x: relax.Expr, dtype: str) -> relax.Expr:
    """(u - 1) * x / log(u) with u = e**x (Kahan): x where u is 1, -1 where u - 1 is, u where it is inf."""
    one = relax.const(1.0, dtype)
    u = ctx.bb.emit(R.exp(x))
    less_one = ctx.bb.emit(R.subtract(u, one))
    ratio = R.multiply(less_one, R.divide(x, R.log(u)))
    saturated = R.where(
        R.equal(less_one, relax.const(-1.0, dtype)), less_one, R.where(R.equal(u, relax.const(np.inf, dtype)), u, ratio)
    )
    return R.where(R.equal(u, one), x, saturated)


register_emitter("log1p")(_log1p)
register_emitter("expm1")(_expm1)
register_emitter("elu")(_elu)
