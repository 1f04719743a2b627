"""Builder functions for shape ops and numpy-style indexing."""

from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np
import sympy

from ..dtypes import DEFAULT_FLOAT
from ..errors import ShapeError
from ..tensor import Tensor
from ..types import Dim, as_dim, dims_equal, normalize_axes, normalize_axis, shape_size
from .core import _promoted, constant, emit


def reshape(x: Tensor, shape: Sequence[Any]) -> Tensor:
    """Reshape; one dim may be -1 (inferred, also over symbolic dims)."""
    dims = [-1 if isinstance(d, int) and d == -1 else as_dim(d) for d in shape]
    if dims.count(-1) > 1:
        raise ShapeError(f"reshape to {tuple(shape)}: only one dim may be -1")
    if -1 in dims:
        known, total = shape_size([d for d in dims if d != -1]), shape_size(x.shape)
        exact = isinstance(known, int) and isinstance(total, int) and known and total % known == 0
        if isinstance(known, int) and isinstance(total, int) and not exact:
            raise ShapeError(f"cannot reshape {tuple(x.shape)} (size {total}) to {tuple(shape)}")
        dims[dims.index(-1)] = total // known if exact else as_dim(sympy.sympify(total) / known)
    return x if tuple(dims) == x.shape else emit("reshape", x, shape=tuple(dims))


def transpose(x: Tensor, perm: Sequence[int] | None = None) -> Tensor:
    """Permute axes (default: reverse them, like numpy)."""
    perm = tuple(range(x.ndim))[::-1] if perm is None else tuple(normalize_axis(p, x.ndim) for p in perm)
    return emit("transpose", x, perm=perm)


def broadcast_to(x: Tensor, shape: Sequence[Any]) -> Tensor:
    """Broadcast to `shape` by numpy rules."""
    shape = tuple(as_dim(d) for d in shape)
    return x if x.shape == shape else emit("broadcast_to", x, shape=shape)


def full(shape: Sequence[Any], value: Any, dtype: Any = None) -> Tensor:
    """A tensor of `shape` filled with `value` (dims may be symbolic): one scalar constant
    broadcast, so no array of the full size sits in the graph. dtype as `gk.constant` picks it."""
    return broadcast_to(constant(value, dtype), shape)


def zeros(shape: Sequence[Any], dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """Zeros of `shape` (float32 unless `dtype` says otherwise, like torch.zeros)."""
    return full(shape, 0, dtype)


def ones(shape: Sequence[Any], dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """Ones of `shape` (float32 unless `dtype` says otherwise, like torch.ones)."""
    return full(shape, 1, dtype)


def full_like(x: Tensor, value: Any) -> Tensor:
    """`value` in the shape and dtype of `x`, in x's graph."""
    return broadcast_to(constant(np.asarray(value, x.dtype), graph=x.graph), x.shape)


def zeros_like(x: Tensor) -> Tensor:
    """Zeros of the type of `x` (symbolic dims stay symbolic)."""
    return full_like(x, 0)


def ones_like(x: Tensor) -> Tensor:
    """Ones of the type of `x` (symbolic dims stay symbolic)."""
    return full_like(x, 1)


def expand_dims(x: Tensor, axis: int | Sequence[int]) -> Tensor:
    """Insert size-1 axes at `axis` (positions in the result)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return emit("expand_dims", x, axes=normalize_axes(axes, x.ndim + len(axes)))


def squeeze(x: Tensor, axis: int | Sequence[int] | None = None) -> Tensor:
    """Remove size-1 axes (all of them when `axis` is None)."""
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if dims_equal(d, 1))
    else:
        axes = normalize_axes(axis, x.ndim)
    return x if not axes else emit("squeeze", x, axes=axes)


def concat(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    if not xs:
        raise ShapeError("concat needs at least one tensor")
    _, tensors = _promoted(*xs)
    return emit("concat", *tensors, axis=normalize_axis(axis, tensors[0].ndim))


def slice(x: Tensor, starts: Sequence[Dim], stops: Sequence[Dim], steps: Sequence[int] | None = None) -> Tensor:
    """Strided slice with one non-negative (start, stop) and positive step per axis."""
    steps = tuple(steps) if steps is not None else (1,) * x.ndim
    return emit("slice", x, starts=tuple(starts), stops=tuple(stops), steps=steps)


def pad(x: Tensor, low: Sequence[int], high: Sequence[int], interior: Sequence[int] | None = None) -> Tensor:
    """Zero padding before, after and between the elements of each axis."""
    interior = tuple(interior) if interior is not None else (0,) * x.ndim
    return emit("pad", x, low=tuple(low), high=tuple(high), interior=interior)


def getitem(x: Tensor, index: Any) -> Tensor:
    """numpy basic indexing: ints, slices with positive steps, `...` and None."""
    index = index if isinstance(index, tuple) else (index,)
    if builtins.sum(i is Ellipsis for i in index) > 1:
        raise ShapeError("an index can have only one ellipsis (...)")
    used = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > x.ndim:
        raise ShapeError(f"too many indices ({used}) for a tensor of rank {x.ndim} {x.shape}")
    at = next((k for k, i in enumerate(index) if i is Ellipsis), len(index))
    index = index[:at] + (builtins.slice(None),) * (x.ndim - used) + index[at + 1 :]
    starts, stops, steps, squeezed, new_axes, axis = [], [], [], [], [], 0
    for item in index:
        if item is None:
            new_axes.append(axis - len(squeezed) + len(new_axes))
            continue
        start, stop, step = _index_bounds(item, x.shape[axis], axis)
        starts.append(start), stops.append(stop), steps.append(step)
        if not isinstance(item, builtins.slice):
            squeezed.append(axis)
        axis += 1
    out = x
    if any(a != 0 or not dims_equal(b, d) or s != 1 for a, b, s, d in zip(starts, stops, steps, x.shape)):
        out = slice(x, starts, stops, steps)
    out = squeeze(out, squeezed) if squeezed else out
    return expand_dims(out, new_axes) if new_axes else out


def _index_bounds(item: Any, dim: Dim, axis: int) -> tuple[Dim, Dim, int]:
    if isinstance(item, builtins.slice):
        step = 1 if item.step is None else item.step
        if step <= 0:
            raise ShapeError(f"axis {axis}: slice steps must be positive, got {step}")
        if isinstance(dim, int):
            start, stop, _ = item.indices(dim)
            return start, builtins.max(start, stop), step
        if any(isinstance(v, int) and v < 0 for v in (item.start, item.stop)):
            raise ShapeError(f"axis {axis} has symbolic size {dim}: negative slice bounds are not supported")
        return item.start or 0, dim if item.stop is None else item.stop, step
    if not hasattr(item, "__index__"):
        raise ShapeError(f"unsupported index {item!r}: use ints, slices, ... or None")
    i = int(item)
    if isinstance(dim, int):
        if not -dim <= i < dim:
            raise ShapeError(f"index {i} is out of bounds for axis {axis} with size {dim}")
        i %= dim
    elif i < 0:
        raise ShapeError(f"axis {axis} has symbolic size {dim}: negative indices are not supported")
    return i, i + 1, 1
