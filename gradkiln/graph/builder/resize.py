"""`gk.resize`: ONNX Resize-19 (what F.interpolate and nn.Upsample export to) as one `resize` node.

The arguments are ONNX's: `sizes` or `scales` per axis of `axes` (default every axis), `roi` as
[starts..., ends...] for "tf_crop_and_resize", `keep_aspect_ratio_policy` for `sizes`. They are
resolved here as onnx's reference does (sizes from scales by floor, scales from sizes by division,
a common scale under "not_larger"/"not_smaller"), and axes left unchanged are dropped, so the node
holds one static size, scale and roi per resized axis. Symbolic dims pass through when not resized.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from ..ops.resize import check_modes
from ..tensor import Tensor
from ..types import Dim, dims_equal, normalize_axis
from .core import emit


def resize(
    x: Tensor,
    sizes: Sequence[Dim] | None = None,
    scales: Sequence[float] | None = None,
    mode: str = "nearest",
    coordinate_transformation_mode: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
    cubic_coeff_a: float = -0.75,
    exclude_outside: bool = False,
    extrapolation_value: float = 0.0,
    antialias: bool = False,
    axes: Sequence[int] | None = None,
    roi: Sequence[float] | None = None,
    keep_aspect_ratio_policy: str = "stretch",
) -> Tensor:
    """x resized along `axes` to `sizes` (or by `scales`) by "nearest", "linear" or "cubic" interpolation,
    exactly as ONNX Resize-19 (the attributes have ONNX's names and defaults). F.interpolate's modes:
    nearest = ("nearest", "asymmetric", nearest_mode "floor"); bilinear/bicubic = ("linear"/"cubic",
    "pytorch_half_pixel" or "align_corners", cubic_coeff_a -0.75)."""
    attrs = {
        "mode": mode,
        "coordinate_transformation_mode": coordinate_transformation_mode,
        "nearest_mode": nearest_mode,
        "cubic_coeff_a": float(cubic_coeff_a),
        "exclude_outside": bool(exclude_outside),
        "extrapolation_value": float(extrapolation_value),
        "antialias": bool(antialias),
    }
    check_modes(attrs, "resize")
    axes = tuple(range(x.ndim)) if axes is None else tuple(normalize_axis(a, x.ndim) for a in axes)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"resize: axes {axes} repeat an axis")
    wanted = _resolved(x, axes, sizes, scales, keep_aspect_ratio_policy)
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    rois = _rois(axes, roi) if crop else [None] * len(axes)
    kept = [
        (axis, size, scale, r)
        for axis, (size, scale), r in zip(axes, wanted, rois)
        if not (math.isclose(scale, 1.0) and size == x.shape[axis] and (r is None or _trivial(r)))
    ]
    if not kept:
        return x
    axes_, sizes_, scales_, rois_ = zip(*kept)
    return emit("resize", x, axes=axes_, sizes=sizes_, scales=scales_, rois=rois_ if crop else (), **attrs)


def _static(x: Tensor, axis: int) -> int:
    dim = x.shape[axis]
    if not isinstance(dim, int):
        raise ShapeError(f"resize: axis {axis} of {x.shape} is symbolic ({dim}); only static axes can be resized")
    return dim


def _resolved(
    x: Tensor, axes: tuple[int, ...], sizes: Sequence[Dim] | None, scales: Sequence[float] | None, policy: str
) -> list[tuple[Dim, float]]:
    """(size, scale) per axis, as the ONNX reference computes them. A symbolic axis given scale 1 or its
    own size is left alone."""
    if (sizes is None) == (scales is None):
        raise ShapeError("resize: give exactly one of sizes and scales")
    if sizes is not None:
        sizes = [int(s) if isinstance(s, numbers.Integral) else s for s in sizes]
    given = list(sizes if sizes is not None else scales)
    if len(given) != len(axes):
        raise ShapeError(f"resize: {len(given)} sizes or scales for {len(axes)} axes {axes}")
    unchanged = [dims_equal(g, x.shape[a]) if sizes is not None else g == 1 for a, g in zip(axes, given)]
    if scales is not None:
        if any(not float(s) > 0 for s in scales):
            raise ShapeError(f"resize: scales {list(scales)} must be > 0")
        single = [float(np.float32(s)) for s in scales]  # ONNX scales are float32: ties fall where they do there
        return [
            (x.shape[a], 1.0) if same else (int(s * _static(x, a)), s) for a, s, same in zip(axes, single, unchanged)
        ]
    if any(not isinstance(s, int) or s < 0 for s, same in zip(sizes, unchanged) if not same):
        raise ShapeError(f"resize: sizes {list(sizes)} must be ints >= 0")
    ratios = [1.0 if same else s / _static(x, a) for a, s, same in zip(axes, sizes, unchanged)]
    if policy == "stretch":
        return list(zip(sizes, ratios))
    if policy not in ("not_larger", "not_smaller"):
        raise ShapeError(f"resize: keep_aspect_ratio_policy {policy!r} is not 'stretch', 'not_larger' or 'not_smaller'")
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    return [(int(scale * _static(x, a) + 0.5), scale) for a in axes]


def _rois(axes: tuple[int, ...], roi: Sequence[float] | None) -> list[tuple[float, float]]:
    if roi is None or len(roi) != 2 * len(axes):
        raise ShapeError(
            f"resize: tf_crop_and_resize needs roi = [starts..., ends...], 2 per axis of {axes}; got {roi}"
        )
    n = len(axes)
    single = [float(np.float32(r)) for r in roi]  # float32, as ONNX's roi
    return [(single[i], single[n + i]) for i in range(n)]


def _trivial(roi: tuple[float, float]) -> bool:
    return math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0)
