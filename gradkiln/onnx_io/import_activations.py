"""Import rules for ONNX activations and elementwise ops that compose from gradkiln's ops
(those with a native gradkiln op of their own are in import_elementwise.py).

Each rule follows the ONNX definition formula for formula (attribute defaults included), so
the results match the ONNX reference to rounding.
"""

from __future__ import annotations

import math
from typing import Callable

from ..graph import Tensor
from ..graph import builder as gb
from .importer import ImportContext, ImportRule, OnnxNode, Operand, register_importer
from .shape_rules import eval_elementwise, foldable

Attrs = dict
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _hard_sigmoid(x: Tensor, alpha: float, beta: float) -> Tensor:
    return gb.maximum(gb.minimum(gb.add(gb.mul(x, alpha), beta), 1.0), 0.0)


def _is_inf(x: Tensor, a: Attrs) -> Tensor:
    signs = [s for s, key in ((1, "detect_positive"), (-1, "detect_negative")) if a.get(key, 1)]
    hits = [gb.equal(x, s * math.inf) for s in signs]
    if not hits:
        return gb.equal(x, math.nan)  # detects nothing: NaN equals nothing
    return hits[0] if len(hits) == 1 else gb.where(hits[0], True, hits[1])


# ONNX op -> f(x, attrs) over one float tensor.
UNARY: dict[str, Callable[[Tensor, Attrs], Tensor]] = {
    "Selu": lambda x, a: gb.mul(
        gb.where(
            gb.greater(x, 0.0), x, gb.sub(gb.mul(gb.exp(x), a.get("alpha", SELU_ALPHA)), a.get("alpha", SELU_ALPHA))
        ),
        a.get("gamma", SELU_GAMMA),
    ),
    "Celu": lambda x, a: gb.add(
        gb.maximum(x, 0.0),
        gb.minimum(gb.mul(gb.sub(gb.exp(gb.div(x, a.get("alpha", 1.0))), 1.0), a.get("alpha", 1.0)), 0.0),
    ),
    "ThresholdedRelu": lambda x, a: gb.where(gb.greater(x, a.get("alpha", 1.0)), x, 0.0),
    "HardSigmoid": lambda x, a: _hard_sigmoid(x, a.get("alpha", 0.2), a.get("beta", 0.5)),
    "HardSwish": lambda x, a: gb.mul(x, _hard_sigmoid(x, 1 / 6, 0.5)),
    "Softsign": lambda x, a: gb.div(x, gb.add(gb.abs(x), 1.0)),
    "Swish": lambda x, a: gb.mul(x, gb.sigmoid(gb.mul(x, a.get("alpha", 1.0)))),
    "Mish": lambda x, a: gb.mul(x, gb.tanh(gb.softplus(x))),
    "Shrink": lambda x, a: gb.where(
        gb.less(x, -a.get("lambd", 0.5)),
        gb.add(x, a.get("bias", 0.0)),
        gb.where(gb.greater(x, a.get("lambd", 0.5)), gb.sub(x, a.get("bias", 0.0)), 0.0),
    ),
    "IsNaN": lambda x, a: gb.not_equal(x, x),
    "IsInf": _is_inf,
}


def _unary(fn: Callable[[Tensor, Attrs], Tensor]) -> ImportRule:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), n.attrs)

    return rule


for _op_type, _fn in UNARY.items():
    register_importer(_op_type)(_unary(_fn))


@register_importer("PRelu")
def _prelu(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Before opset 7 a 1-D slope runs along the channel axis (1); since then it broadcasts."""
    x, slope = ctx.tensor(args[0]), ctx.tensor(args[1])
    if n.opset < 7 and slope.ndim == 1 and x.ndim > 2:
        slope = gb.reshape(slope, (-1,) + (1,) * (x.ndim - 2))
    return gb.where(gb.less(x, gb.constant(0, x.dtype, graph=x.graph)), gb.mul(x, slope), x)


@register_importer("Clip")
def _clip(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """max(x, min) then min(·, max): attributes before opset 11, optional inputs from then on."""
    x = ctx.tensor(args[0])
    if n.opset < 11:
        bounds = [n.attrs.get("min"), n.attrs.get("max")]
    else:
        bounds = [ctx.tensor(a) if a is not None else None for a in (args[1:] + [None, None])[:2]]
    low, high = (b if b is None or isinstance(b, Tensor) else gb.constant(b, x.dtype, graph=x.graph) for b in bounds)
    x = gb.maximum(x, low) if low is not None else x
    return gb.minimum(x, high) if high is not None else x


@register_importer("Mean")
def _mean(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    tensors = [ctx.tensor(a) for a in args]
    total = tensors[0]
    for t in tensors[1:]:
        total = gb.add(total, t)
    return gb.div(total, float(len(tensors))) if len(tensors) > 1 else total


LOGICAL: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "And": lambda a, b: gb.where(a, b, False),
    "Or": lambda a, b: gb.where(a, True, b),
    "Xor": gb.not_equal,
}


def _logical(fn: Callable[[Tensor, Tensor], Tensor]) -> ImportRule:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), ctx.tensor(args[1]))

    return rule


for _op_type, _fn2 in LOGICAL.items():
    register_importer(_op_type)(_logical(_fn2))


@register_importer("CastLike")
def _cast_like(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    narrow = ctx.narrow_type(args[1])
    if narrow is not None:  # a narrow type's values, as Cast to it gives
        return ctx.cast_narrow(args[0], narrow, bool(n.attrs.get("saturate", 1)))
    dtype = args[1].dtype
    if foldable(args[:1]):
        return eval_elementwise(ctx, "Cast", args[:1], dtype)
    return gb.cast(ctx.tensor(args[0]), dtype)
