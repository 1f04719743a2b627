"""Import rules mapping ONNX TopK, GatherElements and ScatterElements onto gradkiln's selection
ops (one node each, so that they differentiate, lower and export as themselves; the indices may
be run-time values). ScatterElements with reduction "none" is read as a scatter-add of the
updates where a scatter-add of ones marks a hit (ONNX leaves repeated indices undefined there);
"mul", "max" and "min" have no gradkiln op. A Slice with negative steps flips those axes, then
slices with positive steps (the previous Slice rule).
"""

from __future__ import annotations

import numpy as np

from ..graph import ONNXError
from ..graph import builder as gb
from ..graph.types import Dim, normalize_axis
from .import_rules import IMPORTERS
from .importer import ImportContext, Known, OnnxNode, Operand, register_importer

_SLICE = IMPORTERS["Slice"]


@register_importer("TopK")
def _topk(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """k from the attribute (opset < 10) or the known second input; always sorted."""
    x = ctx.tensor(args[0])
    k = n.attrs["k"] if n.opset < 10 else int(np.asarray(ctx.known(args[1], "K")).reshape(-1)[0])
    return list(gb.topk(x, k, n.attrs.get("axis", -1), bool(n.attrs.get("largest", 1))))


@register_importer("GatherElements")
def _gather_elements(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    return gb.gather_elements(x, ctx.tensor(args[1]), normalize_axis(n.attrs.get("axis", 0), x.ndim))


@register_importer("ScatterElements")
@register_importer("Scatter")
def _scatter_elements(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, indices, updates = (ctx.tensor(a) for a in args[:3])
    axis = normalize_axis(n.attrs.get("axis", 0), x.ndim)
    reduction = n.attrs.get("reduction", "none")
    if reduction == "add":
        return gb.scatter_elements_add(x, indices, updates, axis)
    if reduction != "none":
        raise ONNXError(f"ScatterElements {n.name!r}: reduction {reduction!r} is not supported (only 'none', 'add')")
    zeros = gb.broadcast_to(gb.constant(np.zeros((), x.dtype), graph=x.graph), x.shape)
    ones = gb.broadcast_to(gb.constant(np.ones((), x.dtype), graph=x.graph), updates.shape)
    hit = gb.greater(gb.scatter_elements_add(zeros, indices, ones, axis), 0)
    return gb.where(hit, gb.scatter_elements_add(zeros, indices, updates, axis), x)


@register_importer("Slice", override=True)  # wraps the earlier rule, _SLICE
def _slice(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Axes with a negative step are flipped, their bounds mirrored; the rest is an ordinary Slice."""
    if n.opset < 10 or len(args) < 5 or args[4] is None:
        return _SLICE(ctx, n, args)
    steps = ctx.dims(args[4], "steps")
    if any(isinstance(step, int) and step == 0 for step in steps):
        raise ONNXError(f"a step is 0 (steps {steps}); ONNX requires non-zero steps")
    if min(steps) > 0:
        return _SLICE(ctx, n, args)
    x = ctx.tensor(args[0])
    starts, ends = (ctx.dims(args[i], what) for i, what in ((1, "starts"), (2, "ends")))
    axes = [normalize_axis(int(a), x.ndim) for a in ctx.optional(args, 3, "axes", range(len(starts)), dims=True)]
    flipped, kept = [], []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step > 0:
            kept.append((axis, start, end, step))
            continue
        flipped.append(axis)
        bounds = _mirrored(x.shape[axis], start, end, step, n)
        kept += [(axis, *bounds, -step)] if bounds is not None else []
    out = gb.flip(x, sorted(flipped))
    if not kept:
        return out
    columns = [np.asarray(column, dtype=object if _symbolic(column) else np.int64) for column in zip(*kept)]
    return _SLICE(ctx, n, [out, *(Known(c, "int64") for c in (columns[1], columns[2], columns[0], columns[3]))])


def _mirrored(dim: Dim, start: Dim, end: Dim, step: int, n: OnnxNode) -> tuple[int, int] | None:
    """The bounds of x[start:end:step] (step < 0) in the flipped axis; None when it takes the whole axis."""
    if not isinstance(dim, int):
        if step == -1 and start == -1 and isinstance(end, int) and end <= -(2**31):
            return None
        raise ONNXError(f"Slice {n.name!r}: a negative step over the symbolic dim {dim} must reverse the whole axis")
    picked = range(*slice(start, end, step).indices(dim))
    if picked == range(dim - 1, -1, -1):
        return None
    first = dim - 1 - picked[0] if picked else 0
    return first, first + (len(picked) - 1) * -step + 1 if picked else first


def _symbolic(values: tuple) -> bool:
    return any(not isinstance(v, (int, np.integer)) for v in values)
