"""vjp, jvp and batching rules of the neural-network ops (conv2d, conv_transpose2d, max_pool2d,
avg_pool2d, take, scatter_add), written with the builder API like every other rule.

- conv2d's input gradient is a conv_transpose2d of the cotangent, its weight gradient a conv2d
  of the input with the cotangent (batch and channel axes swapped, stride and dilation
  exchanged, groups kept apart); conv_transpose2d's are the same two ops the other way round.
  Both ops are bilinear, so gradients of any order stay within these two ops.
- max_pool2d passes each window's cotangent to the first maximum of the window in row-major
  order (as PyTorch); padded cells never win. Its rules are built from strided slices and pads
  of one mask per kernel offset, so they need no extra op; where the windows tile the input
  (stride = kernel, no padding) the gradient is reshapes and broadcasts of a window view instead.
- avg_pool2d's gradient is a depthwise conv_transpose2d with a kernel of ones.
- take's gradient is a scatter_add into zeros and scatter_add's is a take, in the op's index mode
  (clip: to the clamped index; fill: nowhere, as for gather_elements in select_rules).
- Batching folds a batched input into the N axis; a batched weight folds the batch into the
  groups of the convolution; batched indices are offset into a flattened (batch, axis) axis.
"""

from __future__ import annotations

import functools
import itertools
from typing import Sequence

import numpy as np

from ..graph import Tensor, UnsupportedOpError
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.ops.nn import Padding, Pair, pool_counts, transpose_out
from ..graph.types import Dim, dims_equal
from .batching import register_batch
from .jvp_rules import Tangents, register_jvp
from .select_rules import both, linear_read
from .vjp_rules import register_vjp


def conv2d_weight_grad(
    x: Tensor, g: Tensor, kernel: Sequence[int], stride: Pair, padding: Padding, dilation: Pair, groups: int
) -> Tensor:
    """d <conv2d(x, w), g> / dw, shape (O, C / groups, *kernel): the correlation of x with g,
    computed as a conv2d over x with its batch and channel axes swapped."""
    n, c, h, w = x.shape
    o, p, q = g.shape[1:]
    per_group = c // groups
    xs = gb.reshape(
        gb.transpose(gb.reshape(x, (n, groups, per_group, h, w)), (2, 1, 0, 3, 4)), (per_group, groups * n, h, w)
    )
    gs = gb.reshape(gb.transpose(gb.reshape(g, (n, groups, o // groups, p, q)), (1, 2, 0, 3, 4)), (o, n, p, q))
    r = gb.conv2d(xs, gs, dilation, padding, stride, groups)
    if tuple(r.shape[2:]) != tuple(kernel):
        r = gb.slice(r, (0, 0, 0, 0), (per_group, o, *kernel))
    return gb.transpose(r, (1, 0, 2, 3))


def _extra(size: int, out: int, kernel: int, low: int, high: int, stride: int, dilation: int) -> int:
    """The output_padding that makes conv_transpose2d give back `size` from `out` windows."""
    return size - transpose_out(out, low, high, kernel, stride, dilation, 0)


@register_vjp("conv2d")
def _conv2d(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, stride: Pair, padding: Padding, dilation: Pair, groups: int
) -> tuple[Tensor, Tensor]:
    x, w = inputs
    kernel = w.shape[2:]
    extra = [
        _extra(*a, *p, s, d) for a, p, s, d in zip(zip(x.shape[2:], out.shape[2:], kernel), padding, stride, dilation)
    ]
    dx = gb.conv_transpose2d(g, w, stride, padding, extra, dilation, groups)
    return dx, conv2d_weight_grad(x, g, kernel, stride, padding, dilation, groups)


@register_vjp("conv_transpose2d")
def _conv_transpose2d(
    inputs: tuple[Tensor, ...],
    out: Tensor,
    g: Tensor,
    stride: Pair,
    padding: Padding,
    output_padding: Pair,
    dilation: Pair,
    groups: int,
) -> tuple[Tensor, Tensor]:
    """conv_transpose2d(x, w) is the adjoint of conv2d(., w): x's cotangent is conv2d(g, w), and
    w's is conv2d's weight gradient with g as the input and x as the cotangent."""
    x, w = inputs
    dx = gb.conv2d(g, w, stride, padding, dilation, groups)
    return dx, conv2d_weight_grad(g, x, w.shape[2:], stride, padding, dilation, groups)


def _bilinear_jvp(op: str):
    def rule(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: object) -> Tensor:
        (x, w), (tx, tw) = inputs, tangents
        parts = [gb.emit(op, a, b, **attrs) for a, b in ((tx, w), (x, tw)) if a is not None and b is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    return rule


for _op in ("conv2d", "conv_transpose2d"):
    register_jvp(_op)(_bilinear_jvp(_op))


# -- pooling --------------------------------------------------------------------------------------
def _tap_bounds(x: Tensor, out: Tensor, offset: Pair, stride: Pair) -> tuple[list, list, list]:
    """Slice bounds of the padded x under kernel offset `offset` for every output position."""
    stops = [a + (o - 1) * s + 1 for a, o, s in zip(offset, out.shape[2:], stride)]
    return [0, 0, *offset], [*x.shape[:2], *stops], [1, 1, *stride]


def _padded(x: Tensor, padding: Padding) -> Tensor:
    return gb.pad(x, (0, 0, *(p[0] for p in padding)), (0, 0, *(p[1] for p in padding)))


def _first_max_masks(x: Tensor, out: Tensor, kernel: Pair, stride: Pair, padding: Padding) -> list[tuple[Pair, Tensor]]:
    """(offset, mask) per kernel offset: 1 where that offset holds the first maximum of its window."""
    padded = _padded(x, padding)
    inside = _padded(gb.broadcast_to(gb.constant(np.ones((), x.dtype), graph=x.graph), x.shape), padding)
    taken, masks = None, []
    for offset in itertools.product(*(range(k) for k in kernel)):
        bounds = _tap_bounds(padded, out, offset, stride)
        hit = gb.cast(gb.equal(gb.slice(padded, *bounds), out), x.dtype) * gb.slice(inside, *bounds)
        first = hit if taken is None else hit * (1.0 - taken)
        taken = first if taken is None else taken + first
        masks.append((offset, first))
    return masks


def _scatter_taps(x: Tensor, parts: list[tuple[Pair, Tensor]], stride: Pair, padding: Padding) -> Tensor:
    """The sum of each part placed back at its tap's positions of the padded x, unpadded."""
    (top, _), (left, _) = padding
    full = [d + lo + hi for d, (lo, hi) in zip(x.shape[2:], padding)]
    total = None
    for offset, part in parts:
        high = [f - a - (o - 1) * s - 1 for f, a, o, s in zip(full, offset, part.shape[2:], stride)]
        placed = gb.pad(part, (0, 0, *offset), (0, 0, *high), (0, 0, *(s - 1 for s in stride)))
        total = placed if total is None else total + placed
    return gb.slice(total, (0, 0, top, left), (*x.shape[:2], top + x.shape[2], left + x.shape[3]))


@register_vjp("max_pool2d")
def _max_pool2d(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, kernel: Pair, stride: Pair, padding: Padding
) -> tuple[Tensor]:
    (x,) = inputs
    if _windows_tile(x, out, kernel, stride, padding):
        return (_tiled_max_pool_grad(x, out, g, kernel),)
    masks = _first_max_masks(x, out, kernel, stride, padding)
    return (_scatter_taps(x, [(offset, g * mask) for offset, mask in masks], stride, padding),)


def _windows_tile(x: Tensor, out: Tensor, kernel: Pair, stride: Pair, padding: Padding) -> bool:
    """Whether the windows tile x exactly: stride = kernel, no padding, no cell left over."""
    exact = all(dims_equal(d, k * o) for d, k, o in zip(x.shape[2:], kernel, out.shape[2:]))
    return tuple(stride) == tuple(kernel) and all(lo == hi == 0 for lo, hi in padding) and exact


def _tiled_max_pool_grad(x: Tensor, out: Tensor, g: Tensor, kernel: Pair) -> Tensor:
    """max_pool2d's gradient where the windows tile x: x seen as (N, C, Ho, kh, Wo, kw), each cell
    compared with its window's maximum, a hit dropped when an earlier cell of the window (row-major)
    hit too. Reshapes and broadcasts only: one elementwise kernel, where strided slices and
    interior pads of the general form test every cell against every kernel offset."""
    n, c, ho, wo = out.shape
    kh, kw = kernel

    def per_window(t: Tensor) -> Tensor:
        return gb.reshape(t, (n, c, ho, 1, wo, 1))

    hit = gb.cast(gb.equal(gb.reshape(x, (n, c, ho, kh, wo, kw)), per_window(out)), x.dtype)
    offsets = list(itertools.product(range(kh), range(kw)))
    earlier = None  # at each cell: the hits of the cells before it in its window
    for rank, (a, b) in enumerate(offsets[:-1]):
        later = np.zeros((1, 1, 1, kh, 1, kw), x.dtype)
        for i, j in offsets[rank + 1 :]:
            later[0, 0, 0, i, 0, j] = 1
        tap = gb.slice(hit, (0, 0, 0, a, 0, b), (n, c, ho, a + 1, wo, b + 1)) * gb.constant(later, graph=x.graph)
        earlier = tap if earlier is None else earlier + tap
    first = hit if earlier is None else gb.where(earlier > 0, 0.0, hit)
    return gb.reshape(per_window(g) * first, x.shape)


@register_jvp("max_pool2d")
def _max_pool2d_jvp(
    inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, kernel: Pair, stride: Pair, padding: Padding
) -> Tensor:
    (x,), (t,) = inputs, tangents
    padded = _padded(t, padding)
    parts = [
        gb.slice(padded, *_tap_bounds(padded, out, offset, stride)) * mask
        for offset, mask in _first_max_masks(x, out, kernel, stride, padding)
    ]
    return functools.reduce(gb.add, parts)


@register_vjp("avg_pool2d")
def _avg_pool2d(
    inputs: tuple[Tensor, ...],
    out: Tensor,
    g: Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Padding,
    count_include_pad: bool,
) -> tuple[Tensor]:
    """Spread g / count over each window: a depthwise conv_transpose2d with a kernel of ones."""
    (x,) = inputs
    channels = x.shape[1]
    if count_include_pad:
        scaled = g * (1.0 / (kernel[0] * kernel[1]))
    else:
        counts = pool_counts(x.shape[2:], kernel, stride, padding)
        scaled = g * gb.constant((1.0 / counts).astype(x.dtype), graph=x.graph)
    ones = gb.constant(np.ones((channels, 1, *kernel), x.dtype), graph=x.graph)
    extra = [_extra(d, o, k, *p, s, 1) for d, o, k, p, s in zip(x.shape[2:], out.shape[2:], kernel, padding, stride)]
    return (gb.conv_transpose2d(scaled, ones, stride, padding, extra, 1, channels),)


@register_jvp("avg_pool2d")
def _avg_pool2d_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: object) -> Tensor:
    return gb.emit("avg_pool2d", tangents[0], **attrs)


# -- indexing -------------------------------------------------------------------------------------
@register_vjp("take")
def _take(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, mode: str = "raise") -> tuple[Tensor, None]:
    x, indices = inputs
    return gb.scatter_add(zeros_like(x), indices, g, axis, mode), None


@register_jvp("take")
def _take_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axis: int, mode: str = "raise") -> Tensor:
    x, indices = inputs
    return linear_read(lambda i, m: gb.take(tangents[0], i, axis, m), x, indices, axis, mode, axis)


@register_vjp("scatter_add")
def _scatter_add(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, mode: str = "raise"
) -> tuple[Tensor, None, Tensor]:
    x, indices, _ = inputs
    return g, None, linear_read(lambda i, m: gb.take(g, i, axis, m), x, indices, axis, mode, axis)


@register_jvp("scatter_add")
def _scatter_add_jvp(
    inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axis: int, mode: str = "raise"
) -> Tensor:
    (x, indices, updates), (tx, _, tu) = inputs, tangents
    tx, tu = zeros_like(x) if tx is None else tx, zeros_like(updates) if tu is None else tu
    return gb.scatter_add(tx, indices, tu, axis, mode)


# -- batching -------------------------------------------------------------------------------------
def _fold_batch(x: Tensor) -> Tensor:
    """(B, N, ...) as (B * N, ...)."""
    return gb.reshape(x, (x.shape[0] * x.shape[1], *x.shape[2:]))


def _unfold_batch(y: Tensor, size: Dim) -> Tensor:
    return gb.reshape(y, (size, y.shape[0] // size, *y.shape[1:]))


def _static_batch(size: Dim, op: str) -> int:
    if not isinstance(size, int):
        raise UnsupportedOpError(f"{op}: batching a weight needs a static batch size, got {size}")
    return size


def _conv_batch(op: str):
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs) -> Tensor:
        """Batched data only: fold into N. A batched weight: fold the batch into the groups."""
        x, w = inputs
        if not batched[1]:
            return _unfold_batch(gb.emit(op, _fold_batch(x), w, **attrs), size)
        b = _static_batch(size, op)
        x = x if batched[0] else gb.broadcast_to(x, (b, *x.shape))
        _, n, c, h, wd = x.shape
        xs = gb.reshape(gb.transpose(x, (1, 0, 2, 3, 4)), (n, b * c, h, wd))
        ws = gb.reshape(w, (b * w.shape[1], *w.shape[2:]))
        y = gb.emit(op, xs, ws, **attrs | {"groups": b * attrs["groups"]})
        return gb.transpose(gb.reshape(y, (n, b, y.shape[1] // b, *y.shape[2:])), (1, 0, 2, 3, 4))

    return rule


def _pool_batch(op: str):
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs) -> Tensor:
        return _unfold_batch(gb.emit(op, _fold_batch(inputs[0]), **attrs), size)

    return rule


for _op in ("conv2d", "conv_transpose2d"):
    register_batch(_op)(_conv_batch(_op))
for _op in ("max_pool2d", "avg_pool2d"):
    register_batch(_op)(_pool_batch(_op))


def _flat_offsets(indices: Tensor, size: int, length: Dim, mode: str) -> Tensor:
    """Batched indices (B, *I) into (B * length) rows: i + b * length, with i as `mode` reads it
    (clamped, or negatives made positive); an out-of-range index stays out of range (>= B * length),
    so it raises, or fills, as it would have unbatched, instead of reading another batch row."""
    if mode == "clip":
        indices = gb.clip(indices, 0, length - 1)
    else:
        valid = both(indices >= -length, indices < length)
        indices = gb.where(valid, gb.where(indices < 0, indices + length, indices), size * length)
    starts = np.arange(size).reshape((size,) + (1,) * (indices.ndim - 1)) * length
    return indices + gb.constant(starts.astype(indices.dtype), graph=indices.graph)


def _axis_first(x: Tensor, axis: int) -> Tensor:
    """(B, *pre, A, *post) as (B * A, *pre, *post)."""
    moved = gb.transpose(x, (0, axis + 1, *range(1, axis + 1), *range(axis + 2, x.ndim)))
    return _fold_batch(moved)


def _batched(x: Tensor, flag: bool, size: Dim) -> Tensor:
    return x if flag else gb.broadcast_to(x, (size, *x.shape))


@register_batch("take")
def _take_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, axis: int, mode: str = "raise"
) -> Tensor:
    x, indices = inputs
    if not batched[1]:
        return gb.take(x, indices, axis + 1, mode)
    b = _static_batch(size, "take")
    x = _batched(x, batched[0], b)
    r = gb.take(_axis_first(x, axis), _flat_offsets(indices, b, x.shape[axis + 1], mode), 0, mode)
    index_rank = indices.ndim - 1
    perm = (
        0,
        *range(1 + index_rank, 1 + index_rank + axis),
        *range(1, 1 + index_rank),
        *range(1 + index_rank + axis, r.ndim),
    )
    return gb.transpose(r, perm)


@register_batch("scatter_add")
def _scatter_add_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, axis: int, mode: str = "raise"
) -> Tensor:
    x, indices, updates = inputs
    x, updates = _batched(x, batched[0], size), _batched(updates, batched[2], size)
    if not batched[1]:
        return gb.scatter_add(x, indices, updates, axis + 1, mode)
    b = _static_batch(size, "scatter_add")
    index_rank = indices.ndim - 1
    perm = (
        0,
        *range(1 + axis, 1 + axis + index_rank),
        *range(1, 1 + axis),
        *range(1 + axis + index_rank, updates.ndim),
    )
    offsets = _flat_offsets(indices, b, x.shape[axis + 1], mode)
    flat = gb.scatter_add(_axis_first(x, axis), offsets, gb.transpose(updates, perm), 0, mode)
    back = gb.reshape(flat, (b, x.shape[axis + 1], *flat.shape[1:]))
    return gb.transpose(back, (0, *range(2, axis + 2), 1, *range(axis + 2, back.ndim)))
