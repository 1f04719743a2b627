"""Import rules that select or pad elements along axes with static sizes: Pad in every mode
and with negative pads, Gather of a run-time tensor at known indices; each is composed from
slices and concatenations, which are exact."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .importer import ImportContext, Known, OnnxNode, Operand, register_importer


def take_range(x: Tensor, axis: int, start: int, stop: int) -> Tensor:
    """x[..., start:stop, ...] along `axis`."""
    starts = [start if i == axis else 0 for i in range(x.ndim)]
    stops = [stop if i == axis else d for i, d in enumerate(x.shape)]
    return gb.slice(x, starts, stops)


def check_indices(indices: np.ndarray, dims: int | Sequence[int], where: str) -> None:
    """An `ONNXError` unless every index (along the last axis of `indices`, one per entry of
    `dims`) lies in [-dim, dim): ONNX leaves others undefined, and wrapping them would be a guess."""
    limits = np.asarray(dims, np.int64)
    indices = np.asarray(indices, np.int64)
    if indices.size and (np.any(indices < -limits) or np.any(indices >= limits)):
        raise ONNXError(f"indices {indices.min()}..{indices.max()} are out of range for {where} of size {dims}")


def gather(ctx: ImportContext, x: Tensor, indices: np.ndarray, axis: int) -> Tensor:
    """numpy.take(x, indices, axis) for known indices (negative ones count from the end): one
    slice per index, each charged as an unrolled step."""
    axis, dim = normalize_axis(axis, x.ndim), int(x.shape[axis])
    check_indices(indices, dim, f"axis {axis}")
    ctx.budget.unrolled(np.size(indices), f"gathering {np.size(indices)} slices one at a time")
    flat = [int(i) % dim for i in np.asarray(indices).reshape(-1)]
    picked = gb.concat([take_range(x, axis, i, i + 1) for i in flat], axis) if flat else take_range(x, axis, 0, 0)
    return gb.reshape(picked, (*x.shape[:axis], *np.shape(indices), *x.shape[axis + 1 :]))


def _edge(x: Tensor, axis: int, lo: int, hi: int) -> tuple[list[Tensor], list[Tensor]]:
    d = int(x.shape[axis])
    return [take_range(x, axis, 0, 1)] * lo, [take_range(x, axis, d - 1, d)] * hi


def _reflect(x: Tensor, axis: int, lo: int, hi: int) -> tuple[list[Tensor], list[Tensor]]:
    d = int(x.shape[axis])
    left = [take_range(x, axis, i, i + 1) for i in range(lo, 0, -1)]
    return left, [take_range(x, axis, d - 1 - i, d - i) for i in range(1, hi + 1)]


def _wrap(x: Tensor, axis: int, lo: int, hi: int) -> tuple[list[Tensor], list[Tensor]]:
    d = int(x.shape[axis])
    return [take_range(x, axis, d - lo, d)] * bool(lo), [take_range(x, axis, 0, hi)] * bool(hi)


BORDERS = {"edge": _edge, "reflect": _reflect, "wrap": _wrap}


def _pad_value(x: Tensor, low: Sequence[int], high: Sequence[int], value: Tensor) -> Tensor:
    """Constant padding: zero padding, then `value` where the padding went (a padded mask)."""
    padded = gb.pad(x, low, high)
    inside = gb.pad(gb.broadcast_to(gb.constant(True, graph=x.graph), x.shape), low, high)
    return gb.where(inside, padded, gb.cast(value, x.dtype))


@register_importer("Pad")
def _pad(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Attributes before opset 11, inputs from then on; negative pads crop first."""
    x = ctx.tensor(args[0])
    mode = n.attrs.get("mode", "constant")
    pads = n.attrs.get("pads", n.attrs.get("paddings")) if n.opset < 11 else ctx.dims(args[1], "pads")
    if n.opset < 11:
        value: Operand = Known(np.asarray(n.attrs.get("value", 0.0)), x.dtype)
    else:
        value = args[2] if len(args) > 2 else None
    axes = [normalize_axis(a, x.ndim) for a in ctx.optional(args, 3, "axes", range(x.ndim), dims=True)]
    low, high = [0] * x.ndim, [0] * x.ndim
    for i, axis in enumerate(axes):
        low[axis], high[axis] = int(pads[i]), int(pads[i + len(axes)])
    if any(p < 0 for p in low + high):
        starts = [max(0, -lo) for lo in low]
        x = gb.slice(x, starts, [d - max(0, -hi) for d, hi in zip(x.shape, high)])
        low, high = [max(0, p) for p in low], [max(0, p) for p in high]
    if mode == "constant":
        if value is None or (isinstance(value, Known) and not np.any(value.array)):
            return gb.pad(x, low, high)
        return _pad_value(x, low, high, ctx.tensor(value))
    if mode not in BORDERS:
        raise ONNXError(f"unknown Pad mode {mode!r}")
    if mode != "wrap":  # edge and reflect take one slice per padded position
        ctx.budget.unrolled(sum(low) + sum(high), f"{mode} padding of {sum(low) + sum(high)} slices")
    for axis, (lo, hi) in enumerate(zip(low, high)):
        if lo or hi:
            left, right = BORDERS[mode](x, axis, lo, hi)
            x = gb.concat([*left, x, *right], axis)
    return x


# -- the selection ops: one gradkiln node each (indices may be run-time values) ---------------------
# ScatterElements with reduction "none" is a scatter-add of the updates where a scatter-add of ones
# marks a hit (ONNX leaves repeated indices undefined there); "mul", "max" and "min" have no
# gradkiln op.


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


@register_importer("ScatterND")
def _scatter_nd(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """data[indices[...]] += updates, as scatter_add over the k leading axes of the data
    flattened to one (k the indices' last dim); an index column made by Unsqueeze is read
    through, so that scatter_add's export comes back as itself."""
    if n.attrs.get("reduction", "none") != "add":
        raise ONNXError("ScatterND is supported with reduction='add' only")
    x, indices, updates = (ctx.tensor(a) for a in args[:3])
    depth = int(indices.shape[-1])
    if depth == 1:
        column = indices.node
        if column.op == "expand_dims" and column.attrs["axes"] == (indices.ndim - 1,):
            return gb.scatter_add(x, Tensor(x.graph, column.inputs[0]), updates, 0)
        return gb.scatter_add(x, gb.squeeze(indices, -1), updates, 0)
    lead = [int(d) for d in x.shape[:depth]]
    strides = np.array([math.prod(lead[i + 1 :]) for i in range(depth)], indices.dtype)
    wrapped = gb.where(indices < 0, indices + np.array(lead, indices.dtype), indices)
    flat_index = gb.sum(wrapped * strides, -1)
    flat = gb.reshape(x, (math.prod(lead), *x.shape[depth:]))
    return gb.reshape(gb.scatter_add(flat, flat_index, updates, 0), x.shape)
