"""ONNX import rules, one per ONNX op type: `rule(ctx, node, args) -> operand(s)`.

Args are graph tensors or `Known` import-time values; shape arithmetic over known values is
evaluated at import time (the rules of `shape_rules.py`), everything else adds gradkiln nodes
through the builder. `IMPORTERS` holds the rules of both modules.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..graph import ONNXError, Tensor, get_op
from ..graph import builder as gb
from ..graph.dtypes import is_float, is_int
from ..graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS
from ..graph.types import broadcast_shapes, normalize_axis, shape_size
from . import (  # noqa: F401  (each module registers its family of rules into IMPORTERS)
    import_activations,
    import_control,
    import_conv,
    import_indexing,
    import_nn,
    import_recurrent,
    import_select,
    import_sequences,
)
from .dtypes import NARROW, from_onnx
from .importer import (
    IMPORTERS,
    MAX_RANK,
    ImportContext,
    ImportRule,
    Known,
    OnnxNode,
    Operand,
    RunTimeValueError,
    register_importer,
)
from .shape_rules import (
    KNOWN_ELEMENTWISE,
    KNOWN_NUMERIC,
    all_known_numbers,
    eval_elementwise,
    foldable,
    folded,
    reduction,
    tidy,
)

__all__ = ["ELEMENTWISE", "IMPORTERS", "REDUCTIONS", "register_importer"]

# ONNX op -> gradkiln op with the same semantics (variadic ONNX ops are folded pairwise): the
# elementwise table's rows read backwards (the inverse of their export), Sum, the comparisons and where.
ELEMENTWISE = {
    **{row.onnx: row.name for row in (*UNARY_ROWS, *BINARY_ROWS) if row.onnx is not None},
    "Sum": "add",
    "Equal": "equal",
    "Less": "less",
    "LessOrEqual": "less_equal",
    "Greater": "greater",
    "GreaterOrEqual": "greater_equal",
    "Where": "where",
}
REDUCTIONS = {"ReduceSum": gb.sum, "ReduceMean": gb.mean}  # ReduceMax/Min: import_math.py


def elementwise_importer(op_type: str, op: str) -> ImportRule:
    """ONNX `op_type` as gradkiln `op`: folded at import time over known values where shape
    arithmetic needs it, else one node (variadic ops pairwise)."""

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        if op_type in KNOWN_ELEMENTWISE and foldable(args):
            return eval_elementwise(ctx, op_type, args)
        tensors = [ctx.tensor(a) for a in args]
        if op == "pow" and tensors[1].dtype != tensors[0].dtype:
            tensors[1] = gb.cast(tensors[1], tensors[0].dtype)
        if get_op(op).num_inputs != 2:
            return gb.emit(op, *tensors)
        result = tensors[0]
        for other in tensors[1:]:
            result = gb.emit(op, result, other)
        return result

    return rule


for _op_type, _op in ELEMENTWISE.items():
    register_importer(_op_type)(elementwise_importer(_op_type, _op))
for _op_type, _reduce in REDUCTIONS.items():
    register_importer(_op_type)(reduction(_reduce))


@register_importer("Mod")
def _mod(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Integer remainder of known values (shape arithmetic) only."""
    if foldable(args) and not n.attrs.get("fmod", 0):
        return eval_elementwise(ctx, "Mod", args)
    raise ONNXError("Mod of run-time tensors needs a remainder op, which gradkiln's op table lacks")


@register_importer("Not")
def _not(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Not(Equal(a, b)) is not_equal(a, b) (how `not_equal` exports); otherwise x == False."""
    x = ctx.tensor(args[0])
    if x.node.op == "equal":
        a, b = (Tensor(x.graph, v) for v in x.node.inputs)
        return gb.emit("not_equal", a, b)
    return gb.emit("equal", x, gb.constant(False, graph=x.graph))


@register_importer("Identity")
def _identity(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return args[0]


@register_importer("Cast")
def _cast(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    dtype = from_onnx(n.attrs["to"], n.label)
    if n.attrs["to"] in NARROW:
        return ctx.cast_narrow(args[0], n.attrs["to"], bool(n.attrs.get("saturate", 1)))
    if foldable(args):
        return eval_elementwise(ctx, "Cast", args, dtype)
    shape_data = _computed_shape_data(ctx, args[0], dtype)
    return shape_data if shape_data is not None else gb.cast(ctx.tensor(args[0]), dtype)


def _computed_shape_data(ctx: ImportContext, x: Operand, dtype: str) -> Known | None:
    """A few floats computed from constants only, cast to an integer type: shape data that float
    arithmetic made (MobileViT's `int(math.ceil(h / p) * p)` traces as Div, Ceil, Mul, Cast),
    evaluated now so that shape arithmetic goes on at import time; None for anything else."""
    small = isinstance(x, Tensor) and x.type.is_static and math.prod(x.shape) <= MAX_RANK
    if not (small and is_int(dtype) and is_float(x.dtype)):
        return None
    try:
        value = ctx.known(x, "cast value")
    except RunTimeValueError:  # computed from the graph inputs' data
        return None
    return eval_elementwise(ctx, "Cast", [Known(value, x.dtype)], dtype)


@register_importer("MatMul")
def _matmul(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return gb.matmul(ctx.tensor(args[0]), ctx.tensor(args[1]))


@register_importer("Gemm")
def _gemm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """alpha * A' @ B' + beta * C, with A' and B' optionally transposed."""
    a, b = ctx.tensor(args[0]), ctx.tensor(args[1])
    a = gb.transpose(a) if n.attrs.get("transA", 0) else a
    b = gb.transpose(b) if n.attrs.get("transB", 0) else b
    y = _scaled(gb.matmul(a, b), n.attrs.get("alpha", 1.0))
    if len(args) > 2 and args[2] is not None:
        y = gb.add(y, _scaled(ctx.tensor(args[2]), n.attrs.get("beta", 1.0)))
    return y


def _scaled(x: Tensor, factor: float) -> Tensor:
    return x if factor == 1.0 else gb.mul(x, factor)


def _flat2d(x: Tensor, axis: int) -> tuple[Any, Any]:
    axis = axis + x.ndim if axis < 0 else axis
    return shape_size(x.shape[:axis]), shape_size(x.shape[axis:])


@register_importer("Flatten")
def _flatten(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    return gb.reshape(x, _flat2d(x, n.attrs.get("axis", 1)))


def _softmax_like(fn: Callable[..., Tensor]) -> ImportRule:
    """Opset 13 normalizes along `axis`; older opsets over the flattened axes from `axis` on."""

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        x = ctx.tensor(args[0])
        if n.opset >= 13:
            return fn(x, n.attrs.get("axis", -1))
        axis = normalize_axis(n.attrs.get("axis", 1), x.ndim)
        if axis == x.ndim - 1:
            return fn(x, axis)
        return gb.reshape(fn(gb.reshape(x, _flat2d(x, axis)), 1), x.shape)

    return rule


register_importer("Softmax")(_softmax_like(gb.softmax))
register_importer("LogSoftmax")(_softmax_like(gb.log_softmax))


@register_importer("Transpose")
def _transpose(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return gb.transpose(ctx.tensor(args[0]), n.attrs.get("perm"))


@register_importer("Expand")
def _expand(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Bidirectional broadcast: the result has the broadcast of x's shape and the given one."""
    x = ctx.tensor(args[0])
    return gb.broadcast_to(x, broadcast_shapes(x.shape, ctx.shape(args[1])))


@register_importer("Concat")
def _concat(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    if foldable(args):
        ctx.budget.value((sum(a.array.size for a in args),), f"the concatenation of {len(args)} known values")
        try:
            return tidy(np.concatenate([a.array for a in args], n.attrs["axis"]), args[0].dtype)
        except ValueError as err:  # ranks or dims that differ, an axis out of range (AxisError)
            shapes = [a.array.shape for a in args]
            raise ONNXError(
                f"cannot concatenate known values of shapes {shapes} on axis {n.attrs['axis']}: {err}"
            ) from None
    return gb.concat([ctx.tensor(a) for a in args], n.attrs["axis"])


for _op_type in KNOWN_NUMERIC:
    register_importer(_op_type, when=all_known_numbers)(folded(_op_type))
