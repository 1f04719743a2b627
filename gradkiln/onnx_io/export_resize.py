"""ONNX export of resize and resize_grad.

resize is a Resize node (opset 18+, with `axes`) when its scales say exactly what the node does:
each scale a float32 whose floor(scale * size) is the output size (ONNX's scales input), each
scale the output size over the input size (ONNX's sizes input), or a common scale one axis gives
that way, the other sizes rounded from it (sizes with keep_aspect_ratio_policy "not_smaller"). Otherwise
(half_pixel_symmetric below opset 19, a scale no sizes or float32 scales reproduce) and for
resize_grad, which ONNX has no op for, each axis is a MatMul by the interpolation tables as a dense
(in, out) matrix (and a Where for tf_crop_and_resize's extrapolated positions): in * out weights per
axis, small for image sizes.
"""

from __future__ import annotations

import numpy as np

from ..graph import Node, ONNXError
from ..graph.ops.resize import AxisTable, grad_tables, tables
from .export_rules import register_exporter
from .exporter import ExportContext

MAX_MATRIX_ELEMENTS = 1 << 24  # 128 MiB of float64 per axis: far beyond image sizes (2048 x 4096 is 2**23)
_ATTRS = ("mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside", "antialias")


def _resize_input(node: Node, in_shape: tuple) -> tuple[str, np.ndarray, str] | None:
    """(input name, its values, keep_aspect_ratio_policy) for Resize, or None when nothing says it exactly."""
    a = node.attrs
    n_in = [in_shape[axis] for axis in a["axes"]]
    single = np.asarray(a["scales"], np.float32)
    if all(float(s) == t and int(t * n) == size for s, t, n, size in zip(single, a["scales"], n_in, a["sizes"])):
        return "scales", single, "stretch"
    if all(size / n == t for size, n, t in zip(a["sizes"], n_in, a["scales"])):
        return "sizes", np.asarray(a["sizes"], np.int64), "stretch"
    return _common_scale(a["sizes"], n_in, a["scales"])


def _common_scale(sizes: tuple, n_in: list[int], scales: tuple) -> tuple[str, np.ndarray, str] | None:
    """A common scale that one axis's size over its input size gives ("not_smaller": the largest such
    ratio), the other sizes rounded from it: that axis's size and the others' floor(scale * size)."""
    scale = scales[0]
    exact = [k for k, (size, n) in enumerate(zip(sizes, n_in)) if size / n == scale]
    if len(set(scales)) != 1 or not exact:
        return None
    wanted = [size if k == exact[0] else int(scale * n) for k, (size, n) in enumerate(zip(sizes, n_in))]
    if any(w / n > scale for w, n in zip(wanted, n_in)) or any(int(scale * n + 0.5) != s for n, s in zip(n_in, sizes)):
        return None
    return "sizes", np.asarray(wanted, np.int64), "not_smaller"


@register_exporter("resize")
def _resize(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a, in_shape = node.attrs, node.graph.type_of(node.inputs[0]).shape
    given = _resize_input(node, in_shape)
    if given is None or (a["coordinate_transformation_mode"] == "half_pixel_symmetric" and ctx.opset < 19):
        _matmuls(ctx, node, ins[0], in_shape, tables(in_shape, a), outs)
        return
    kind, values, policy = given
    roi = (
        ctx.const(np.asarray([r[0] for r in a["rois"]] + [r[1] for r in a["rois"]], np.float32), "roi")
        if a["rois"]
        else ""
    )
    operands = (
        [ins[0], roi, ctx.const(values, kind)] if kind == "scales" else [ins[0], roi, "", ctx.const(values, kind)]
    )
    attrs = {name: (int(a[name]) if isinstance(a[name], bool) else a[name]) for name in _ATTRS}
    if policy != "stretch":
        attrs["keep_aspect_ratio_policy"] = policy
    ctx.emit("Resize", operands, outs, axes=list(a["axes"]), extrapolation_value=a["extrapolation_value"], **attrs)


@register_exporter("resize_grad")
def _resize_grad(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    attrs = dict(node.attrs)
    g_shape = node.graph.type_of(node.inputs[0]).shape
    _matmuls(ctx, node, ins[0], g_shape, grad_tables(g_shape, attrs.pop("input_sizes"), attrs), outs)


def _matmuls(
    ctx: ExportContext, node: Node, x: str, in_shape: tuple, axis_tables: list[AxisTable], outs: list[str]
) -> None:
    """The tables applied one axis after the other, in the node's dtype; the last writes `outs`. Each
    axis is a MatMul by the table as a dense (in, out) matrix, between Transposes that move the axis
    last: unlike a Gather by constant indices, which import reads as slices, it imports as itself."""
    dtype, rank = node.types[0].dtype, len(node.types[0].shape)
    for i, table in enumerate(axis_tables):
        last = i == len(axis_tables) - 1
        if in_shape[table.axis] * len(table.indices) > MAX_MATRIX_ELEMENTS:
            raise ONNXError(
                f"{node.op} {node.label}: axis {table.axis} ({in_shape[table.axis]} -> {len(table.indices)}) "
                f"would be a dense matrix of more than {MAX_MATRIX_ELEMENTS} elements; export resize with opset 19 "
                "(a Resize node), or compile the gradient with gradkiln instead of exporting it"
            )
        matrix = np.zeros((in_shape[table.axis], len(table.indices)))
        np.add.at(matrix, (table.indices, np.arange(len(table.indices))[:, None]), table.weights)
        perm = [a for a in range(rank) if a != table.axis] + [table.axis]
        back = list(np.argsort(perm))
        moved = ctx.emit("Transpose", [x], perm=perm) if table.axis != rank - 1 else x
        x = ctx.emit("MatMul", [moved, ctx.const(matrix, "resize_matrix", dtype)])
        if table.axis != rank - 1:
            x = ctx.emit("Transpose", [x], outs if last and table.outside is None else None, perm=back)
        elif last and table.outside is None:
            x = ctx.emit("Identity", [x], outs)
        if table.outside is not None:
            mask = table.outside.reshape((1,) * table.axis + (-1,) + (1,) * (rank - table.axis - 1))
            fill = ctx.const(np.asarray(node.attrs["extrapolation_value"], dtype), "fill")
            x = ctx.emit("Where", [ctx.const(mask, "outside", np.bool_), fill, x], outs if last else None)
