"""The fused reduction op: a reduction over one fused elementwise expression, as one node.

`fused_reduce(x0, x1, ...; exprs=(e,), reduce, axes, keepdims)` is `reduce(fused(x0, ...;
exprs=(e,)), axes, keepdims)` without the elementwise result as a value of its own: the
fusion pass makes it from a sum, mean or max whose input only it reads, so a backend can
compute the expression inside the reduction's loop (`sum(x * x)` reads x once and writes one
number). The map part is the `fused` op's (its type inference and numpy semantics are reused);
the reduction part is the reduction op's.
"""

from __future__ import annotations

from typing import Any

from ..errors import GraphError
from ..opdef import OPS, OpDef, register_op
from ..types import TensorType
from .fused import Expressions

REDUCTIONS = ("sum", "mean", "max")  # the reductions the op can end with


def map_type(inputs: tuple[TensorType, ...], exprs: Expressions) -> TensorType:
    """The type of the elementwise part: the inputs broadcast together."""
    if len(exprs) != 1:
        raise GraphError(f"a fused_reduce node has one expression to reduce, got {len(exprs)}: {exprs}")
    return OPS["fused"].infer(*inputs, exprs=exprs)[0]


def _infer(
    *inputs: TensorType, exprs: Expressions, reduce: str, axes: tuple[int, ...], keepdims: bool
) -> tuple[TensorType]:
    if reduce not in REDUCTIONS:
        raise GraphError(f"fused_reduce: reduce={reduce!r} is not one of {REDUCTIONS}")
    return OPS[reduce].infer(map_type(inputs, exprs), axes=axes, keepdims=keepdims)


def _compute(*arrays: Any, exprs: Expressions, reduce: str, axes: tuple[int, ...], keepdims: bool) -> Any:
    (mapped,) = OPS["fused"].compute(*arrays, exprs=exprs)
    return OPS[reduce].compute(mapped, axes=axes, keepdims=keepdims)


register_op(
    OpDef(
        "fused_reduce",
        _infer,
        _compute,
        None,
        doc="attrs: exprs (one sympy expression over x0..), reduce (sum, mean or max), axes, keepdims; "
        "see gradkiln.graph.ops.fused_reduce.",
    )
)
