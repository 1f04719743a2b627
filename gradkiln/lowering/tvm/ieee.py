"""IEEE float semantics in llvm kernels: what TVM's own rewrites would change, hidden from them.

TVM simplifies float expressions as if NaN, inf and -0.0 did not exist, so a kernel could give a
number where numpy gives NaN (a NaN loss reading 0):

- building `x * 0.0`, `0.0 * x`, `x + 0.0` or `0.0 / x` folds it (`arith::TryConstFold`), and
  LegalizeOps turns every scalar constant operand into such an immediate;
- its simplifier (`arith::RewriteSimplifier`, run by the TIR pipeline) rewrites `x - x` and
  `(x + y) - y` to 0 and x, `x == x` to true, `!(x < y)` to `y <= x` (false for NaN);
- its LLVM codegen compiles a float `!=` to an ordered compare, false for NaN (numpy: true).

The fix keeps LLVM, which follows IEEE (no fast-math flags), as the only optimizer of float
arithmetic: `ieee_barrier(x)` is an identity that TVM cannot see through, lowered to x by
LowerIntrin, after the last simplification. Two places put barriers in: `LEGALIZE_MAP` wraps the
zero scalar constants of add, multiply and divide, and `shield_float_identities` (first pass of
the TIR pipeline) wraps the right operand of float subtractions and equalities, writes `a != b` as
`!(a == b)` (an unordered compare in LLVM), and hides comparisons under a `!`.
TVM's LLVM target also allows floating-point op fusion, so the backend turned `a * b + c` into one
fused multiply-add (one rounding where numpy rounds twice): LEGALIZE_MAP reads the operands of add
and subtract through `fence` (`fenced_sum`, one stage), lowered to `llvm.arithmetic.fence`, which
the backend does not fuse across. Reductions (matmul, conv) are TVM's own kernels and keep their FMAs, as BLAS does.
TVM also takes a -0.0 constant for 0.0 (`select(c, -0.0, 0.0)` became -0.0 during fusion): kernels
that need a signed zero compute it with copysign.
"""

from __future__ import annotations

from typing import Any, Callable

import tvm
import tvm_ffi
from tvm import relax, te, tirx, topi
from tvm.relax.transform.legalize_ops.common import _is_relax_expr, _try_convert_to_scalar_const

BARRIER = "gradkiln.ieee_barrier"
FENCE = "gradkiln.contraction_fence"
SHIELDED = ("float16", "float32", "float64")  # not bfloat16, float8: passes that know no barrier legalize them


def _base(dtype: Any) -> str:
    return str(dtype).split("x")[0]


def _is_float(expr: Any) -> bool:
    return _base(expr.ty) in SHIELDED


def _register() -> None:
    """Declare the barrier: pure (CSE and TVM's side-effect checks may treat it as any pure value),
    vectorizable lane by lane, and lowered to its argument on llvm."""
    tvm.ir.register_op_attr(BARRIER, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
    tvm.ir.register_op_attr(BARRIER, "TVectorizable", True)
    tvm.ir.register_op_attr(BARRIER, "TScriptPrinterName", "gradkiln_ieee_barrier")
    tirx.register_intrin_lowering(BARRIER, "llvm", f=lambda call: call.args[0], level=10)
    tvm.ir.register_op_attr(FENCE, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
    tvm.ir.register_op_attr(FENCE, "TVectorizable", True)
    tvm.ir.register_op_attr(FENCE, "TScriptPrinterName", "gradkiln_contraction_fence")
    tirx.register_intrin_lowering(FENCE, "llvm", f=_arithmetic_fence, level=10)


def _arithmetic_fence(call: Any) -> Any:
    """LLVM's `llvm.arithmetic.fence`: the value, which the backend may not fuse with its user."""
    return tirx.call_llvm_pure_intrin(str(call.ty), "llvm.arithmetic.fence", call.args[0])


_register()


def barrier(x: Any) -> Any:
    """x, opaque to TVM's simplifier and constant folding."""
    return tirx.call_intrin(str(x.ty), BARRIER, x)


def fence(x: Any) -> Any:
    """x, which LLVM may not contract with the operation reading it: TVM's LLVM target allows
    floating-point op fusion, so `a * b + c` would compile to one fused multiply-add, rounded
    once where numpy rounds the product and the sum each (a 1-ulp difference in about a quarter of
    float32 results)."""
    return tirx.call_intrin(str(x.ty), FENCE, x)


def _shield_sub(e: tirx.Sub) -> Any:
    return tirx.Sub(e.a, barrier(e.b)) if _is_float(e) else e


def _shield_eq(e: tirx.EQ) -> Any:
    return tirx.EQ(e.a, barrier(e.b)) if _is_float(e.a) else e


def _shield_ne(e: tirx.NE) -> Any:
    return tirx.Not(barrier(tirx.EQ(e.a, barrier(e.b)))) if _is_float(e.a) else e


def _shield_not(e: tirx.Not) -> Any:
    """`!(a < b)` of floats: true for NaN, which the simplifier's `b <= a` is not."""
    inner = e.a
    compares = (tirx.LT, tirx.LE, tirx.GT, tirx.GE, tirx.EQ, tirx.NE)
    return tirx.Not(barrier(inner)) if isinstance(inner, compares) and _is_float(inner.a) else e


CALLBACKS = [(tirx.Sub, _shield_sub), (tirx.EQ, _shield_eq), (tirx.NE, _shield_ne), (tirx.Not, _shield_not)]


@tirx.transform.prim_func_pass(opt_level=0, name="ShieldFloatIdentities")
def shield_float_identities(func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: Any) -> tirx.PrimFunc:
    """Barriers where TVM's simplifier would break IEEE semantics (module docstring). Post-order, so
    an inner `!=` already reads `!(barrier(a == barrier(b)))` when its enclosing `!` is visited."""
    return tvm_ffi.structural_map(func, CALLBACKS)


def _zero_shielded(expr: relax.Expr) -> Any:
    """A 0-d constant as the immediate LegalizeOps would make, behind a barrier when it is a float
    zero (which `x * 0.0`, `x + 0.0` and `0.0 / x` would fold)."""
    value = _try_convert_to_scalar_const(expr)
    if isinstance(value, tirx.FloatImm) and value.value == 0 and _base(value.ty) in SHIELDED:
        return barrier(value)
    return value


def _is_one(dim: Any) -> bool:
    return isinstance(dim, tirx.IntImm) and dim.value == 1


def fenced_sum(op: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    """`op` (+ or -) of two operands broadcast as numpy does, in one stage, each float tensor operand
    read through `fence`: a product feeding the sum is rounded on its own, as numpy does."""

    def read(x: Any, index: tuple[Any, ...]) -> Any:
        if not isinstance(x, te.Tensor):
            return x  # an immediate: a constant, never a product
        lead = len(index) - len(x.shape)
        value = x(*(0 if _is_one(d) else i for d, i in zip(x.shape, index[lead:])))
        return fence(value) if _base(x.dtype) in SHIELDED else value

    def compute(lhs: Any, rhs: Any) -> Any:
        shapes = [list(x.shape) for x in (lhs, rhs) if isinstance(x, te.Tensor)]
        rank = max(map(len, shapes))
        padded = [[None] * (rank - len(shape)) + shape for shape in shapes]
        out = [next((d for d in dims if d is not None and not _is_one(d)), 1) for dims in zip(*padded)]
        return te.compute(out, lambda *i: op(read(lhs, i), read(rhs, i)), name=name)

    return compute


def _binary(te_func: Callable[..., Any]) -> Callable[[relax.BlockBuilder, relax.Call], relax.Expr]:
    """TVM's legalization of a binary op (a scalar constant operand becomes an immediate, the right
    one first), with float zeros kept opaque."""

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        lhs, rhs = call.args[0], _zero_shielded(call.args[1])
        if _is_relax_expr(rhs):  # a PrimExpr is a relax.Expr too in TVM 0.27: both immediates make no kernel
            lhs = _zero_shielded(lhs)
        return bb.call_te(te_func, lhs, rhs)

    return legalize


LEGALIZE_MAP = {
    "relax.add": _binary(fenced_sum(lambda a, b: a + b, "T_add")),
    "relax.subtract": _binary(fenced_sum(lambda a, b: a - b, "T_subtract")),
    "relax.multiply": _binary(topi.multiply),
    "relax.divide": _binary(topi.divide),
}
