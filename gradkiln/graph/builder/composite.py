"""Composite builder functions, built on the core and shape ops: matmul with vector operands,
argmax/argmin of the flattened tensor, one_hot and cross entropy."""

from __future__ import annotations

from typing import Any

from ..dtypes import DEFAULT_FLOAT, as_dtype, is_int
from ..errors import GraphError, ShapeError
from ..ops.index_mode import check_mode
from ..tensor import Tensor
from ..types import normalize_axis
from .core import TensorLike, _promoted, cast, emit, log_softmax, mean, not_equal, sum, where
from .elementwise import mul, neg
from .shapes import expand_dims, reshape, squeeze


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """numpy matmul: batched over leading axes; 1-D operands are treated as vectors."""
    _, (a, b) = _promoted(a, b)
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, 1) if b.ndim == 1 else b
    out = emit("matmul", a2, b2)
    drop = ([out.ndim - 2] if a.ndim == 1 else []) + ([out.ndim - 1] if b.ndim == 1 else [])
    return squeeze(out, drop) if drop else out


def one_hot(indices: Tensor, depth: int, dtype: Any = DEFAULT_FLOAT, mode: str = "raise") -> Tensor:
    """One-hot rows of length `depth` for class indices in [0, depth). Others raise on the numpy
    executor (as torch.nn.functional.one_hot), are clamped into range with mode "clip", or give zero
    rows with mode "fill" (as jax.nn.one_hot)."""
    return emit("one_hot", indices, depth=int(depth), dtype=as_dtype(dtype), mode=check_mode(mode, "one_hot"))


def cross_entropy(logits: Tensor, labels: Tensor, axis: int = -1, ignore_index: int | None = None) -> Tensor:
    """Mean softmax cross entropy; labels are class indices (ints) or probabilities (floats).

    A class index outside [0, classes) raises on the numpy executor, as PyTorch's "Target is out of
    bounds". Labels equal to `ignore_index` (class indices only) add nothing and are left out of the
    mean, as in torch.nn.functional.cross_entropy (all ignored: NaN, as there)."""
    if not is_int(labels.dtype):
        if labels.shape != logits.shape:
            raise ShapeError(f"cross_entropy: probability labels {labels.shape} must match logits {logits.shape}")
        if ignore_index is not None:
            raise GraphError("cross_entropy: ignore_index needs class-index (integer) labels, got probabilities")
        return neg(mean(sum(mul(labels, log_softmax(logits, axis)), axis)))
    classes = int(logits.shape[axis])
    if ignore_index is None:
        return neg(mean(sum(mul(one_hot(labels, classes, logits.dtype), log_softmax(logits, axis)), axis)))
    kept = not_equal(labels, ignore_index)
    hot = one_hot(where(kept, labels, 0), classes, logits.dtype)
    picked = where(kept, sum(mul(hot, log_softmax(logits, axis)), axis), 0.0)
    return neg(sum(picked) / sum(cast(kept, logits.dtype)))


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
