"""The fused matmul op: a matmul with an elementwise epilogue (bias, activation, residual add).

`fused_matmul(a, b, e1, e2, ...; exprs=(f, g, ...))` is `fused(matmul(a, b), e1, e2, ...;
exprs=(f, g, ...))` as one node: in the expressions, x0 is the matmul's result (the accumulator)
and x1, x2, ... are the extra operands, which broadcast against it without widening it (the
epilogue keeps the matmul's shape); each expression is one output (a training graph's
`x @ w + b` and `relu(x @ w + b)`, say). The fusion pass makes it from a matmul whose result only
one elementwise node (or fused cluster) reads, so `relu(x @ w + b)` is one node and a backend
writes the product once, with the epilogue applied in the output loop. The flags `transpose_a`
and `transpose_b` read an operand with its last two axes swapped (x0 is then `a.mT @ b` and so
on), so the transposes of a backward pass (`g @ w.T`, `x.T @ g`) fold into the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ShapeError
from ..opdef import OPS, OpDef, register_op
from ..types import TensorType, same_type
from .fused import Expressions


def swapped_type(t: TensorType, transposed: bool) -> TensorType:
    """`t` with its last two axes swapped when `transposed` (the operand as the matmul reads it)."""
    if not transposed:
        return t
    if t.rank < 2:
        raise ShapeError(f"a transposed matmul operand needs rank >= 2, got {t}")
    return t.with_shape((*t.shape[:-2], t.shape[-1], t.shape[-2]))


def accumulator_type(a: TensorType, b: TensorType, transpose_a: bool = False, transpose_b: bool = False) -> TensorType:
    """The type of the matmul part (x0 of the epilogue)."""
    return OPS["matmul"].infer(swapped_type(a, transpose_a), swapped_type(b, transpose_b))[0]


def _infer(
    a: TensorType,
    b: TensorType,
    *extras: TensorType,
    exprs: Expressions,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> tuple[TensorType, ...]:
    acc = accumulator_type(a, b, transpose_a, transpose_b)
    outs = OPS["fused"].infer(acc, *extras, exprs=exprs)
    if not same_type(outs[0], acc):
        raise ShapeError(
            f"the epilogue's operands {[str(t) for t in extras]} widen the matmul result {acc} to {outs[0]}; "
            "an epilogue must keep the matmul's shape (broadcast the operand first, or leave it unfused)"
        )
    return outs


def _compute(
    a: Any, b: Any, *extras: Any, exprs: Expressions, transpose_a: bool = False, transpose_b: bool = False
) -> tuple[Any, ...]:
    product = OPS["matmul"].compute(
        np.swapaxes(a, -1, -2) if transpose_a else a, np.swapaxes(b, -1, -2) if transpose_b else b
    )
    return OPS["fused"].compute(product, *extras, exprs=exprs)


register_op(
    OpDef(
        "fused_matmul",
        _infer,
        _compute,
        None,
        doc="attrs: exprs, the Expressions (sympy, over x0 = a @ b and x1.., the extra inputs) of the outputs; "
        "transpose_a, transpose_b (read that operand with its last two axes swapped); "
        "see gradkiln.graph.ops.fused_matmul.",
    )
)
