"""Import rules mapping ONNX math ops onto gradkiln's native math ops (one node each, so that
they differentiate, lower and export as themselves). They replace the compositions registered
for the same ONNX ops elsewhere, and fall back to those rules where the native op does not fit:
known (shape arithmetic) values, tensor-valued Clip bounds, ArgMax with select_last_index.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_float
from .import_rules import IMPORTERS, reduction
from .importer import ImportContext, ImportRule, Known, OnnxNode, Operand, register_importer
from .shape_rules import foldable

# ONNX op -> gradkiln builder function of one tensor and the node's attributes.
UNARY: dict[str, Callable[[Tensor, dict], Tensor]] = {
    "Sin": lambda x, a: gb.sin(x),
    "Cos": lambda x, a: gb.cos(x),
    "Tan": lambda x, a: gb.tan(x),
    "Asin": lambda x, a: gb.asin(x),
    "Acos": lambda x, a: gb.acos(x),
    "Atan": lambda x, a: gb.atan(x),
    "Sinh": lambda x, a: gb.sinh(x),
    "Cosh": lambda x, a: gb.cosh(x),
    "Erf": lambda x, a: gb.erf(x),
    "Softplus": lambda x, a: gb.softplus(x),
    "Floor": lambda x, a: gb.floor(x),
    "Ceil": lambda x, a: gb.ceil(x),
    "Round": lambda x, a: gb.round(x),
    "Reciprocal": lambda x, a: gb.reciprocal(x),
    "LeakyRelu": lambda x, a: gb.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda x, a: gb.elu(x, a.get("alpha", 1.0)),
    "Gelu": lambda x, a: gb.gelu(x, a.get("approximate", "none")),
}
REDUCTIONS = {"ReduceMin": gb.min, "ReduceLogSumExp": gb.logsumexp}


def _unary(fn: Callable[[Tensor, dict], Tensor]) -> ImportRule:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), n.attrs)

    return rule


def _with_fallback(op_type: str, use_previous: Callable[[OnnxNode, list[Operand]], bool], native: ImportRule) -> None:
    """Register `native` for `op_type`, deferring to the rule registered before it where
    `use_previous(node, args)` holds."""
    previous = IMPORTERS[op_type]

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return (previous if use_previous(n, args) else native)(ctx, n, args)

    register_importer(op_type)(rule)


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
for _op_type, _reduce in REDUCTIONS.items():
    register_importer(_op_type)(reduction(_reduce))
_with_fallback("ReduceProd", lambda n, args: isinstance(args[0], Known), reduction(gb.prod))
_with_fallback("Mod", lambda n, args: foldable(args), _mod)
_with_fallback("Div", lambda n, args: foldable(args) or is_float(args[0].dtype), _int_div)
_with_fallback("Clip", lambda n, args: not all(a is None or _is_number(a) for a in args[1:]), _clip)
_with_fallback("ArgMax", lambda n, args: bool(n.attrs.get("select_last_index", 0)), _arg(gb.argmax))
_with_fallback("ArgMin", lambda n, args: bool(n.attrs.get("select_last_index", 0)), _arg(gb.argmin))
