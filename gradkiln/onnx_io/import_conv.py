"""Import rules for convolution and pooling over static spatial dims, by gathering windows.

Every kernel offset contributes one strided slice of the padded input; stacking them gives
(N, C, K, *out) windows. Conv multiplies them with the kernel as one batched matmul per group
(im2col); MaxPool and AveragePool reduce over K, with cells outside the (explicitly padded)
input excluded, as ONNX defines.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from .import_select import gather
from .importer import ImportContext, OnnxNode, Operand, register_importer


def _geometry(x: Tensor, n: OnnxNode, kernel: Sequence[int]) -> tuple[list, list, list, list, list]:
    """Strides, dilations, low and high pads (extended so the last window fits) and output dims."""
    rank = len(kernel)
    dims = [int(d) for d in x.shape[2:]]
    strides = list(n.attrs.get("strides", [1] * rank))
    dilations = list(n.attrs.get("dilations", [1] * rank))
    spans = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    auto_pad = n.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        outs = [math.ceil(d / s) for d, s in zip(dims, strides)]
        totals = [max(0, (o - 1) * s + w - d) for o, s, w, d in zip(outs, strides, spans, dims)]
        small = [t // 2 for t in totals]
        big = [t - t // 2 for t in totals]
        low, high = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    else:
        pads = list(n.attrs.get("pads", [0] * 2 * rank)) if auto_pad != "VALID" else [0] * 2 * rank
        low, high = pads[:rank], pads[rank:]
        outs = []
        for d, lo, hi, w, s in zip(dims, low, high, spans, strides):
            size = (d + lo + hi - w) / s + 1
            out = math.ceil(size) if n.attrs.get("ceil_mode", 0) else math.floor(size)
            outs.append(out - 1 if n.attrs.get("ceil_mode", 0) and (out - 1) * s >= d + lo else out)
    return strides, dilations, low, high, outs


def _windows(x: Tensor, kernel: Sequence[int], strides, dilations, outs) -> Tensor:
    """(N, C, K, *outs): the input under each kernel offset, offsets in row-major order."""
    slices = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        starts = [0, 0] + [o * d for o, d in zip(offset, dilations)]
        stops = list(x.shape[:2]) + [a + (o - 1) * s + 1 for a, o, s in zip(starts[2:], outs, strides)]
        slices.append(gb.expand_dims(gb.slice(x, starts, stops, [1, 1, *strides]), 2))
    return gb.concat(slices, 2) if len(slices) > 1 else slices[0]


def _pooled(x: Tensor, reduce: Callable[[Tensor, int], Tensor], kernel, strides, dilations, outs) -> Tensor:
    """`reduce` (gb.max or gb.sum) over each window, one spatial axis at a time: a window's max or
    sum is that over its rows of the rows' own, so the windows take k1 + k2 + ... slices, not
    k1 * k2 * ... (a 60 x 80 MaxPool made 4800 slices and a 4800-way concat: 5 minutes of llvm compile)."""
    for axis in range(len(kernel)):
        dims = [int(d) for d in x.shape[2:]]

        def along(values: Sequence[int], rest: Sequence[int], axis: int = axis) -> list[int]:
            return [v if i == axis else r for i, (v, r) in enumerate(zip(values, rest))]

        ones = [1] * len(kernel)
        windows = _windows(x, along(kernel, ones), along(strides, ones), along(dilations, ones), along(outs, dims))
        x = reduce(windows, 2)
    return x


def _padded(x: Tensor, low, high, outs, strides, dilations, kernel, value: float) -> Tensor:
    """x padded by (low, high) and on the high side as far as the last window reaches, with `value`."""
    reach = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(outs, strides, dilations, kernel)]
    extra = [max(0, r - int(dim) - lo - hi) for r, dim, lo, hi in zip(reach, x.shape[2:], low, high)]
    lows, highs = [0, 0, *low], [0, 0, *(h + e for h, e in zip(high, extra))]
    padded = gb.pad(x, lows, highs)
    if value == 0 or not any(lows + highs):
        return padded
    inside = gb.pad(gb.broadcast_to(gb.constant(True, graph=x.graph), x.shape), lows, highs)
    return gb.where(inside, padded, gb.constant(value, x.dtype, graph=x.graph))


def convolve(x: Tensor, w: Tensor, groups: int, geometry: tuple[list, list, list, list, list]) -> Tensor:
    """x (N, C, ...) convolved with w (M, C / groups, ...): one batched matmul over the windows."""
    strides, dilations, low, high, outs = geometry
    kernel = [int(k) for k in w.shape[2:]]
    cols = _windows(_padded(x, low, high, outs, strides, dilations, kernel, 0.0), kernel, strides, dilations, outs)
    batch, out_channels = x.shape[0], int(w.shape[0])
    depth = int(x.shape[1]) // groups * math.prod(kernel)
    cols = gb.reshape(cols, (batch, groups, depth, math.prod(outs)))
    weights = gb.reshape(w, (groups, out_channels // groups, depth))
    return gb.reshape(gb.matmul(weights, cols), (batch, out_channels, *outs))


def _biased(y: Tensor, ctx: ImportContext, args: list[Operand]) -> Tensor:
    if len(args) < 3 or args[2] is None:
        return y
    return gb.add(y, gb.reshape(ctx.tensor(args[2]), (int(y.shape[1]),) + (1,) * (y.ndim - 2)))


@register_importer("Conv")
def _conv(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, w = ctx.tensor(args[0]), ctx.tensor(args[1])
    geometry = _geometry(x, n, [int(k) for k in w.shape[2:]])
    return _biased(convolve(x, w, n.attrs.get("group", 1), geometry), ctx, args)


@register_importer("ConvTranspose")
def _conv_transpose(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """The convolution of x spread by the strides (interior zeros) and fully padded, with the
    kernel flipped and its channel axes swapped; then cut by the pads (or to `output_shape`)."""
    x, w = ctx.tensor(args[0]), ctx.tensor(args[1])
    groups, kernel = n.attrs.get("group", 1), [int(k) for k in w.shape[2:]]
    rank, dims = len(kernel), [int(d) for d in x.shape[2:]]
    strides = list(n.attrs.get("strides", [1] * rank))
    dilations = list(n.attrs.get("dilations", [1] * rank))
    extra = list(n.attrs.get("output_padding", [0] * rank))
    spans = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    full = [s * (d - 1) + e + w_ for s, d, e, w_ in zip(strides, dims, extra, spans)]
    auto_pad = n.attrs.get("auto_pad", "NOTSET")
    wanted = n.attrs.get("output_shape")
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [d * s for d, s in zip(dims, strides)]
    if wanted is not None:
        totals = [f - o for f, o in zip(full, wanted[-rank:])]
        halves = [t // 2 for t in totals]
        low = halves if auto_pad == "SAME_UPPER" else [t - h for t, h in zip(totals, halves)]
        high = [t - lo for t, lo in zip(totals, low)]
    else:
        pads = list(n.attrs.get("pads", [0] * 2 * rank))
        low, high = pads[:rank], pads[rank:]
    spread = gb.pad(x, [0] * x.ndim, [0] * x.ndim, [0, 0, *(s - 1 for s in strides)])
    in_channels, per_group = int(w.shape[0]), int(w.shape[1])
    w = gb.reshape(w, (groups, in_channels // groups, per_group, *kernel))
    w = gb.reshape(
        gb.transpose(w, (0, 2, 1, *range(3, 3 + rank))), (groups * per_group, in_channels // groups, *kernel)
    )
    for axis, k in enumerate(kernel, start=2):
        w = gather(ctx, w, np.arange(k - 1, -1, -1), axis)
    geometry = ([1] * rank, dilations, [s - 1 for s in spans], [s - 1 + e for s, e in zip(spans, extra)], full)
    y = convolve(spread, w, groups, geometry)
    if any(p < 0 for p in low + high):  # an output_shape beyond the full output: zeros
        y = gb.pad(y, [0, 0, *(max(0, -p) for p in low)], [0, 0, *(max(0, -p) for p in high)])
        full = [f + max(0, -lo) + max(0, -hi) for f, lo, hi in zip(full, low, high)]
        low, high = [max(0, p) for p in low], [max(0, p) for p in high]
    y = gb.slice(y, [0, 0, *low], [*y.shape[:2], *(f - hi for f, hi in zip(full, high))])
    return _biased(y, ctx, args)


def _pool_geometry(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> tuple[Tensor, list, tuple]:
    if n.num_outputs > 1:
        raise ONNXError("the Indices output of MaxPool is not supported")
    x, kernel = ctx.tensor(args[0]), list(n.attrs["kernel_shape"])
    return x, kernel, _geometry(x, n, kernel)


@register_importer("MaxPool")
def _max_pool(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, kernel, (strides, dilations, low, high, outs) = _pool_geometry(ctx, n, args)
    padded = _padded(x, low, high, outs, strides, dilations, kernel, -math.inf)
    return _pooled(padded, gb.max, kernel, strides, dilations, outs)


@register_importer("AveragePool")
def _average_pool(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Window sums over counts of the cells inside the input (or the padded input, with
    `count_include_pad`); the counts are computed at import time."""
    x, kernel, (strides, dilations, low, high, outs) = _pool_geometry(ctx, n, args)
    padded = _padded(x, low, high, outs, strides, dilations, kernel, 0.0)
    total = _pooled(padded, gb.sum, kernel, strides, dilations, outs)
    spatial = [int(d) for d in x.shape[2:]]
    counted = np.ones([1, 1, *spatial], np.float64)
    if n.attrs.get("count_include_pad", 0):
        counted = np.pad(counted, [(0, 0), (0, 0), *zip(low, high)], constant_values=1)
        low, high = [0] * len(low), [0] * len(high)
    mask = _padded(gb.constant(counted, x.dtype, graph=x.graph), low, high, outs, strides, dilations, kernel, 0.0)
    return gb.div(total, _pooled(mask, gb.sum, kernel, strides, dilations, outs))


@register_importer("LpPool")
def _lp_pool(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """(sum of |x| ** p over each window) ** (1 / p); padding contributes zeros."""
    x, kernel, (strides, dilations, low, high, outs) = _pool_geometry(ctx, n, args)
    p = float(n.attrs.get("p", 2))
    padded = _padded(gb.pow(gb.abs(x), p), low, high, outs, strides, dilations, kernel, 0.0)
    return gb.pow(_pooled(padded, gb.sum, kernel, strides, dilations, outs), 1.0 / p)
