"""ONNX export rules of the math family that ONNX (opset 18) writes as a composition: each rule
appends the nodes of a formula with the op's numpy semantics (the one-to-one ops are in the
tables of `export_rules`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..graph import Node, ONNXError
from ..graph.dtypes import is_float
from .export_rules import ExportRule, element_count, register_exporter
from .exporter import ExportContext


def _scalar(ctx: ExportContext, node: Node, value: float) -> str:
    """`value` as a scalar initializer of the node's first input's dtype."""
    return ctx.const(value, "k", dtype=node.graph.type_of(node.inputs[0]).dtype)


def _gelu(ctx: ExportContext, node: Node, x: str, outs: list[str]) -> str:
    """0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    if node.attrs["approximate"] == "tanh":
        cube = ctx.emit("Mul", [ctx.emit("Mul", [x, x]), x])
        inner = ctx.emit("Add", [x, ctx.emit("Mul", [cube, _scalar(ctx, node, 0.044715)])])
        curve = ctx.emit("Tanh", [ctx.emit("Mul", [inner, _scalar(ctx, node, math.sqrt(2 / math.pi))])])
    else:
        curve = ctx.emit("Erf", [ctx.emit("Mul", [x, _scalar(ctx, node, 1 / math.sqrt(2))])])
    half = ctx.emit("Mul", [x, _scalar(ctx, node, 0.5)])
    return ctx.emit("Mul", [half, ctx.emit("Add", [curve, _scalar(ctx, node, 1.0)])], outs)


def _clip(ctx: ExportContext, node: Node, x: str, outs: list[str]) -> str:
    """Clip with its optional bounds as inputs ("" for a missing one)."""
    bounds = [b if b is None else _scalar(ctx, node, b) for b in (node.attrs["lo"], node.attrs["hi"])]
    return ctx.emit("Clip", [x, *("" if b is None else b for b in bounds)], outs)


# op -> rule(ctx, node, x, outs) for unary ops.
UNARY: dict[str, Callable[[ExportContext, Node, str, list[str]], str]] = {
    "exp2": lambda ctx, node, x, outs: ctx.emit("Pow", [_scalar(ctx, node, 2.0), x], outs),
    "log1p": lambda ctx, node, x, outs: ctx.emit("Log", [ctx.emit("Add", [x, _scalar(ctx, node, 1.0)])], outs),
    "expm1": lambda ctx, node, x, outs: ctx.emit("Sub", [ctx.emit("Exp", [x]), _scalar(ctx, node, 1.0)], outs),
    "rsqrt": lambda ctx, node, x, outs: ctx.emit("Reciprocal", [ctx.emit("Sqrt", [x])], outs),
    "square": lambda ctx, node, x, outs: ctx.emit("Mul", [x, x], outs),
    "silu": lambda ctx, node, x, outs: ctx.emit("Mul", [x, ctx.emit("Sigmoid", [x])], outs),
    "gelu": _gelu,
    "clip": _clip,
}


def _unary(fn: Callable[[ExportContext, Node, str, list[str]], str]) -> ExportRule:
    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        fn(ctx, node, ins[0], outs)

    return rule


for _op, _fn in UNARY.items():
    register_exporter(_op)(_unary(_fn))


@register_exporter("atan2")
def _atan2(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """atan(a / b), shifted by pi (toward the sign of a) where b < 0. (At a = b = 0 it gives NaN,
    where numpy gives 0.)"""
    a, b = ins
    zero = _scalar(ctx, node, 0.0)
    half_turn = ctx.emit(
        "Where", [ctx.emit("Less", [a, zero]), _scalar(ctx, node, -math.pi), _scalar(ctx, node, math.pi)]
    )
    shift = ctx.emit("Where", [ctx.emit("Less", [b, zero]), half_turn, zero])
    ctx.emit("Add", [ctx.emit("Atan", [ctx.emit("Div", ins)]), shift], outs)


@register_exporter("mod")
def _mod(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Integers: Mod (fmod=0 takes the divisor's sign). Floats, where ONNX Mod needs fmod=1 (C's
    fmod, the dividend's sign): fmod, plus b where it is non-zero with the sign opposite to b's,
    which is numpy's mod exactly (infinities and NaN included); the importer reads it back as mod."""
    if not is_float(node.types[0].dtype):
        ctx.emit("Mod", ins, outs)
        return
    rem = ctx.emit("Mod", ins, fmod=1)
    b = ins[1]
    opposite = ctx.emit("Less", [ctx.emit("Mul", [rem, b]), _scalar(ctx, node, 0.0)])
    ctx.emit("Where", [opposite, ctx.emit("Add", [rem, b]), rem], outs)


@register_exporter("floordiv")
def _floordiv(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Floats: Floor(a / b). Integers, where Div truncates toward 0: (a - mod(a, b)) / b, an exact
    division (the importer reads this pattern back as floordiv)."""
    if is_float(node.types[0].dtype):
        ctx.emit("Floor", [ctx.emit("Div", ins)], outs)
        return
    a, b = ins
    ctx.emit("Div", [ctx.emit("Sub", [a, ctx.emit("Mod", ins)]), b], outs)


def _moment(root: bool) -> ExportRule:
    """var (and std, its square root): squared deviations from the mean summed over the axes,
    divided by n - correction (a run-time dim expression when the axes are symbolic)."""

    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        axes, x = ctx.ints(node.attrs["axes"], "axes"), ins[0]
        dtype = node.types[0].dtype
        deviation = ctx.emit("Sub", [x, ctx.emit("ReduceMean", [x, axes], keepdims=1)])
        squares = ctx.emit(
            "ReduceSum", [ctx.emit("Mul", [deviation, deviation]), axes], keepdims=int(node.attrs["keepdims"])
        )
        count = element_count(ctx, node, x, node.attrs["axes"], dtype, ctx.fresh("count"))
        if node.attrs["correction"]:
            count = ctx.emit("Sub", [count, _scalar(ctx, node, node.attrs["correction"])])
        if root:
            ctx.emit("Sqrt", [ctx.emit("Div", [squares, count])], outs)
        else:
            ctx.emit("Div", [squares, count], outs)

    return rule


register_exporter("var")(_moment(root=False))
register_exporter("std")(_moment(root=True))


@register_exporter("cumsum")
def _cumsum(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    ctx.emit(
        "CumSum",
        [ins[0], ctx.const(a["axis"], "axis", np.int64)],
        outs,
        exclusive=int(a["exclusive"]),
        reverse=int(a["reverse"]),
    )


@register_exporter("cumprod")
def _cumprod(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Opset 18 has no CumProd: y[i] = prod over j of (x[j] if j <= i else 1), a Where against a
    constant lower-triangular mask on a new axis, then ReduceProd over the old one. Needs the
    length of the axis to be static."""
    axis, x = node.attrs["axis"], ins[0]
    shape = node.graph.type_of(node.inputs[0]).shape
    n = shape[axis]
    if not isinstance(n, int):
        raise ONNXError(f"cumprod node {node.label}: exporting needs a static length along axis {axis}, got {n}")
    trailing = (1,) * (len(shape) - axis - 1)
    mask = ctx.const((np.arange(n)[None, :] <= np.arange(n)[:, None]).reshape((n, n, *trailing)), "lower")
    spread = ctx.emit("Unsqueeze", [x, ctx.ints([axis], "axes")])
    picked = ctx.emit("Where", [mask, spread, _scalar(ctx, node, 1)])
    ctx.emit("ReduceProd", [picked, ctx.ints([axis + 1], "axes")], outs, keepdims=0)
