"""Reductions over axes (sum, mean, max), the element count `size`, and softmax/log_softmax."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..dtypes import as_dtype
from ..opdef import OpDef, register_op
from ..types import TensorType, normalize_axis
from .common import check_axes, require_float, require_numeric


def _reduce_infer(floats_only: bool) -> Callable:
    def infer(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> tuple[TensorType]:
        (require_float if floats_only else require_numeric)(x)
        check_axes(axes, x.rank)
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return (x.with_shape(shape),)

    return infer


def _reduce(fn: Callable) -> Callable:
    return lambda x, axes, keepdims: np.asarray(fn(x, axis=axes, keepdims=keepdims)).astype(x.dtype, copy=False)


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


register_op(OpDef("sum", _reduce_infer(False), _reduce(np.sum), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("mean", _reduce_infer(True), _reduce(np.mean), 1, doc="attrs: axes, keepdims."))
register_op(OpDef("max", _reduce_infer(False), _reduce(np.max), 1, doc="attrs: axes, keepdims."))
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
