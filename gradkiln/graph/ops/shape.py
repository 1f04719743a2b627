"""Shape ops: reshape, transpose, broadcast_to, expand_dims, squeeze, concat, slice, pad."""

from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from ..opdef import OpDef, register_op
from ..types import Dim, TensorType, as_dim, broadcast_shapes, dims_equal, shape_size
from .common import check_axes, require_same_dtype


def _fmt(shape: tuple) -> str:
    return f"({', '.join(map(str, shape))})"


def _reshape_infer(x: TensorType, shape: tuple[Dim, ...]) -> tuple[TensorType]:
    if not dims_equal(shape_size(x.shape), shape_size(shape)):
        raise ShapeError(f"cannot reshape {_fmt(x.shape)} to {_fmt(shape)}: sizes differ")
    return (x.with_shape(shape),)


def _transpose_infer(x: TensorType, perm: tuple[int, ...]) -> tuple[TensorType]:
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of the {x.rank} axes")
    return (x.with_shape(tuple(x.shape[p] for p in perm)),)


def _broadcast_to_infer(x: TensorType, shape: tuple[Dim, ...]) -> tuple[TensorType]:
    target = tuple(as_dim(d) for d in shape)
    if len(target) < x.rank or not all(map(dims_equal, broadcast_shapes(x.shape, target), target)):
        raise ShapeError(f"cannot broadcast {_fmt(x.shape)} to {_fmt(target)}")
    return (x.with_shape(target),)


def _expand_dims_infer(x: TensorType, axes: tuple[int, ...]) -> tuple[TensorType]:
    rank = x.rank + len(axes)
    check_axes(axes, rank)
    dims = iter(x.shape)
    return (x.with_shape(tuple(1 if i in axes else next(dims) for i in range(rank))),)


def _squeeze_infer(x: TensorType, axes: tuple[int, ...]) -> tuple[TensorType]:
    check_axes(axes, x.rank)
    for a in axes:
        if not dims_equal(x.shape[a], 1):
            raise ShapeError(f"cannot squeeze axis {a} of {_fmt(x.shape)}: its size is not 1")
    return (x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in axes)),)


def _concat_infer(*xs: TensorType, axis: int) -> tuple[TensorType]:
    if not xs:
        raise ShapeError("needs at least one operand")
    require_same_dtype(*xs)
    first = xs[0]
    for x in xs[1:]:
        same = x.rank == first.rank and all(
            i == axis or dims_equal(a, b) for i, (a, b) in enumerate(zip(x.shape, first.shape))
        )
        if not same:
            raise ShapeError(f"shapes {' and '.join(_fmt(t.shape) for t in xs)} differ off axis {axis}")
    check_axes((axis,), first.rank)
    total = sum((x.shape[axis] for x in xs), start=0)
    return (first.with_shape(first.shape[:axis] + (as_dim(total),) + first.shape[axis + 1 :]),)


def slice_length(start: Dim, stop: Dim, step: int) -> Dim:
    if isinstance(start, int) and isinstance(stop, int):
        return len(range(start, stop, step))
    return as_dim(sympy.Max(0, sympy.ceiling((sympy.sympify(stop) - start) / step)))


def _slice_infer(x: TensorType, starts: tuple, stops: tuple, steps: tuple) -> tuple[TensorType]:
    if not len(starts) == len(stops) == len(steps) == x.rank:
        raise ShapeError(f"slice needs one (start, stop, step) per axis of {_fmt(x.shape)}")
    if any(s <= 0 for s in steps):
        raise ShapeError(f"steps {steps} must be positive")
    return (x.with_shape(tuple(slice_length(a, b, s) for a, b, s in zip(starts, stops, steps))),)


def _slice(x: np.ndarray, starts: tuple, stops: tuple, steps: tuple) -> np.ndarray:
    return x[tuple(slice(int(a), int(b), s) for a, b, s in zip(starts, stops, steps))]


def _pad_infer(x: TensorType, low: tuple, high: tuple, interior: tuple) -> tuple[TensorType]:
    if not len(low) == len(high) == len(interior) == x.rank:
        raise ShapeError(f"pad needs one (low, high, interior) per axis of {_fmt(x.shape)}")
    shape = tuple(
        as_dim(lo + hi + d + sympy.Max(0, d - 1) * k if not isinstance(d, int) else lo + hi + d + max(0, d - 1) * k)
        for d, lo, hi, k in zip(x.shape, low, high, interior)
    )
    return (x.with_shape(shape),)


def _pad(x: np.ndarray, low: tuple, high: tuple, interior: tuple) -> np.ndarray:
    shape = tuple(lo + hi + d + max(0, d - 1) * k for d, lo, hi, k in zip(x.shape, low, high, interior))
    out = np.zeros(shape, x.dtype)
    out[tuple(slice(lo, lo + d + max(0, d - 1) * k, k + 1) for d, lo, k in zip(x.shape, low, interior))] = x
    return out


def _concat_compute(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


register_op(
    OpDef(
        "reshape",
        _reshape_infer,
        lambda x, shape: x.reshape(tuple(int(d) for d in shape)),
        1,
        doc="attrs: shape (fully resolved; the builder resolves -1).",
    )
)
register_op(OpDef("transpose", _transpose_infer, lambda x, perm: np.transpose(x, perm), 1, doc="attrs: perm."))
register_op(
    OpDef(
        "broadcast_to",
        _broadcast_to_infer,
        lambda x, shape: np.broadcast_to(x, tuple(int(d) for d in shape)),
        1,
        doc="attrs: shape.",
    )
)
register_op(OpDef("expand_dims", _expand_dims_infer, lambda x, axes: np.expand_dims(x, axes), 1, doc="attrs: axes."))
register_op(OpDef("squeeze", _squeeze_infer, lambda x, axes: np.squeeze(x, axes), 1, doc="attrs: axes."))
register_op(OpDef("concat", _concat_infer, _concat_compute, None, doc="attrs: axis; variadic."))
register_op(
    OpDef(
        "slice", _slice_infer, _slice, 1, doc="attrs: starts, stops, steps, one per axis, non-negative, steps positive."
    )
)
register_op(
    OpDef(
        "pad",
        _pad_infer,
        _pad,
        1,
        doc="Zero padding; attrs: low, high, interior (zeros between elements), one per axis.",
    )
)
