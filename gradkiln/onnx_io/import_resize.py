"""Import rules of ONNX Resize (opsets 10 to 19) and the older Upsample (7, 9) onto `gk.resize`.

scales, sizes and roi must be known at import time (constants or shape arithmetic); an empty
tensor stands for an absent one. Resize-10 and Upsample have no coordinate or rounding
attributes; their nearest and linear modes read x at y / scale (coordinate mode "asymmetric",
nearest rounding down, which is Upsample's np.repeat for integer scales). For nearest downsampling
their rounding is left unspecified (onnxruntime rounds up there), so that is refused rather than
guessed. Resize-11's "tf_half_pixel_for_nn" has no counterpart in Resize-19 and is refused too.
"""

from __future__ import annotations

import numpy as np

from ..graph import ONNXError
from ..graph import builder as gb
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
