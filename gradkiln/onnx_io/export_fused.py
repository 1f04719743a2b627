"""ONNX export of the fused elementwise op: its expressions written out as the standard ops they
were fused from (Add, Mul, Tanh, ...), a subexpression shared by several outputs written once; an
output that reads only some inputs is expanded to the node's full broadcast shape (an Identity
names the others)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..graph import Node
from ..graph.ops.fused import fold, symbols
from ..graph.types import broadcast_shapes, dims_equal
from .export_rules import register_exporter
from .exporter import ExportContext

# fold's operations that are one ONNX op of the same name
ONE_TO_ONE: dict[str, str] = {
    "add": "Add",
    "mul": "Mul",
    "div": "Div",
    "pow": "Pow",
    "sqrt": "Sqrt",
    "reciprocal": "Reciprocal",
    **{
        op: op.capitalize()
        for op in ("exp", "log", "tanh", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh")
    },
    **{"erf": "Erf", "sigmoid": "Sigmoid", "relu": "Relu", "abs": "Abs", "sign": "Sign", "softplus": "Softplus"},
}


def _writer(ctx: ExportContext, dtype: str) -> Callable[[str, list[str]], str]:
    """fold's `apply` for ONNX: appends the nodes of one operation, returns the output name."""

    def one() -> str:
        return ctx.const(np.ones((), dtype), "one")

    composed: dict[str, Callable[[str], str]] = {
        "rsqrt": lambda a: ctx.emit("Reciprocal", [ctx.emit("Sqrt", [a])]),
        "square": lambda a: ctx.emit("Mul", [a, a]),
        "log1p": lambda a: ctx.emit("Log", [ctx.emit("Add", [a, one()])]),
        "expm1": lambda a: ctx.emit("Sub", [ctx.emit("Exp", [a]), one()]),
    }

    def apply(op: str, args: list[str]) -> str:
        return composed[op](*args) if op in composed else ctx.emit(ONE_TO_ONE[op], args)

    return apply


@register_exporter("fused")
def _fused(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    dtype = node.types[0].dtype
    by_symbol = dict(zip(symbols(len(ins)), ins))
    names = fold(
        node.attrs["exprs"], by_symbol.__getitem__, lambda v: ctx.const(np.asarray(v, dtype), "k"), _writer(ctx, dtype)
    )
    full = node.types[0].shape
    inputs = dict(zip(symbols(len(ins)), (node.graph.type_of(v).shape for v in node.inputs)))
    for expr, name, out in zip(node.attrs["exprs"], names, outs):
        shapes = [inputs[s] for s in sorted(expr.free_symbols, key=str)]
        if (
            shapes
            and len(broadcast_shapes(*shapes)) == len(full)
            and all(map(dims_equal, broadcast_shapes(*shapes), full))
        ):
            ctx.emit("Identity", [name], [out])
        else:
            ctx.emit("Expand", [name, ctx.dims(full)], [out])
