"""Import rules that select or pad elements along axes with static sizes: Pad in every mode
and with negative pads, Gather of a run-time tensor at known indices; each is composed from
slices and concatenations, which are exact."""

from __future__ import annotations

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
