"""Builder functions for the neural-network ops (convolution, pooling, take, scatter_add) and
the layers composed from them: conv1d, global pooling, embedding.

Geometry arguments accept an int (every spatial dim), a pair (per dim) or, for padding,
((low, high), (low, high)) per dim.
"""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from ..ops.index_mode import check_mode
from ..tensor import Tensor
from ..types import normalize_axis
from .core import TensorLike, _promoted, emit
from .reduce import mean
from .shape import expand_dims, squeeze

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def pair(value: int | tuple[int, int], name: str) -> Pair:
    """An int or a pair as a pair of ints."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2:
        raise ShapeError(f"{name} must be an int or a pair, got {value!r}")
    return int(values[0]), int(values[1])


def padding_pairs(padding: Any) -> Padding:
    """int, (ph, pw) or ((top, bottom), (left, right)) as ((top, bottom), (left, right))."""
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    h, w = padding
    return pair(h, "padding"), pair(w, "padding")


def conv2d(
    x: TensorLike,
    w: TensorLike,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation of x (N, C, H, W) with w (O, C / groups, kh, kw), as PyTorch's conv2d."""
    _, (x, w) = _promoted(x, w)
    return emit(
        "conv2d",
        x,
        w,
        stride=pair(stride, "stride"),
        padding=padding_pairs(padding),
        dilation=pair(dilation, "dilation"),
        groups=int(groups),
    )


def conv_transpose2d(
    x: TensorLike,
    w: TensorLike,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """The transposed convolution of x (N, C, H, W) with w (C, O / groups, kh, kw): the gradient
    of conv2d with respect to its input, as PyTorch's conv_transpose2d."""
    _, (x, w) = _promoted(x, w)
    return emit(
        "conv_transpose2d",
        x,
        w,
        stride=pair(stride, "stride"),
        padding=padding_pairs(padding),
        output_padding=pair(output_padding, "output_padding"),
        dilation=pair(dilation, "dilation"),
        groups=int(groups),
    )


def conv1d(
    x: TensorLike, w: TensorLike, stride: int = 1, padding: Any = 0, dilation: int = 1, groups: int = 1
) -> Tensor:
    """1-D cross-correlation of x (N, C, L) with w (O, C / groups, k): conv2d over a unit height."""
    low, high = pair(padding, "padding")
    out = conv2d(expand_dims(x, 2), expand_dims(w, 2), (1, stride), ((0, 0), (low, high)), (1, dilation), groups)
    return squeeze(out, 2)


def max_pool2d(x: Tensor, kernel: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max over kernel windows of x (N, C, H, W); stride defaults to the kernel. The gradient
    goes to the first maximum of each window in row-major order (as PyTorch)."""
    kernel = pair(kernel, "kernel")
    stride = kernel if stride is None else pair(stride, "stride")
    return emit("max_pool2d", x, kernel=kernel, stride=stride, padding=padding_pairs(padding))


def avg_pool2d(x: Tensor, kernel: Any, stride: Any = None, padding: Any = 0, count_include_pad: bool = True) -> Tensor:
    """Mean over kernel windows of x (N, C, H, W); padded cells count when `count_include_pad`."""
    kernel = pair(kernel, "kernel")
    stride = kernel if stride is None else pair(stride, "stride")
    return emit(
        "avg_pool2d",
        x,
        kernel=kernel,
        stride=stride,
        padding=padding_pairs(padding),
        count_include_pad=bool(count_include_pad),
    )


def global_avg_pool2d(x: Tensor) -> Tensor:
    """The mean over H and W, keeping them as size-1 dims: (N, C, 1, 1)."""
    return mean(x, (2, 3), keepdims=True)


def take(x: Tensor, indices: TensorLike, axis: int = 0, mode: str = "raise") -> Tensor:
    """numpy.take: the slices of x at `indices` (int32/int64, negative from the end) along `axis`.
    `mode` treats out-of-range indices: "raise", "clip" (clamp into range) or "fill" (read NaN for
    floats; docs/autodiff.md, "Index modes")."""
    return emit("take", x, indices, axis=normalize_axis(axis, x.ndim), mode=check_mode(mode, "take"))


def scatter_add(x: Tensor, indices: TensorLike, updates: TensorLike, axis: int = 0, mode: str = "raise") -> Tensor:
    """x plus `updates` added at the slices `take(x, indices, axis)` reads (repeats accumulate); with
    mode "clip" out-of-range indices are clamped, with "fill" their updates are dropped."""
    return emit(
        "scatter_add", x, indices, updates, axis=normalize_axis(axis, x.ndim), mode=check_mode(mode, "scatter_add")
    )


def embedding(weights: Tensor, ids: TensorLike, mode: str = "raise") -> Tensor:
    """The rows of `weights` (vocabulary, dim) at integer `ids`: shape (*ids.shape, dim). An id
    outside [-vocabulary, vocabulary) raises on the numpy executor unless `mode` is "clip" or "fill"
    (as `take`'s)."""
    return take(weights, ids, 0, mode)
