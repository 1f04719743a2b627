"""Normalisations, losses and attention composed from primitive ops: they need no rules of
their own, since every layer (gradients, batching, TVM, ONNX) sees only the primitives.

Losses take `reduction`: "mean" (default), "sum" or "none" (per element / per example).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dtypes import is_int
from ..errors import GraphError, ShapeError
from ..tensor import Tensor
from .core import TensorLike, cast, constant, not_equal, where
from .elementwise import abs, exp, log1p, mul, neg, relu, rsqrt
from .linalg import matmul
from .reduce import log_softmax, mean, softmax, sum, var
from .select import one_hot
from .shape import reshape, transpose


def _reduced(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise GraphError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _per_channel(p: TensorLike | None, x: Tensor, axis: int = 1) -> TensorLike | None:
    """A (C,) parameter shaped to broadcast along `axis` of x."""
    if p is None or not isinstance(p, Tensor):
        return p
    return reshape(p, (x.shape[axis],) + (1,) * (x.ndim - 1 - axis))


def _affine(y: Tensor, weight: TensorLike | None, bias: TensorLike | None) -> Tensor:
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def _normalized(x: Tensor, axes: Sequence[int], eps: float) -> Tensor:
    """(x - mean) / sqrt(var + eps) over `axes` (biased variance, as every framework)."""
    centered = x - mean(x, axes, keepdims=True)
    return centered * rsqrt(mean(centered * centered, axes, keepdims=True) + eps)


def batch_norm(
    x: Tensor,
    weight: TensorLike | None = None,
    bias: TensorLike | None = None,
    running_mean: TensorLike | None = None,
    running_var: TensorLike | None = None,
    training: bool = True,
    eps: float = 1e-5,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """Normalise each channel (axis 1) of x (N, C, ...). Training: with the batch statistics,
    returning (y, batch mean, unbiased batch variance) for the caller's running averages (as
    PyTorch updates them). Inference: with `running_mean` and `running_var`, returning y."""
    axes = (0, *range(2, x.ndim))
    if not training:
        if running_mean is None or running_var is None:
            raise GraphError("batch_norm(training=False) needs running_mean and running_var")
        centered = x - _per_channel(running_mean, x)
        y = centered * rsqrt(_per_channel(running_var, x) + eps)
        return _affine(y, _per_channel(weight, x), _per_channel(bias, x))
    y = _affine(_normalized(x, axes, eps), _per_channel(weight, x), _per_channel(bias, x))
    return y, mean(x, axes), var(x, axes, correction=1)


def layer_norm(
    x: Tensor,
    normalized_shape: int | Sequence[int],
    weight: TensorLike | None = None,
    bias: TensorLike | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing dims `normalized_shape`; weight and bias have that shape."""
    dims = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(dims) :]) != dims:
        raise ShapeError(f"layer_norm: the trailing dims of {x.shape} are not {dims}")
    return _affine(_normalized(x, tuple(range(x.ndim - len(dims), x.ndim)), eps), weight, bias)


def group_norm(
    x: Tensor, num_groups: int, weight: TensorLike | None = None, bias: TensorLike | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalise x (N, C, ...) over each group of C / num_groups channels and the spatial dims;
    weight and bias are per channel."""
    channels = x.shape[1]
    if not isinstance(channels, int) or channels % num_groups:
        raise ShapeError(f"group_norm: {num_groups} groups do not divide the {channels} channels of {x.shape}")
    grouped = reshape(x, (x.shape[0], num_groups, -1))
    y = reshape(_normalized(grouped, (2,), eps), x.shape)
    return _affine(y, _per_channel(weight, x), _per_channel(bias, x))


def rms_norm(x: Tensor, weight: TensorLike | None = None, eps: float = 1e-6) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the last axis, times weight."""
    return _affine(x * rsqrt(mean(x * x, -1, keepdims=True) + eps), weight, None)


def mse_loss(pred: Tensor, target: TensorLike, reduction: str = "mean") -> Tensor:
    """(pred - target)**2, reduced."""
    diff = pred - target
    return _reduced(diff * diff, reduction)


def huber_loss(pred: Tensor, target: TensorLike, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """0.5 d**2 where |d| <= delta, else delta * (|d| - 0.5 delta), with d = pred - target."""
    diff = pred - target
    magnitude = abs(diff)
    return _reduced(where(magnitude <= delta, 0.5 * diff * diff, delta * (magnitude - 0.5 * delta)), reduction)


def nll_loss(log_probs: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """-log_probs[i, labels[i]] for log-probabilities (N, C) and integer labels (N,), reduced."""
    picked = sum(one_hot(labels, int(log_probs.shape[-1]), log_probs.dtype) * log_probs, -1)
    return _reduced(-picked, reduction)


def bce_with_logits(logits: Tensor, targets: TensorLike, reduction: str = "mean") -> Tensor:
    """Binary cross entropy of sigmoid(logits) against targets in [0, 1], computed stably as
    max(z, 0) - z * t + log(1 + exp(-|z|)) (no exp of a large positive number)."""
    return _reduced(relu(logits) - logits * targets + log1p(exp(-abs(logits))), reduction)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: TensorLike | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(q k^T * scale + mask) v over (..., L, E) queries and (..., S, E) keys and values;
    scale defaults to 1 / sqrt(E). `mask` is added (float) or keeps where true (bool); `causal`
    keeps key j <= query i (aligned at the start). The row maximum is subtracted by softmax."""
    scale = 1.0 / float(np.sqrt(int(q.shape[-1]))) if scale is None else scale
    scores = matmul(q, transpose(k, (*range(k.ndim - 2), k.ndim - 1, k.ndim - 2))) * scale
    lowest = float(np.finfo(scores.dtype).min)
    if mask is not None:
        keep = isinstance(mask, Tensor) and mask.dtype == "bool"
        scores = where(mask, scores, lowest) if keep else scores + mask
    if causal:
        rows, cols = int(scores.shape[-2]), int(scores.shape[-1])
        allowed = constant(np.tril(np.ones((rows, cols), bool)), graph=scores.graph)
        scores = where(allowed, scores, lowest)
    return matmul(softmax(scores, -1), v)


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
