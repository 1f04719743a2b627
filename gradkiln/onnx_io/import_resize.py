"""Import rules of ONNX Resize (opsets 10 to 19) and the older Upsample (7, 9) onto `gk.resize`, and
of GridSample (16, 20) as a gather and weighted sum.

scales, sizes and roi must be known at import time (constants or shape arithmetic); an empty
tensor stands for an absent one. Resize-10 and Upsample have no coordinate or rounding
attributes; their nearest and linear modes read x at y / scale (coordinate mode "asymmetric",
nearest rounding down, which is Upsample's np.repeat for integer scales). For nearest downsampling
their rounding is left unspecified (onnxruntime rounds up there), so that is refused rather than
guessed. Resize-11's "tf_half_pixel_for_nn" has no counterpart in Resize-19 and is refused too.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.types import shape_size
from .importer import ImportContext, OnnxNode, Operand, register_importer

_LEGACY = {"nearest": "nearest", "linear": "linear", "bilinear": "linear"}


def _given(ctx: ImportContext, args: list[Operand], i: int, what: str) -> np.ndarray | None:
    """Optional input `i`'s known value, None when absent or empty."""
    value = ctx.optional(args, i, what, None)
    return None if value is None or np.asarray(value).size == 0 else np.asarray(value).reshape(-1)


def _legacy(ctx: ImportContext, n: OnnxNode, x: Operand, scales: np.ndarray) -> Operand:
    """Upsample and Resize-10: floor(size * scale) by x[y / scale]."""
    x = ctx.tensor(x)
    mode = n.attrs.get("mode", "nearest")
    if mode not in _LEGACY:
        raise ONNXError(f"mode {mode!r} is not 'nearest' or 'linear'")
    if mode == "nearest" and any(s < 1 for s in scales):
        raise ONNXError(
            f"nearest downsampling (scales {scales.tolist()}) rounds as the runtime decides before opset 11; "
            "re-export the model with opset 11 or later (Resize with a nearest_mode)"
        )
    return gb.resize(
        x, scales=scales.tolist(), mode=_LEGACY[mode], coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    )


@register_importer("Upsample")
def _upsample(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    scales = np.asarray(n.attrs["scales"]) if n.opset < 9 else _given(ctx, args, 1, "scales")
    if scales is None:
        raise ONNXError("the scales are missing")
    return _legacy(ctx, n, args[0], scales)


@register_importer("Resize")
def _resize(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    if n.opset < 11:
        return _legacy(ctx, n, args[0], _given(ctx, args, 1, "scales"))
    a = n.attrs
    coordinates = a.get("coordinate_transformation_mode", "half_pixel")
    if coordinates == "tf_half_pixel_for_nn":
        raise ONNXError("coordinate_transformation_mode 'tf_half_pixel_for_nn' (Resize-11) is not supported")
    roi, scales = (_given(ctx, args, i, what) for i, what in ((1, "roi"), (2, "scales")))
    sizes = ctx.optional(args, 3, "sizes", None, dims=True) or None  # ints, or symbolic dims left unchanged
    return gb.resize(
        ctx.tensor(args[0]),
        sizes=sizes,
        scales=None if scales is None else scales.tolist(),
        mode=a.get("mode", "nearest"),
        coordinate_transformation_mode=coordinates,
        nearest_mode=a.get("nearest_mode", "round_prefer_floor"),
        cubic_coeff_a=a.get("cubic_coeff_a", -0.75),
        exclude_outside=bool(a.get("exclude_outside", 0)),
        extrapolation_value=a.get("extrapolation_value", 0.0),
        antialias=bool(a.get("antialias", 0)),
        axes=a.get("axes"),
        roi=None if roi is None else roi.tolist(),
        keep_aspect_ratio_policy=a.get("keep_aspect_ratio_policy", "stretch"),
    )


_GRID_MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}
_CUBIC_A = -0.75  # the cubic convolution coefficient GridSample (and PyTorch's grid_sample) uses


@register_importer("GridSample")
def _grid_sample(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """x (N, C, D1..Dk) sampled at grid (N, O1..Om, k) (normalized coordinates in [-1, 1], the
    last axis listing the spatial axes last to first), as onnx's reference does it: per spatial
    axis, the coordinate unnormalized, rounded (nearest), clamped or reflected into range (border,
    reflection), then taps with weights (1, 2 or 4: nearest, linear, cubic) whose pixels are fetched
    with the padding mode; the taps of all axes are one gather from the flattened spatial axes and a
    weighted sum. The spatial dims of x must be static. Differentiable in x and the grid."""
    x, grid = ctx.tensor(args[0]), ctx.tensor(args[1])
    mode = _GRID_MODES.get(n.attrs.get("mode", "linear" if n.opset >= 20 else "bilinear"))
    padding = n.attrs.get("padding_mode", "zeros")
    if mode is None or padding not in ("zeros", "border", "reflection"):
        raise ONNXError(f"unknown mode {n.attrs.get('mode')!r} or padding_mode {padding!r}")
    dims = x.shape[2:]
    if not all(isinstance(d, int) for d in dims) or grid.ndim < 2 or grid.shape[-1] != len(dims):
        raise ONNXError(
            f"GridSample needs an input with static spatial dims and a grid listing one coordinate per "
            f"spatial dim, got shapes {x.shape} and {grid.shape}"
        )
    align = bool(n.attrs.get("align_corners", 0))
    axes = [_grid_taps(grid[..., len(dims) - 1 - j], size, mode, padding, align) for j, size in enumerate(dims)]
    return _gather_taps(x, axes, grid.shape[1:-1], padding == "zeros")


def _grid_taps(g: Tensor, size: int, mode: str, padding: str, align: bool) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(index, weight, in range) of each tap along one spatial axis of `size` elements. Logic is
    `where` (a and b as where(a, b, False)): a bool bitwise_and exports as ONNX And, which imports
    back as a where, so import -> export -> import would change the exported ops."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    c = gb.mul(gb.add(g, 1.0), (size - 1) / 2) if align else gb.div(gb.sub(gb.mul(gb.add(g, 1.0), size), 1.0), 2.0)
    c = gb.round(c) if mode == "nearest" else c
    if padding == "border":
        clamped = gb.clip(c, 0.0, size - 1.0)  # only outside [lo, hi], which is wider without align_corners
        c = gb.where(gb.less(c, lo), clamped, gb.where(gb.greater(c, hi), clamped, c))
    elif padding == "reflection":
        c = _reflect(c, lo, hi)
    base = c if mode == "nearest" else gb.floor(c)
    t = gb.sub(c, base)
    offsets, weights = {"nearest": ([0], [1.0]), "linear": ([0, 1], [gb.sub(1.0, t), t])}.get(mode) or (
        [-1, 0, 1, 2],
        _cubic_weights(t),
    )
    taps = []
    for offset, weight in zip(offsets, weights):
        i = gb.add(base, float(offset)) if offset else base
        inside = gb.where(gb.greater_equal(i, 0.0), gb.less_equal(i, size - 1.0), False)
        if padding == "reflection":
            i = gb.floor(gb.maximum(_reflect(i, lo, hi), 0.0))  # int() of a value >= -0.5
        index = gb.cast(gb.clip(i, 0.0, size - 1.0), "int64")
        taps.append((index, weight if isinstance(weight, Tensor) else gb.full(g.shape, weight, g.dtype), inside))
    return taps


def _reflect(c: Tensor, lo: float, hi: float) -> Tensor:
    """c reflected by the borders lo and hi until within them (onnx's reference `_gs_reflect`)."""
    span = hi - lo
    if span == 0:
        return gb.full(c.shape, lo, c.dtype)
    below, above = gb.sub(lo, c), gb.sub(c, hi)
    folds_below, folds_above = gb.floor(gb.div(below, span)), gb.floor(gb.div(above, span))
    rest_below, rest_above = gb.sub(below, gb.mul(folds_below, span)), gb.sub(above, gb.mul(folds_above, span))
    even_below, even_above = (gb.equal(gb.mod(f, 2.0), 0.0) for f in (folds_below, folds_above))
    from_below = gb.where(even_below, gb.add(rest_below, lo), gb.sub(hi, rest_below))
    from_above = gb.where(even_above, gb.sub(hi, rest_above), gb.add(rest_above, lo))
    return gb.where(gb.less(c, lo), from_below, gb.where(gb.greater(c, hi), from_above, c))


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction t in [0, 1)."""
    a = _CUBIC_A

    def near(d: Tensor) -> Tensor:  # |d| <= 1
        return gb.add(gb.mul(gb.mul(gb.sub(gb.mul(d, a + 2), a + 3), d), d), 1.0)

    def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
        return gb.sub(gb.mul(gb.add(gb.mul(gb.sub(gb.mul(d, a), 5 * a), d), 8 * a), d), 4 * a)

    return [far(gb.add(t, 1.0)), near(t), near(gb.sub(1.0, t)), far(gb.sub(2.0, t))]


def _gather_taps(x: Tensor, axes: list[list[tuple[Tensor, Tensor, Tensor]]], out: tuple, zeros: bool) -> Tensor:
    """sum over the tap combinations of weight * x[index] (0 where a tap is out of range and the
    padding is zeros): one gather from x with its spatial axes flattened."""
    dims = x.shape[2:]
    strides = [math.prod(dims[j + 1 :]) for j in range(len(dims))]
    batch, channels, count = x.shape[0], x.shape[1], shape_size(out)
    indices, weights, inside = [], [], []
    for combo in itertools.product(*axes):
        flat = combo[0][0] if strides[0] == 1 else gb.mul(combo[0][0], strides[0])
        weight, within = combo[0][1], combo[0][2]
        for (index, w, ok), stride in zip(combo[1:], strides[1:]):
            flat = gb.add(flat, index if stride == 1 else gb.mul(index, stride))
            weight, within = gb.mul(weight, w), gb.where(within, ok, False)
        indices.append(gb.reshape(flat, (batch, count)))
        weights.append(gb.reshape(weight, (batch, count)))
        inside.append(gb.reshape(within, (batch, count)))
    taps = len(indices)
    index = gb.reshape(gb.stack(indices, 1), (batch, 1, taps * count))
    picked = gb.gather_elements(
        gb.reshape(x, (batch, channels, math.prod(dims))), gb.broadcast_to(index, (batch, channels, taps * count)), 2
    )
    picked = gb.reshape(picked, (batch, channels, taps, count))
    if zeros:
        picked = gb.where(gb.expand_dims(gb.stack(inside, 1), 1), picked, gb.constant(0, x.dtype, graph=x.graph))
    weight = gb.cast(gb.expand_dims(gb.stack(weights, 1), 1), x.dtype)
    return gb.reshape(gb.sum(gb.mul(picked, weight), 2), (batch, channels, *out))
