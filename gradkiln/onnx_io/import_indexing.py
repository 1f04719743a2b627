"""Import rules for index computations over axes with static sizes: ArgMax/ArgMin, Hardmax,
OneHot, Compress, GatherElements, GatherND, CumProd and EyeLike, composed from comparisons with an index
ramp (`iota`), max reductions, slices and concatenations, all exact."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .dtypes import from_onnx
from .import_select import check_indices, gather, take_range
from .importer import ImportContext, ImportRule, OnnxNode, Operand, register_importer
from .shape_rules import static_dims


def iota(x: Tensor, axis: int, dtype: str = "int64") -> Tensor:
    """0, 1, ..., n-1 along `axis` of x, shaped to broadcast against x."""
    shape = [int(x.shape[axis]) if i == axis else 1 for i in range(x.ndim)]
    return gb.constant(np.arange(shape[axis], dtype=dtype).reshape(shape), graph=x.graph)


def arg_max(x: Tensor, axis: int, last: bool = False) -> Tensor:
    """The index of the first (or last) maximum along `axis`, keeping the axis (int64)."""
    ramp, n = iota(x, axis), int(x.shape[axis])
    hit = gb.equal(x, gb.max(x, axis, keepdims=True))
    if last:
        return gb.max(gb.where(hit, ramp, -1), axis, keepdims=True)
    return gb.neg(gb.max(gb.where(hit, gb.neg(ramp), -n), axis, keepdims=True))


def _arg_extreme(negate: bool):
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        x = ctx.tensor(args[0])
        axis = normalize_axis(n.attrs.get("axis", 0), x.ndim)
        index = arg_max(gb.neg(x) if negate else x, axis, bool(n.attrs.get("select_last_index", 0)))
        return index if n.attrs.get("keepdims", 1) else gb.squeeze(index, axis)

    return rule


register_importer("ArgMax")(_arg_extreme(negate=False))
register_importer("ArgMin")(_arg_extreme(negate=True))


@register_importer("Hardmax")
def _hardmax(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """1 at the first maximum along `axis`; before opset 13 over the axes from `axis` flattened."""
    x = ctx.tensor(args[0])
    axis = normalize_axis(n.attrs.get("axis", -1 if n.opset >= 13 else 1), x.ndim)
    flat = x if n.opset >= 13 else gb.reshape(x, (int(np.prod(x.shape[:axis])), -1))
    axis = axis if n.opset >= 13 else 1
    ctx.budget.value(flat.shape[axis : axis + 1], "Hardmax's index ramp")
    hot = gb.cast(gb.equal(iota(flat, axis), arg_max(flat, axis)), x.dtype)
    return gb.reshape(hot, x.shape)


@register_importer("OneHot")
def _one_hot(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """values[1] where the (wrapped) index equals the position along the new axis, else values[0]."""
    indices, values = ctx.tensor(args[0]), ctx.tensor(args[2])
    depth = int(np.asarray(ctx.known(args[1], "depth")).reshape(()))
    axis = normalize_axis(n.attrs.get("axis", -1), indices.ndim + 1)
    wrapped = gb.where(gb.less(indices, 0), gb.add(indices, depth), indices)
    column = gb.expand_dims(wrapped, axis)
    shape = [depth if i == axis else 1 for i in range(column.ndim)]
    ctx.budget.value(shape, f"the index ramp of depth {depth}")
    ramp = gb.constant(np.arange(depth).reshape(shape), indices.dtype, graph=indices.graph)
    return gb.where(gb.equal(column, ramp), gb.getitem(values, 1), gb.getitem(values, 0))


@register_importer("Compress")
def _compress(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    picked = np.nonzero(np.asarray(ctx.known(args[1], "condition")).reshape(-1))[0]
    if "axis" not in n.attrs:
        return gather(ctx, gb.reshape(x, (-1,)), picked, 0)
    return gather(ctx, x, picked, n.attrs["axis"])


def _cumulative(combine: Callable[[Tensor, Tensor], Tensor], empty: float) -> ImportRule:
    """A cumulative op (CumProd): running results combined one slice at a time, in numpy's order."""

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        x = ctx.tensor(args[0])
        axis = normalize_axis(int(np.asarray(ctx.known(args[1], "axis")).reshape(())), x.ndim)
        count = int(x.shape[axis])
        ctx.budget.unrolled(count, f"{n.op_type} over {count} slices")
        order = range(count - 1, -1, -1) if n.attrs.get("reverse", 0) else range(count)
        parts, total = {}, None
        for i in order:
            piece = take_range(x, axis, i, i + 1)
            if n.attrs.get("exclusive", 0):
                parts[i] = total if total is not None else gb.add(gb.mul(piece, 0), empty)
            total = piece if total is None else combine(total, piece)
            parts.setdefault(i, total)
        return gb.concat([parts[i] for i in range(count)], axis) if count else x

    return rule


register_importer("CumProd")(_cumulative(gb.mul, 1))


@register_importer("GatherND")
def _gather_nd(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Slices of x at known index tuples over its leading axes (after `batch_dims` batch axes)."""
    x, indices = ctx.tensor(args[0]), np.asarray(ctx.known(args[1], "indices")).astype(np.int64)
    batch, depth = n.attrs.get("batch_dims", 0), indices.shape[-1]
    shape = [int(d) for d in x.shape]
    inner = math.prod(shape[batch + depth :])
    flat = gb.reshape(x, (math.prod(shape[: batch + depth]), inner))
    if not 1 <= depth <= len(shape) - batch:
        raise ONNXError(f"indices of shape {indices.shape} address {depth} axes of x, which has {len(shape) - batch}")
    lead = indices.reshape(math.prod(shape[:batch]) if batch else 1, -1, depth)
    dims = shape[batch : batch + depth]
    check_indices(lead, dims, f"axes {batch}..{batch + depth - 1}")
    within = np.ravel_multi_index(tuple(np.moveaxis(lead % dims, -1, 0)), dims)
    rows = within + np.arange(len(lead))[:, None] * math.prod(dims)  # the batch's block of rows
    picked = gather(ctx, flat, rows.reshape(-1).astype(np.int64), 0)
    return gb.reshape(picked, (*indices.shape[:-1], *shape[batch + depth :]))


@register_importer("EyeLike")
def _eye_like(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    dtype = from_onnx(n.attrs["dtype"], n.label) if "dtype" in n.attrs else x.dtype
    rows, cols = static_dims(x, 2, "EyeLike")
    ctx.budget.value((rows, cols), "the identity matrix")
    return gb.constant(np.eye(rows, cols, n.attrs.get("k", 0)), dtype, graph=x.graph)
