"""Composite builder functions, built on the core and shape ops: matmul with vector operands,
argmax/argmin of the flattened tensor, one_hot and cross entropy."""

from __future__ import annotations

from typing import Any

from ..dtypes import DEFAULT_FLOAT, as_dtype, is_int
from ..errors import ShapeError
from ..tensor import Tensor
from ..types import normalize_axis
from .core import TensorLike, _promoted, emit, log_softmax, mean, mul, neg, sum
from .shapes import expand_dims, reshape, squeeze


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """numpy matmul: batched over leading axes; 1-D operands are treated as vectors."""
    _, (a, b) = _promoted(a, b)
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, 1) if b.ndim == 1 else b
    out = emit("matmul", a2, b2)
    drop = ([out.ndim - 2] if a.ndim == 1 else []) + ([out.ndim - 1] if b.ndim == 1 else [])
    return squeeze(out, drop) if drop else out


def one_hot(indices: Tensor, depth: int, dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """One-hot rows of length `depth` (out-of-range indices give zero rows)."""
    return emit("one_hot", indices, depth=int(depth), dtype=as_dtype(dtype))


def cross_entropy(logits: Tensor, labels: Tensor, axis: int = -1) -> Tensor:
    """Mean softmax cross entropy; labels are class indices (ints) or probabilities (floats)."""
    if is_int(labels.dtype):
        labels = one_hot(labels, int(logits.shape[axis]), logits.dtype)
    elif labels.shape != logits.shape:
        raise ShapeError(f"cross_entropy: probability labels {labels.shape} must match logits {logits.shape}")
    return neg(mean(sum(mul(labels, log_softmax(logits, axis)), axis)))


def _arg_reduction(op: str, doc: str):
    def arg(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
        if axis is not None:
            return emit(op, x, axis=normalize_axis(axis, x.ndim), keepdims=bool(keepdims))
        index = emit(op, reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(index, (1,) * x.ndim) if keepdims else index

    arg.__name__, arg.__doc__ = op, doc
    return arg


argmax = _arg_reduction("argmax", "Index (int64) of the first maximum along `axis` (None: of the flattened x).")
argmin = _arg_reduction("argmin", "Index (int64) of the first minimum along `axis` (None: of the flattened x).")
