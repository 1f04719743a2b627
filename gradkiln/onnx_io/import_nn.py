"""Import rules for ONNX normalizations, losses, composite reductions and tensor splitting,
composed from gradkiln's ops by the formulas of the ONNX definitions."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Callable, Sequence

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .importer import ImportContext, OnnxNode, Operand, register_importer
from .shape_rules import ramp, reduction

Axes = Sequence[int] | None


COMPOSITE_REDUCTIONS: dict[str, Callable[[Tensor, Axes, bool], Tensor]] = {
    "ReduceL1": lambda x, axes, keepdims: gb.sum(gb.abs(x), axes, keepdims),
    "ReduceL2": lambda x, axes, keepdims: gb.sqrt(gb.sum(gb.mul(x, x), axes, keepdims)),
    "ReduceSumSquare": lambda x, axes, keepdims: gb.sum(gb.mul(x, x), axes, keepdims),
    "ReduceLogSum": lambda x, axes, keepdims: gb.log(gb.sum(x, axes, keepdims)),
}
for _op_type, _reduce in COMPOSITE_REDUCTIONS.items():
    register_importer(_op_type)(reduction(_reduce))


def _per_channel(p: Tensor, rank: int) -> Tensor:
    """A per-channel (axis 1) parameter shaped to broadcast against an NC... tensor."""
    return gb.reshape(p, (-1,) + (1,) * (rank - 2))


def _normalized(x: Tensor, axes: Sequence[int], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) / sqrt(var + eps) over `axes`, with the mean and 1 / sqrt(var + eps)."""
    mean = gb.mean(x, axes, keepdims=True)
    diff = gb.sub(x, mean)
    inv_std = gb.div(1.0, gb.sqrt(gb.add(gb.mean(gb.mul(diff, diff), axes, keepdims=True), eps)))
    return gb.mul(diff, inv_std), mean, inv_std


@register_importer("LayerNormalization")
def _layer_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    axis = normalize_axis(n.attrs.get("axis", -1), x.ndim)
    y, mean, inv_std = _normalized(x, range(axis, x.ndim), n.attrs.get("epsilon", 1e-5))
    y = gb.mul(y, ctx.tensor(args[1]))
    y = gb.add(y, ctx.tensor(args[2])) if len(args) > 2 and args[2] is not None else y
    return (y, mean, inv_std)[: n.num_outputs]


@register_importer("RMSNormalization")
def _rms_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    axes = range(normalize_axis(n.attrs.get("axis", -1), x.ndim), x.ndim)
    rms = gb.sqrt(gb.add(gb.mean(gb.mul(x, x), axes, keepdims=True), n.attrs.get("epsilon", 1e-5)))
    return gb.mul(gb.mul(x, gb.div(1.0, rms)), ctx.tensor(args[1]))


@register_importer("BatchNormalization")
def _batch_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Inference form with the running statistics; in training mode the batch statistics,
    with the updated running mean and variance as further outputs."""
    x, scale, bias, mean, var = (ctx.tensor(a) for a in args[:5])
    eps, rank = n.attrs.get("epsilon", 1e-5), x.ndim
    training = n.attrs.get("training_mode", 0) or (n.opset < 14 and n.num_outputs > 1)
    if not training:
        y = gb.div(gb.sub(x, _per_channel(mean, rank)), gb.sqrt(gb.add(_per_channel(var, rank), eps)))
        return gb.add(gb.mul(_per_channel(scale, rank), y), _per_channel(bias, rank))
    axes = [0, *range(2, rank)]
    batch_mean = gb.mean(x, axes)
    diff = gb.sub(x, _per_channel(batch_mean, rank))
    batch_var = gb.mean(gb.mul(diff, diff), axes)
    y = gb.div(diff, gb.sqrt(gb.add(_per_channel(batch_var, rank), eps)))
    y = gb.add(gb.mul(_per_channel(scale, rank), y), _per_channel(bias, rank))
    momentum = n.attrs.get("momentum", 0.9)
    running = [gb.add(gb.mul(r, momentum), gb.mul(b, 1 - momentum)) for r, b in ((mean, batch_mean), (var, batch_var))]
    return (y, *running)[: n.num_outputs]


@register_importer("InstanceNormalization")
def _instance_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    y, _, _ = _normalized(x, range(2, x.ndim), n.attrs.get("epsilon", 1e-5))
    scale, bias = (_per_channel(ctx.tensor(a), x.ndim) for a in args[1:3])
    return gb.add(gb.mul(y, scale), bias)


@register_importer("MeanVarianceNormalization")
def _mean_variance_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """(x - mean) / (sqrt(mean(x**2) - mean**2) + 1e-9), as the ONNX definition computes it."""
    x = ctx.tensor(args[0])
    axes = [normalize_axis(a, x.ndim) for a in n.attrs.get("axes", [0, 2, 3])]
    mean = gb.mean(x, axes, keepdims=True)
    std = gb.sqrt(gb.sub(gb.mean(gb.mul(x, x), axes, keepdims=True), gb.mul(mean, mean)))
    return gb.div(gb.sub(x, mean), gb.add(std, 1e-9))


@register_importer("LpNormalization")
def _lp_norm(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, p = ctx.tensor(args[0]), n.attrs.get("p", 2)
    axis = normalize_axis(n.attrs.get("axis", -1), x.ndim)
    if p not in (1, 2):
        raise ONNXError(f"only p = 1 and p = 2 are supported, got p = {p}")
    norm = gb.sum(gb.abs(x), axis, True) if p == 1 else gb.sqrt(gb.sum(gb.mul(x, x), axis, True))
    return gb.where(gb.equal(norm, 0.0), 0.0, gb.div(x, norm))


@register_importer("LRN")
def _lrn(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """x / (bias + alpha / size * s) ** beta, s the sum of squares over the `size` channels around
    each one (floor((size - 1) / 2) before, ceil((size - 1) / 2) after, clipped at the edges): the
    squares zero-padded along the channels and summed over `size` shifted slices."""
    x, size = ctx.tensor(args[0]), int(n.attrs["size"])
    if x.ndim < 3 or size < 1:
        raise ONNXError(f"LRN needs an (N, C, ...) input and a positive size, got shape {x.shape} and size {size}")
    before, after = (size - 1) // 2, size // 2
    zeros = [0] * x.ndim
    padded = gb.pad(gb.square(x), [0, before, *zeros[2:]], [0, after, *zeros[2:]])
    window = [gb.slice(padded, [0, i, *zeros[2:]], [x.shape[0], i + x.shape[1], *x.shape[2:]]) for i in range(size)]
    total = window[0]
    for part in window[1:]:
        total = gb.add(total, part)
    scale = gb.add(gb.mul(total, n.attrs.get("alpha", 1e-4) / size), n.attrs.get("bias", 1.0))
    return gb.div(x, gb.pow(scale, n.attrs.get("beta", 0.75)))


def _nll(scores: Tensor, target: Tensor, weight: Tensor | None, n: OnnxNode) -> Tensor:
    """-scores[n, target[n, ...], ...] weighted by weight[target], picked with a one-hot mask
    (exact: one product per position is non-zero); ignored targets (often -100) weigh 0 and read a
    zero row (one_hot's mode "fill"); without ignore_index an out-of-range target raises."""
    rank = scores.ndim
    mode = "fill" if "ignore_index" in n.attrs else "raise"
    hot = gb.one_hot(target, int(scores.shape[1]), scores.dtype, mode)  # (N, d..., C)
    hot = gb.transpose(hot, (0, rank - 1, *range(1, rank - 1)))  # (N, C, d...)
    loss = gb.neg(gb.sum(gb.mul(scores, hot), 1))
    weights = gb.sum(gb.mul(hot, _per_channel(weight, rank)), 1) if weight is not None else None
    if "ignore_index" in n.attrs:
        kept = gb.not_equal(target, gb.constant(n.attrs["ignore_index"], target.dtype, graph=target.graph))
        weights = gb.where(kept, weights if weights is not None else 1.0, 0.0)
        weights = gb.cast(weights, scores.dtype)
    loss = gb.mul(loss, weights) if weights is not None else loss
    reduction_ = n.attrs.get("reduction", "mean")
    if reduction_ == "none":
        return loss
    if reduction_ == "sum" or weights is None:
        return gb.sum(loss) if reduction_ == "sum" else gb.mean(loss)
    return gb.div(gb.sum(loss), gb.sum(weights))


@register_importer("NegativeLogLikelihoodLoss")
def _negative_log_likelihood(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    weight = ctx.tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    return _nll(ctx.tensor(args[0]), ctx.tensor(args[1]), weight, n)


@register_importer("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    log_prob = gb.log_softmax(ctx.tensor(args[0]), 1)
    weight = ctx.tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    return (_nll(log_prob, ctx.tensor(args[1]), weight, n), log_prob)[: n.num_outputs]


@register_importer("Split")
def _split(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Sizes from the `split` attribute or input; else equal parts (the last one smaller)."""
    x = ctx.tensor(args[0])
    axis = normalize_axis(n.attrs.get("axis", 0), x.ndim)
    dim = x.shape[axis]
    sizes = n.attrs.get("split") if n.opset < 13 else ctx.optional(args, 1, "split", None, dims=True)
    if sizes is None:
        parts = n.attrs.get("num_outputs", n.num_outputs)
        chunk = math.ceil(int(dim) / parts)
        sizes = [min(chunk, int(dim) - i * chunk) for i in range(parts)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    outs = []
    for start, stop in pairwise(offsets):
        starts = [start if i == axis else 0 for i in range(x.ndim)]
        stops = [stop if i == axis else d for i, d in enumerate(x.shape)]
        outs.append(gb.slice(x, starts, stops))
    return outs


@register_importer("Tile")
def _tile(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Give each axis a leading axis of its repeat count, broadcast, and merge the pairs."""
    x, repeats = ctx.tensor(args[0]), ctx.dims(args[1], "repeats")
    spread = gb.reshape(x, [d for dim in x.shape for d in (1, dim)])
    tiled = gb.broadcast_to(spread, [d for r, dim in zip(repeats, x.shape) for d in (r, dim)])
    return gb.reshape(tiled, [r * dim for r, dim in zip(repeats, x.shape)])


@register_importer("Trilu")
def _trilu(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Keeps the elements on and above (upper) or below (lower) diagonal k: a constant mask for
    static dims; for symbolic ones (a causal mask over the sequence length) the column index minus
    the row index, compared with k at run time."""
    x = ctx.tensor(args[0])
    k = int(ctx.optional(args, 1, "k", 0))
    if x.ndim < 2:
        raise ONNXError(f"Trilu needs an input of rank 2 or more, got shape {x.shape}")
    rows, cols = x.shape[-2:]
    upper = n.attrs.get("upper", 1)
    if isinstance(rows, int) and isinstance(cols, int):
        ctx.budget.value((rows, cols), "Trilu's mask")
        keep = gb.constant((np.triu if upper else np.tril)(np.ones((rows, cols), bool), k), graph=x.graph)
    else:
        offset = gb.sub(ramp(x.graph, cols), gb.reshape(ramp(x.graph, rows), (rows, 1)))
        keep = (gb.greater_equal if upper else gb.less_equal)(offset, k)
    return gb.where(keep, x, gb.constant(0, x.dtype, graph=x.graph))


@register_importer("Dropout")
def _dropout(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Inference: the identity and an all-true mask; training with a non-zero ratio is random."""
    x = ctx.tensor(args[0])
    ratio = float(ctx.optional(args, 1, "ratio", n.attrs.get("ratio", 0.5)))
    training = bool(ctx.optional(args, 2, "training_mode", False)) or not n.attrs.get("is_test", 1)
    if training and ratio:
        raise ONNXError("Dropout in training mode draws random masks; gradkiln imports inference graphs")
    mask = gb.broadcast_to(gb.constant(True, "bool" if n.opset >= 10 else x.dtype, graph=x.graph), x.shape)
    return (x, mask)[: n.num_outputs]


def _global_pool(reduce: Callable[..., Tensor]) -> Callable[[ImportContext, OnnxNode, list[Operand]], Operand]:
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        x = ctx.tensor(args[0])
        return reduce(x, list(range(2, x.ndim)), keepdims=True)

    return rule


register_importer("GlobalAveragePool")(_global_pool(gb.mean))
register_importer("GlobalMaxPool")(_global_pool(gb.max))


@register_importer("Einsum")
def _einsum(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """The einsum op, which takes ONNX's equations as numpy does ("...", implicit output, diagonals)."""
    return gb.einsum(n.attrs["equation"], *(ctx.tensor(a) for a in args))


@register_importer("Det")
def _det(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return gb.det(ctx.tensor(args[0]))
