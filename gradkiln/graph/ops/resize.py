"""resize (ONNX Resize-19: nearest, linear and cubic interpolation, any rank) and its transpose resize_grad.

Interpolation is separable: each resized axis is one gather-and-weighted-sum with a table made at
build time from the static sizes, `out[..., j, ...] = sum_k weights[j, k] * x[..., indices[j, k], ...]`
(the formulas of onnx's reference `onnx/reference/ops/op_resize.py`: source coordinate per
`coordinate_transformation_mode`, neighbours clamped to the edge, `exclude_outside` renormalising,
antialias widening the kernel by 1 / scale when downsampling). Every backend runs the same tables,
so they agree by construction with the reference. Nearest keeps one tap of weight 1 (a pure gather,
no `0 * inf`). "tf_crop_and_resize" sets the positions whose source lies outside the input to
`extrapolation_value`, one axis after the other, as the reference does.

The op is linear in x up to that constant, so its vjp is the transpose of the tables (scatter-add of
the weights: `resize_grad`, extrapolated positions give no gradient) and its jvp resizes the tangent
with `extrapolation_value` 0. Node attributes hold only the resized axes, with one size, scale and
(for tf_crop_and_resize) roi pair each; `gk.resize` turns the ONNX arguments into them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType
from .common import require_float

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


class AxisTable(NamedTuple):
    """One resized axis: out[j] = sum_k weights[j, k] * x[indices[j, k]] (indices in range), and where
    `outside[j]` (tf_crop_and_resize only, else None) the extrapolation value instead."""

    axis: int
    indices: np.ndarray
    weights: np.ndarray
    outside: np.ndarray | None


def _source(
    y: np.ndarray, n_in: int, n_out: int, scale: float, roi: tuple[float, float] | None, mode: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The input coordinate of each output position y, and the extrapolated mask (tf_crop_and_resize)."""
    width = scale * n_in  # the reference's float output width
    if mode == "align_corners":
        return (np.zeros_like(y) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if mode == "asymmetric":
        return y / scale, None
    if mode == "tf_crop_and_resize":
        start, end = roi
        span = float(np.float32(end) - np.float32(start))  # in float32, as the reference subtracts its roi
        x = np.full_like(y, span * (n_in - 1) / 2) if width == 1 else y * span * (n_in - 1) / (width - 1)
        x = x + start * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    if mode == "pytorch_half_pixel":
        return (np.full_like(y, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    offset = n_in / 2 * (1 - n_out / width) if mode == "half_pixel_symmetric" else 0.0
    return offset + (y + 0.5) / scale - 0.5, None


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter a."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _coefficients(ratio: np.ndarray, scale: float, attrs: dict) -> np.ndarray:
    """The (out, taps) weights at each fractional position `ratio` in (0, 1] (1 at integers)."""
    mode, r = attrs["mode"], ratio[:, None]
    if mode == "nearest":
        # r is in (0, 1], 1 where the source is an integer (which then reads itself: the right tap)
        rounding = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5, "floor": r > 1, "ceil": r > 0}
        right = rounding[attrs["nearest_mode"]] | (r == 1)
        return np.concatenate([~right, right], axis=1).astype(np.float64)
    if mode == "linear" and not attrs["antialias"]:
        return np.concatenate([1 - r, r], axis=1)
    s = min(scale, 1.0) if attrs["antialias"] else 1.0  # antialias widens the kernel when downsampling
    start = int(np.floor(-(2 if mode == "cubic" else 1) / s) + 1)
    t = s * (np.arange(start, 2 - start) - r)
    w = _cubic(t, attrs["cubic_coeff_a"]) if mode == "cubic" else np.clip(1 - np.abs(t), 0, 1)
    return w / w.sum(axis=1, keepdims=True) if attrs["antialias"] else w


def _neighbours(x: np.ndarray, taps: int) -> np.ndarray:
    """The `taps` indices nearest to each coordinate x, unclamped. taps is even (2 - 2 * start), so the
    window is centred on a half-integer; at an integer x the tie goes to the lower window, as in the
    reference: (x - taps/2, ..., x + taps/2 - 1)."""
    floor = np.floor(x).astype(np.int64)
    start = floor - taps // 2 + np.where(x == floor, 0, 1)
    return start[:, None] + np.arange(taps)[None, :]


def axis_table(
    axis: int, n_in: int, n_out: int, scale: float, roi: tuple[float, float] | None, attrs: dict
) -> AxisTable:
    """The gather indices and weights resizing one axis from n_in to n_out."""
    if n_out == 0:  # nothing to read (and the scale may be 0)
        return AxisTable(axis, np.zeros((0, 1), np.int64), np.zeros((0, 1)), None)
    y = np.arange(n_out, dtype=np.float64)
    x, outside = _source(y, n_in, n_out, scale, roi, attrs["coordinate_transformation_mode"])
    ratio = np.where(x == np.floor(x), 1.0, x - np.floor(x))
    weights = _coefficients(ratio, scale, attrs)
    indices = _neighbours(x, weights.shape[1])
    if attrs["exclude_outside"]:
        weights = np.where((indices < 0) | (indices >= n_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    indices = np.clip(indices, 0, n_in - 1)
    if attrs["mode"] == "nearest":
        chosen = np.argmax(weights, axis=1)[:, None]
        # one tap; its weight is 1, or 0 where exclude_outside dropped it (the reference then gives 0)
        indices, weights = np.take_along_axis(indices, chosen, 1), np.take_along_axis(weights, chosen, 1)
    return AxisTable(axis, indices, weights, outside if outside is not None and outside.any() else None)


def tables(in_shape: tuple, attrs: dict) -> list[AxisTable]:
    """One table per resized axis of an input of shape `in_shape` (static on those axes)."""
    rois = attrs["rois"] or (None,) * len(attrs["axes"])
    return [
        axis_table(axis, in_shape[axis], size, scale, roi, attrs)
        for axis, size, scale, roi in zip(attrs["axes"], attrs["sizes"], attrs["scales"], rois)
    ]


def transpose_table(table: AxisTable, n_in: int) -> AxisTable:
    """The table of the transpose: for each input position, the output positions that read it and
    their weights, padded with weight 0 (extrapolated positions read nothing)."""
    weights = table.weights if table.outside is None else np.where(table.outside[:, None], 0.0, table.weights)
    rows = np.repeat(np.arange(len(weights)), weights.shape[1])
    cols, w = table.indices.reshape(-1), weights.reshape(-1)
    keep = w != 0
    rows, cols, w = rows[keep], cols[keep], w[keep]
    order = np.argsort(cols, kind="stable")
    rows, cols, w = rows[order], cols[order], w[order]
    counts = np.bincount(cols, minlength=n_in)
    slot = np.arange(len(cols)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = max(int(counts.max(initial=0)), 1)
    indices, out_w = np.zeros((n_in, width), np.int64), np.zeros((n_in, width))
    indices[cols, slot], out_w[cols, slot] = rows, w
    return AxisTable(table.axis, indices, out_w, None)


def gather_sum(x: np.ndarray, table: AxisTable, fill: float) -> np.ndarray:
    """One axis of a resize: gather along the axis by the table, weight and sum the taps."""
    axis = table.axis
    gathered = np.take(x, table.indices, axis=axis)
    shape = (1,) * axis + table.weights.shape + (1,) * (x.ndim - axis - 1)
    out = (gathered * table.weights.reshape(shape)).sum(axis=axis + 1)
    if table.outside is not None:
        out = np.where(table.outside.reshape(shape[: axis + 1] + shape[axis + 2 :]), fill, out)
    return out


def check_modes(attrs: dict, op: str) -> None:
    """The mode attributes must be ONNX's; antialias needs linear or cubic."""
    for name, allowed in (
        ("mode", MODES),
        ("coordinate_transformation_mode", COORDINATE_MODES),
        ("nearest_mode", NEAREST_MODES),
    ):
        if attrs[name] not in allowed:
            raise ShapeError(f"{op}: {name} {attrs[name]!r} is not one of {allowed}")
    if attrs["antialias"] and attrs["mode"] == "nearest":
        raise ShapeError(f"{op}: antialias needs mode 'linear' or 'cubic', not 'nearest'")


def _check(x: TensorType, attrs: dict, op: str) -> None:
    require_float(x)
    check_modes(attrs, op)
    axes, sizes, scales, rois = attrs["axes"], attrs["sizes"], attrs["scales"], attrs["rois"]
    if not len(axes) == len(sizes) == len(scales) or len(set(axes)) != len(axes) or not set(axes) <= set(range(x.rank)):
        raise ShapeError(
            f"{op}: axes {axes}, sizes {sizes}, scales {scales} must pair up, axes unique in [0, {x.rank})"
        )
    if (attrs["coordinate_transformation_mode"] == "tf_crop_and_resize") != bool(rois) or len(rois) not in (
        0,
        len(axes),
    ):
        raise ShapeError(f"{op}: rois {rois} must hold one (start, end) per axis for tf_crop_and_resize, and only then")
    for axis, size, scale in zip(axes, sizes, scales):
        if not isinstance(x.shape[axis], int) or x.shape[axis] < 1:
            raise ShapeError(f"{op}: resized axis {axis} of {x.shape} must have a static size >= 1")
        if not isinstance(size, int) or size < 0 or not (scale > 0 or size == 0):
            raise ShapeError(f"{op}: axis {axis}: size {size!r} must be an int >= 0 and scale {scale!r} > 0")


def _resize_infer(x: TensorType, **attrs) -> tuple[TensorType]:
    _check(x, attrs, "resize")
    shape = list(x.shape)
    for axis, size in zip(attrs["axes"], attrs["sizes"]):
        shape[axis] = size
    return (x.with_shape(shape),)


def _resize(x: np.ndarray, **attrs) -> np.ndarray:
    """In float64, cast back at the end (as the reference)."""
    out = x.astype(np.float64)
    for table in tables(x.shape, attrs):
        out = gather_sum(out, table, attrs["extrapolation_value"])
    return out.astype(x.dtype)


def _grad_infer(g: TensorType, input_sizes: tuple[int, ...], **attrs) -> tuple[TensorType]:
    shape = list(g.shape)
    for axis, size in zip(attrs["axes"], input_sizes):
        shape[axis] = size
    (out,) = _resize_infer(g.with_shape(shape), **attrs)
    if out.shape != g.shape:
        raise ShapeError(f"resize_grad: the cotangent {g.shape} is not the shape {out.shape} resize gives")
    return (g.with_shape(shape),)


def grad_tables(g_shape: tuple, input_sizes: tuple[int, ...], attrs: dict) -> list[AxisTable]:
    """The transposed tables of resize_grad, in the order to apply them (any order: they commute)."""
    in_shape = list(g_shape)
    for axis, size in zip(attrs["axes"], input_sizes):
        in_shape[axis] = size
    return [transpose_table(t, n) for t, n in zip(tables(tuple(in_shape), attrs), input_sizes)]


def _resize_grad(g: np.ndarray, input_sizes: tuple[int, ...], **attrs) -> np.ndarray:
    """The transpose as a scatter-add of each tap's weighted cotangent (np.add.at), independent of
    the transposed tables the compiled targets gather with."""
    in_shape = list(g.shape)
    for axis, size in zip(attrs["axes"], input_sizes):
        in_shape[axis] = size
    out = g.astype(np.float64)
    for table in reversed(tables(tuple(in_shape), attrs)):
        weights = table.weights if table.outside is None else np.where(table.outside[:, None], 0.0, table.weights)
        moved = np.moveaxis(out, table.axis, 0)
        summed = np.zeros((in_shape[table.axis],) + moved.shape[1:])
        for k in range(weights.shape[1]):
            np.add.at(summed, table.indices[:, k], weights[:, k].reshape((-1,) + (1,) * (moved.ndim - 1)) * moved)
        out = np.moveaxis(summed, 0, table.axis)
    return out.astype(g.dtype)


register_op(
    OpDef(
        "resize",
        _resize_infer,
        _resize,
        1,
        doc="x resized along `axes` to `sizes` by nearest, linear or cubic interpolation (ONNX Resize-19); attrs: "
        "axes, sizes, scales, rois, mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, "
        "exclude_outside, extrapolation_value, antialias. Build it with gk.resize.",
    )
)
register_op(
    OpDef(
        "resize_grad",
        _grad_infer,
        _resize_grad,
        1,
        doc="The transpose of resize (its vjp): the cotangent g scattered back to the input's shape with the "
        "interpolation weights; attrs: resize's and input_sizes (of the resized axes).",
    )
)
