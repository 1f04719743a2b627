"""Reductions over axes (sum, mean, max, min, prod, var, std, logsumexp), argmax/argmin, cumulative
sums and products, the element count `size`, and softmax/log_softmax."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..dtypes import as_dtype
from ..errors import ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType, normalize_axis
from .common import check_axes, operand_check, require_float, require_numeric


def _reduce_infer(floats_only: bool, complex_ok: bool = False) -> Callable:
    def infer(x: TensorType, axes: tuple[int, ...], keepdims: bool, **attrs: object) -> tuple[TensorType]:
        operand_check(floats_only, complex_ok)(x)
        check_axes(axes, x.rank)
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return (x.with_shape(shape),)

    return infer


def _extreme_infer(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> tuple[TensorType]:
    """max/min: as any reduction, but a reduced axis of size 0 has no extreme (numpy raises)."""
    empty = [a for a in check_axes(axes, x.rank) if x.shape[a] == 0]
    if empty:
        raise ShapeError(f"axes {tuple(empty)} have size 0 and have no extreme; slice or pad them, or use sum")
    return _reduce_infer(False)(x, axes, keepdims)


def _reduce(fn: Callable) -> Callable:
    return lambda x, axes, keepdims: np.asarray(fn(x, axis=axes, keepdims=keepdims)).astype(x.dtype, copy=False)


def _moment(fn: Callable) -> Callable:
    """var or std with `correction` (numpy's ddof): the sum of squares is divided by n - correction."""
    return lambda x, axes, keepdims, correction: np.asarray(
        fn(x, axis=axes, keepdims=keepdims, ddof=correction)
    ).astype(x.dtype, copy=False)


def _logsumexp(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) with the max subtracted first (a finite max only), so that it cannot overflow."""
    top = np.max(x, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, np.zeros((), x.dtype))
    out = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
    return (out if keepdims else np.squeeze(out, axes)).astype(x.dtype, copy=False)


def _arg_infer(x: TensorType, axis: int, keepdims: bool) -> tuple[TensorType]:
    require_numeric(x)
    axis = normalize_axis(axis, x.rank)
    if keepdims:
        return (TensorType("int64", tuple(1 if i == axis else d for i, d in enumerate(x.shape))),)
    return (TensorType("int64", tuple(d for i, d in enumerate(x.shape) if i != axis)),)


def _arg(fn: Callable) -> Callable:
    """argmax/argmin: the first index of the extreme along `axis`, as int64."""
    return lambda x, axis, keepdims: np.asarray(fn(x, axis=axis, keepdims=keepdims), dtype="int64")


def _cumulative_infer(x: TensorType, axis: int, **attrs: object) -> tuple[TensorType]:
    require_numeric(x)
    normalize_axis(axis, x.rank)
    return (x,)


def _cumulative(fn: Callable) -> Callable:
    """cumsum/cumprod along `axis`; cumsum also takes ONNX CumSum's `reverse` (run from the end)
    and `exclusive` (leave each element out of its own sum)."""

    def compute(x: np.ndarray, axis: int, exclusive: bool = False, reverse: bool = False) -> np.ndarray:
        x = np.flip(x, axis) if reverse else x
        out = fn(x, axis=axis, dtype=x.dtype)
        if exclusive and x.shape[axis]:  # an empty axis has no first element to shift in
            first = np.zeros_like(np.take(x, [0], axis=axis))
            out = np.concatenate([first, np.delete(out, -1, axis=axis)], axis=axis)
        return np.flip(out, axis) if reverse else out

    return compute


def _size_infer(x: TensorType, axes: tuple[int, ...], dtype: str) -> tuple[TensorType]:
    check_axes(axes, x.rank)
    return (TensorType(as_dtype(dtype), ()),)


def _size(x: np.ndarray, axes: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.asarray(np.prod([x.shape[a] for a in axes]), dtype=dtype)


def _softmax_infer(x: TensorType, axis: int) -> tuple[TensorType]:
    require_float(x)
    normalize_axis(axis, x.rank)
    return (x,)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


register_op(OpDef("sum", _reduce_infer(False, complex_ok=True), _reduce(np.sum), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("mean", _reduce_infer(True, complex_ok=True), _reduce(np.mean), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("max", _extreme_infer, _reduce(np.max), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("min", _extreme_infer, _reduce(np.min), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("prod", _reduce_infer(False), _reduce(np.prod), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("logsumexp", _reduce_infer(True), _logsumexp, 1, doc="attrs: axes, keepdims."))
for _name, _fn in {"var": np.var, "std": np.std}.items():
    register_op(
        OpDef(_name, _reduce_infer(True), _moment(_fn), 1, doc="attrs: axes, keepdims, correction (numpy's ddof).")
    )
for _name, _fn in {"argmax": np.argmax, "argmin": np.argmin}.items():
    register_op(OpDef(_name, _arg_infer, _arg(_fn), 1, doc="attrs: axis, keepdims. The first extreme wins ties."))
register_op(
    OpDef("cumsum", _cumulative_infer, _cumulative(np.cumsum), 1, doc="attrs: axis, exclusive, reverse (as ONNX).")
)
register_op(OpDef("cumprod", _cumulative_infer, _cumulative(np.cumprod), 1, doc="attrs: axis."))
register_op(
    OpDef(
        "size",
        _size_infer,
        _size,
        1,
        doc="attrs: axes, dtype. The number of elements of x over `axes`, as a scalar; needed where a symbolic "
        "dim enters arithmetic (the gradient of a mean over a batch of size N).",
    )
)
register_op(OpDef("softmax", _softmax_infer, _softmax, 1, doc="attrs: axis."))
register_op(OpDef("log_softmax", _softmax_infer, _log_softmax, 1, doc="attrs: axis."))
