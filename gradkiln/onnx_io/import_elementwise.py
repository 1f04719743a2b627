"""Import rules mapping ONNX math ops onto gradkiln's native math ops (one node each, so that
they differentiate, lower and export as themselves). They replace the compositions registered
for the same ONNX ops elsewhere, and fall back to those rules where the native op does not fit:
known (shape arithmetic) values, tensor-valued Clip bounds, ArgMax with select_last_index.
Also the compositions ONNX ops need beyond one native op: Asinh, Acosh, Atanh; integer Pow (in
float64); ReduceMax/ReduceMin of bool (any/all) and over an empty axis (the dtype's limits);
and the pattern float `mod` exports as, read back as one mod.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_float
from ..graph.types import dims_equal
from .import_rules import reduction
from .importer import ImportContext, ImportRule, Known, OnnxNode, Operand, register_importer
from .shape_rules import foldable

# ONNX op -> gradkiln builder function of one tensor and the node's attributes (the ops of the
# elementwise table import through import_rules.ELEMENTWISE).
UNARY: dict[str, Callable[[Tensor, dict], Tensor]] = {
    "LeakyRelu": lambda x, a: gb.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda x, a: gb.elu(x, a.get("alpha", 1.0)),
    "Gelu": lambda x, a: gb.gelu(x, a.get("approximate", "none")),
}


def _asinh(x: Tensor) -> Tensor:
    """sign(x) log1p(|x| + x^2 / (1 + sqrt(x^2 + 1))), with that fraction written as
    |x| / (1/|x| + sqrt(1 + 1/x^2)): accurate near 0, and no overflow of x^2 for large |x|."""
    m = gb.abs(x)
    inverse = 1 / m
    return gb.sign(x) * gb.log1p(m + m / (inverse + gb.sqrt(1 + inverse * inverse)))


def _acosh(x: Tensor) -> Tensor:
    """log1p((x - 1) + sqrt(x - 1) sqrt(x + 1)): accurate near 1, NaN below it."""
    return gb.log1p((x - 1) + gb.sqrt(x - 1) * gb.sqrt(x + 1))


def _atanh(x: Tensor) -> Tensor:
    """(log1p(x) - log1p(-x)) / 2: accurate near 0 and near +-1, NaN outside [-1, 1]."""
    return (gb.log1p(x) - gb.log1p(-x)) / 2


UNARY |= {"Asinh": lambda x, a: _asinh(x), "Acosh": lambda x, a: _acosh(x), "Atanh": lambda x, a: _atanh(x)}


def _unary(fn: Callable[[Tensor, dict], Tensor]) -> ImportRule:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), n.attrs)

    return rule


def _mod(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """fmod=0 is gradkiln's mod (the divisor's sign); fmod=1 takes the dividend's sign instead:
    mod(a, b) - b where it and a have opposite signs."""
    a, b = ctx.tensor(args[0]), ctx.tensor(args[1])
    rem = gb.mod(a, b)
    if not n.attrs.get("fmod", 0):
        return rem
    return gb.where(gb.less(gb.mul(rem, a), 0), gb.sub(rem, b), rem)


def _int_div(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Integer Div truncates toward 0: floordiv, plus one where the remainder is non-zero and
    the signs differ. (a - mod(a, b)) / b, how floordiv exports, is read back as floordiv(a, b)."""
    a, b = ctx.tensor(args[0]), ctx.tensor(args[1])
    exact = _floordiv_operands(a, b)
    if exact is not None:
        return gb.floordiv(*exact)
    quotient = gb.floordiv(a, b)
    differ = gb.not_equal(gb.less(a, 0), gb.less(b, 0))
    return gb.where(gb.equal(gb.mod(a, b), 0), quotient, gb.where(differ, gb.add(quotient, 1), quotient))


def _floordiv_operands(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor] | None:
    """(a0, b) when a is a0 - mod(a0, b), else None."""
    if a.node.op != "sub":
        return None
    a0, rem = (Tensor(a.graph, v) for v in a.node.inputs)
    if rem.node.op == "mod" and tuple(rem.node.inputs) == (a0.value, b.value):
        return a0, b
    return None


def _exported_float_mod(args: list[Operand]) -> tuple[Tensor, Tensor] | None:
    """(a, b) when Where(args) is how gradkiln exports mod of floats, where(r * b < 0, r + b, r)
    with r = Mod(a, b, fmod=1) as `_mod` imports it (so export -> import gives one mod again)."""
    if not all(isinstance(x, Tensor) for x in args) or args[2].node.op != "where":
        return None
    cond, plus, r = args
    fm_cond, fm_sub, rem = (Tensor(r.graph, v) for v in r.node.inputs)
    if rem.node.op != "mod":
        return None
    a, b = (Tensor(r.graph, v) for v in rem.node.inputs)
    fmod = _is(fm_sub, "sub", rem, b) and _is(fm_cond, "less") and _is(_input(fm_cond, 0), "mul", rem, a)
    exported = _is(plus, "add", r, b) and _is(cond, "less") and _is(_input(cond, 0), "mul", r, b)
    zeros = all(_is_zero(_input(c, 1)) for c in (cond, fm_cond))
    return (a, b) if fmod and exported and zeros else None


def _input(t: Tensor, slot: int) -> Tensor:
    return Tensor(t.graph, t.node.inputs[slot])


def _is(t: Tensor, op: str, *inputs: Tensor) -> bool:
    """Whether `t` is computed by `op` (from `inputs`, in order, when given)."""
    return t.node.op == op and (not inputs or tuple(t.node.inputs) == tuple(x.value for x in inputs))


def _is_zero(t: Tensor) -> bool:
    return t.node.op == "constant" and not np.any(t.node.attrs["value"])


def _int_pow(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Pow of an integer base (ONNX gives the base's type): computed in float64 (exact while the
    result fits in 53 bits), then truncated to the base's dtype."""
    base, exponent = ctx.tensor(args[0]), ctx.tensor(args[1])
    return gb.cast(gb.pow(gb.cast(base, "float64"), gb.cast(exponent, "float64")), base.dtype)


def _any(x: Tensor, axes: list[int] | None = None, keepdims: bool = True) -> Tensor:
    """ReduceMax of bool: whether any is true (false over no elements)."""
    return gb.greater(gb.sum(gb.cast(x, "int64"), axes, keepdims=keepdims), 0)


def _all(x: Tensor, axes: list[int] | None = None, keepdims: bool = True) -> Tensor:
    """ReduceMin of bool: whether all are true (true over no elements)."""
    falses = gb.equal(x, gb.constant(False, graph=x.graph))  # as Not imports: the round trip is stable
    return gb.equal(gb.sum(gb.cast(falses, "int64"), axes, keepdims=keepdims), 0)


def _over_empty(reduce: Callable[..., Tensor], lowest: bool) -> Callable[..., Tensor]:
    """`reduce` (max, min or logsumexp), or, over an axis of size 0, ONNX's value for the empty
    set: the lowest value of the dtype (-inf for floats) for max and logsumexp, the highest for min."""

    def fn(x: Tensor, axes: list[int] | None = None, keepdims: bool = True) -> Tensor:
        reduced = sorted({a % x.ndim for a in axes}) if axes else list(range(x.ndim))
        if not any(dims_equal(x.shape[a], 0) for a in reduced):
            return reduce(x, axes, keepdims=keepdims)
        limits = (-np.inf, np.inf) if is_float(x.dtype) else (np.iinfo(x.dtype).min, np.iinfo(x.dtype).max)
        fill = limits[0] if lowest else limits[1]
        shape = [1 if a in reduced else d for a, d in enumerate(x.shape) if keepdims or a not in reduced]
        return gb.broadcast_to(gb.constant(np.array(fill, x.dtype)), tuple(shape))

    return fn


def _scalar_or_none(operand: Operand) -> float | int | None:
    return None if operand is None else np.asarray(operand.array).reshape(()).item()


def _clip(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Bounds from the attributes before opset 11, from known scalar inputs since."""
    if n.opset < 11:
        return gb.clip(ctx.tensor(args[0]), n.attrs.get("min"), n.attrs.get("max"))
    lo, hi = (_scalar_or_none(a) for a in (args[1:] + [None, None])[:2])
    return gb.clip(ctx.tensor(args[0]), lo, hi)


def _arg(fn: Callable[..., Tensor]) -> ImportRule:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), n.attrs.get("axis", 0), bool(n.attrs.get("keepdims", 1)))

    return rule


@register_importer("CumSum")
def _cumsum(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    axis = int(np.asarray(ctx.known(args[1], "axis")).reshape(()))
    exclusive, reverse = bool(n.attrs.get("exclusive", 0)), bool(n.attrs.get("reverse", 0))
    return gb.cumsum(ctx.tensor(args[0]), axis, exclusive=exclusive, reverse=reverse)


def _is_number(operand: Operand) -> bool:
    return isinstance(operand, Known) and operand.array.dtype != object


for _op_type, _fn in UNARY.items():
    register_importer(_op_type)(_unary(_fn))
register_importer("ReduceMax")(reduction(_over_empty(gb.max, lowest=True)))
register_importer("ReduceMin")(reduction(_over_empty(gb.min, lowest=False)))
register_importer("ReduceLogSumExp")(reduction(_over_empty(gb.logsumexp, lowest=True)))
# Native rules in front of the compositions of import_rules' modules, each where it applies:
register_importer("ReduceProd", when=lambda c, n, args: not isinstance(args[0], Known))(reduction(gb.prod))
register_importer("Mod", when=lambda c, n, args: not foldable(args))(_mod)
register_importer("Where", when=lambda c, n, args: _exported_float_mod(args) is not None)(
    lambda c, n, args: gb.mod(*_exported_float_mod(args))
)
register_importer("Pow", when=lambda c, n, args: not (foldable(args) or is_float(args[0].dtype)))(_int_pow)
register_importer("ReduceMax", when=lambda c, n, args: args[0].dtype == "bool")(reduction(_any))
register_importer("ReduceMin", when=lambda c, n, args: args[0].dtype == "bool")(reduction(_all))
register_importer("Div", when=lambda c, n, args: not (foldable(args) or is_float(args[0].dtype)))(_int_div)
register_importer("Clip", when=lambda c, n, args: all(a is None or _is_number(a) for a in args[1:]))(_clip)
register_importer("ArgMax", when=lambda c, n, args: not n.attrs.get("select_last_index", 0))(_arg(gb.argmax))
register_importer("ArgMin", when=lambda c, n, args: not n.attrs.get("select_last_index", 0))(_arg(gb.argmin))
