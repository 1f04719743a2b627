"""Convolution, pooling and indexing ops over NCHW tensors: conv2d, conv_transpose2d,
max_pool2d, avg_pool2d, take and scatter_add.

Geometry attributes are per spatial dim (H, W): `stride`, `dilation` as pairs, `padding` as
((low_h, high_h), (low_w, high_w)) of zeros. Channel and spatial dims must be static; the batch
dim N may be symbolic. The numpy references work on strided window views (no Python loops over
pixels), so they double as fast executors for small models.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtypes import is_int
from ..errors import DTypeError, ShapeError
from ..opdef import OpDef, register_op
from ..types import Dim, TensorType, as_dim, dims_equal, normalize_axis
from .common import require_float, require_same_dtype
from .index_mode import check_mode, fill_invalid, resolve

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def _static(t: TensorType, axes: Sequence[int], what: str) -> list[int]:
    dims = [t.shape[a] for a in axes]
    if not all(isinstance(d, int) for d in dims):
        raise ShapeError(f"the {what} dims of {t.shape} must be static ints")
    return dims


def _image(t: TensorType, what: str) -> None:
    if t.rank != 4:
        raise ShapeError(f"{what} must have rank 4 (NCHW / OIHW), got shape {t.shape}")


def window_out(size: int, low: int, high: int, kernel: int, stride: int, dilation: int, what: str) -> int:
    """The number of windows along one spatial dim (floor mode); a ShapeError when none fits."""
    span = dilation * (kernel - 1) + 1
    if span > size + low + high:
        raise ShapeError(
            f"{what}: the kernel spans {span} (size {kernel}, dilation {dilation}) but the padded input "
            f"has only {size + low + high} ({size} + padding {low} + {high})"
        )
    return (size + low + high - span) // stride + 1


def transpose_out(size: int, low: int, high: int, kernel: int, stride: int, dilation: int, extra: int) -> int:
    """The output size of a transposed convolution along one spatial dim."""
    return (size - 1) * stride - low - high + dilation * (kernel - 1) + 1 + extra


def _check_geometry(stride: Pair, padding: Padding, dilation: Pair) -> None:
    if min(stride) < 1 or min(dilation) < 1 or min(min(p) for p in padding) < 0:
        raise ShapeError(f"strides {stride} and dilations {dilation} must be >= 1, padding {padding} >= 0")


def _conv_channels(x: TensorType, w: TensorType, groups: int, in_axis: int, op: str) -> Dim:
    """The weight's dim 0, after checking the channels of x and w against `groups`. Channel
    dims may be symbolic (the weight gradient convolves over the batch); then they must match."""
    require_same_dtype(x, w)
    require_float(x)
    _image(x, f"{op}: the input")
    _image(w, f"{op}: the weight")
    channels, lead, per_group = x.shape[1], w.shape[0], w.shape[1]
    if groups < 1 or (isinstance(channels, int) and channels % groups):
        raise ShapeError(f"{op}: groups={groups} does not divide the {channels} input channels of {x.shape}")
    expected = as_dim(per_group * groups) if in_axis == 1 else lead
    if not dims_equal(expected, channels):
        raise ShapeError(
            f"{op}: the input {x.shape} has {channels} channels but the weight {w.shape} expects {expected} "
            f"(groups={groups})"
        )
    if in_axis == 1 and isinstance(lead, int) and lead % groups:
        raise ShapeError(f"{op}: groups={groups} does not divide the {lead} output channels of the weight {w.shape}")
    return lead


def _conv2d_infer(
    x: TensorType, w: TensorType, stride: Pair, padding: Padding, dilation: Pair, groups: int
) -> tuple[TensorType]:
    out_channels = _conv_channels(x, w, groups, 1, "conv2d")
    _check_geometry(stride, padding, dilation)
    sizes, kernel = _static(x, [2, 3], "spatial"), _static(w, [2, 3], "kernel")
    outs = [
        window_out(n, lo, hi, k, s, d, f"conv2d of {x.shape} with weight {w.shape}")
        for n, (lo, hi), k, s, d in zip(sizes, padding, kernel, stride, dilation)
    ]
    return (x.with_shape((x.shape[0], out_channels, *outs)),)


def _conv_transpose2d_infer(
    x: TensorType, w: TensorType, stride: Pair, padding: Padding, output_padding: Pair, dilation: Pair, groups: int
) -> tuple[TensorType]:
    _conv_channels(x, w, groups, 0, "conv_transpose2d")
    _check_geometry(stride, padding, dilation)
    if any(e < 0 or e >= max(s, d) for e, s, d in zip(output_padding, stride, dilation)):
        raise ShapeError(f"conv_transpose2d: output_padding {output_padding} must be >= 0 and < max(stride, dilation)")
    sizes, kernel = _static(x, [2, 3], "spatial"), _static(w, [2, 3], "kernel")
    outs = [
        transpose_out(n, *p, k, s, d, e)
        for n, p, k, s, d, e in zip(sizes, padding, kernel, stride, dilation, output_padding)
    ]
    if min(outs) < 1:
        raise ShapeError(f"conv_transpose2d of {x.shape} with weight {w.shape}: the padding {padding} leaves {outs}")
    return (x.with_shape((x.shape[0], as_dim(w.shape[1] * groups), *outs)),)


def _pool_infer(x: TensorType, kernel: Pair, stride: Pair, padding: Padding, **attrs: object) -> tuple[TensorType]:
    require_float(x)
    _image(x, "the pooled input")
    _check_geometry(stride, padding, (1, 1))
    if any(lo >= k or hi >= k for (lo, hi), k in zip(padding, kernel)):
        raise ShapeError(f"pooling: padding {padding} must be smaller than the kernel {kernel} on each side")
    sizes = _static(x, [2, 3], "spatial")
    outs = [
        window_out(n, lo, hi, k, s, 1, f"pooling {x.shape}")
        for n, (lo, hi), k, s in zip(sizes, padding, kernel, stride)
    ]
    return (x.with_shape((*x.shape[:2], *outs)),)


def windows(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair, fill: float = 0.0
) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw): a strided view of the padded x under every kernel position."""
    padded = np.pad(x, ((0, 0), (0, 0), *padding), constant_values=fill)
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    view = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(2, 3))
    return view[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def _conv2d(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Padding, dilation: Pair, groups: int) -> np.ndarray:
    """One input channel at a time: its patches (a copy of n * positions * kernel area) times
    that channel's slice of the weights, accumulated in float32 or wider and rounded once.
    Copying the patches of every channel at once (im2col) makes a temporary kernel-area times
    the input, and a transposed weight (a weight gradient's cotangent) would be copied whole."""
    cols = windows(x, w.shape[2:], stride, padding, dilation)
    n, c, ho, wo, kh, kw = cols.shape
    per_group, outs = c // groups, w.shape[0] // groups
    accumulator = np.result_type(x, w, np.float32)
    out = np.zeros((n, groups, outs, ho * wo), accumulator)
    for channel in range(c):
        group, k = divmod(channel, per_group)
        patches = cols[:, channel].reshape(n, ho * wo, kh * kw).astype(accumulator, copy=False)
        kernel = w[group * outs : (group + 1) * outs, k].reshape(outs, kh * kw).astype(accumulator, copy=False)
        out[:, group] += np.matmul(patches, kernel.T).transpose(0, 2, 1)
    return out.reshape(n, w.shape[0], ho, wo).astype(x.dtype, copy=False)


def _conv_transpose2d(
    x: np.ndarray, w: np.ndarray, stride: Pair, padding: Padding, output_padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """Each kernel offset adds x times its weights into a strided grid of the full output,
    which is then cut by the padding."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    full = [
        transpose_out(s, 0, 0, k, st, d, e)
        for s, k, st, d, e in zip((h, wd), (kh, kw), stride, dilation, output_padding)
    ]
    out = np.zeros((n, groups, w.shape[1], *full), x.dtype)
    xg = x.reshape(n, groups, c // groups, h, wd)
    wg = w.reshape(groups, c // groups, w.shape[1], kh, kw)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dilation[0], i * dilation[0] + (h - 1) * stride[0] + 1, stride[0])
            cols = slice(j * dilation[1], j * dilation[1] + (wd - 1) * stride[1] + 1, stride[1])
            out[:, :, :, rows, cols] += np.einsum("ngchw,gco->ngohw", xg, wg[..., i, j], optimize=True)
    (top, bottom), (left, right) = padding
    out = out.reshape(n, groups * w.shape[1], *full)
    return out[:, :, top : full[0] - bottom, left : full[1] - right]


def _max_pool2d(x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding) -> np.ndarray:
    return windows(x, kernel, stride, padding, (1, 1), -np.inf).max(axis=(4, 5))


def pool_counts(size: Pair, kernel: Pair, stride: Pair, padding: Padding) -> np.ndarray:
    """(Ho, Wo): how many cells of the unpadded input each window covers."""
    ones = np.ones((1, 1, *size))
    return windows(ones, kernel, stride, padding, (1, 1)).sum(axis=(4, 5))[0, 0]


def _avg_pool2d(x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding, count_include_pad: bool) -> np.ndarray:
    total = windows(x, kernel, stride, padding, (1, 1)).sum(axis=(4, 5))
    count = kernel[0] * kernel[1] if count_include_pad else pool_counts(x.shape[2:], kernel, stride, padding)
    return (total / count).astype(x.dtype, copy=False)


def _take_shape(x: TensorType, indices: TensorType, axis: int, mode: str, op: str) -> tuple[Dim, ...]:
    if not is_int(indices.dtype):
        raise DTypeError(f"{op}: indices must be int32 or int64, got {indices.dtype}")
    check_mode(mode, op)
    normalize_axis(axis, x.rank)
    return x.shape[:axis] + indices.shape + x.shape[axis + 1 :]


def _take_infer(x: TensorType, indices: TensorType, axis: int, mode: str = "raise") -> tuple[TensorType]:
    return (x.with_shape(_take_shape(x, indices, axis, mode, "take")),)


def _take(x: np.ndarray, indices: np.ndarray, axis: int, mode: str = "raise") -> np.ndarray:
    safe, valid = resolve(indices, x.shape[axis], mode, "take")
    return fill_invalid(np.take(x, safe, axis=axis), valid, axis)


def _scatter_add_infer(
    x: TensorType, indices: TensorType, updates: TensorType, axis: int, mode: str = "raise"
) -> tuple[TensorType]:
    require_same_dtype(x, updates)
    want = _take_shape(x, indices, axis, mode, "scatter_add")
    if len(want) != updates.rank or not all(map(dims_equal, want, updates.shape)):
        raise ShapeError(
            f"scatter_add: updates {updates.shape} must have the shape {want} of take(x {x.shape}, "
            f"indices {indices.shape}, axis={axis})"
        )
    return (x,)


def _scatter_add(x: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int, mode: str = "raise") -> np.ndarray:
    """In mode "fill" the updates at out-of-range indices are dropped."""
    safe, valid = resolve(indices, x.shape[axis], mode, "scatter_add")
    if valid is not None:
        safe, updates = safe[valid], updates[(slice(None),) * axis + (valid,)]
    out = x.copy()
    np.add.at(out, (slice(None),) * axis + (safe,), updates)
    return out


register_op(
    OpDef(
        "conv2d",
        _conv2d_infer,
        _conv2d,
        2,
        doc="conv2d(x NCHW, w OIHW) (cross-correlation, as PyTorch); attrs: stride, padding "
        "((low, high) per spatial dim), dilation, groups.",
    )
)
register_op(
    OpDef(
        "conv_transpose2d",
        _conv_transpose2d_infer,
        _conv_transpose2d,
        2,
        doc="The transpose (adjoint) of conv2d: x NCHW, w (C_in, C_out / groups, kh, kw); attrs: stride, "
        "padding, output_padding (extra rows/cols at the high end), dilation, groups.",
    )
)
register_op(
    OpDef(
        "max_pool2d",
        _pool_infer,
        _max_pool2d,
        1,
        doc="Max over windows (NCHW), padded cells excluded; attrs: kernel, stride, padding.",
    )
)
register_op(
    OpDef(
        "avg_pool2d",
        _pool_infer,
        _avg_pool2d,
        1,
        doc="Mean over windows (NCHW); attrs: kernel, stride, padding, count_include_pad (divide by the "
        "kernel size, else by the number of unpadded cells).",
    )
)
register_op(
    OpDef(
        "take",
        _take_infer,
        _take,
        2,
        doc="numpy.take(x, indices, axis): negative indices count from the end; attrs: axis, mode (out-of-range "
        "indices: 'raise', 'clip' or 'fill', see graph/ops/index_mode.py).",
    )
)
register_op(
    OpDef(
        "scatter_add",
        _scatter_add_infer,
        _scatter_add,
        3,
        doc="scatter_add(x, indices, updates, axis): x with updates added at the positions take(x, "
        "indices, axis) reads (repeats accumulate); the transpose of take; attrs: axis, mode (as take's; 'fill' "
        "drops the updates at out-of-range indices).",
    )
)
