"""ONNX export rules of the neural-network ops: Conv, ConvTranspose, MaxPool, AveragePool and
Gather one to one (take's indices mapped as its mode says: `export_select.mode_indices`);
scatter_add as ScatterND with reduction "add" over the axis moved first."""

from __future__ import annotations

from onnx import TensorProto

from ..graph import Node
from ..graph.ops.index_mode import fill_value
from .export_rules import register_exporter
from .export_select import mode_indices
from .exporter import ExportContext


def _pads(node: Node) -> list[int]:
    """((top, bottom), (left, right)) as ONNX's [top, left, bottom, right]."""
    (top, bottom), (left, right) = node.attrs["padding"]
    return [top, left, bottom, right]


def _kernel(node: Node) -> list[int]:
    return [int(k) for k in node.graph.type_of(node.inputs[1]).shape[2:]]


def _conv_attrs(node: Node) -> dict:
    """The ONNX attributes Conv and ConvTranspose share."""
    a = node.attrs
    return {
        "kernel_shape": _kernel(node),
        "strides": list(a["stride"]),
        "pads": _pads(node),
        "dilations": list(a["dilation"]),
        "group": a["groups"],
    }


@register_exporter("conv2d")
def _conv2d(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Conv", ins, outs, **_conv_attrs(node))


@register_exporter("conv_transpose2d")
def _conv_transpose2d(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("ConvTranspose", ins, outs, output_padding=list(node.attrs["output_padding"]), **_conv_attrs(node))


@register_exporter("max_pool2d")
def _max_pool2d(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    ctx.emit("MaxPool", ins, outs, kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_pads(node))


@register_exporter("avg_pool2d")
def _avg_pool2d(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    ctx.emit(
        "AveragePool",
        ins,
        outs,
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=_pads(node),
        count_include_pad=int(a["count_include_pad"]),
    )


@register_exporter("take")
def _take(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    axis = node.attrs["axis"]
    safe = mode_indices(ctx, node, ins[1])
    read = ctx.emit("Gather", [ins[0], safe.indices], [safe.read_into(ctx, outs[0])], axis=axis)
    safe.masked(ctx, read, axis, node, fill_value(node.types[0].dtype), outs[0])


@register_exporter("scatter_add")
def _scatter_add(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """ScatterND adds updates (*I, *rest) at data[indices[..., 0]]: with the axis moved first
    (data and updates transposed), the indices given a trailing axis of length 1."""
    x, indices, updates = ins
    axis = node.attrs["axis"]
    rank, index_rank = (len(node.graph.type_of(v).shape) for v in node.inputs[:2])
    safe = mode_indices(ctx, node, indices)
    indices, updates = safe.indices, safe.masked(ctx, updates, axis, node, 0, ctx.fresh(f"{updates}_kept"))
    if node.graph.type_of(node.inputs[1]).dtype != "int64":  # ScatterND takes int64 indices only
        indices = ctx.emit("Cast", [indices], [ctx.fresh(f"{indices}_int64")], to=TensorProto.INT64)
    column = ctx.emit("Unsqueeze", [indices, ctx.ints([-1], "axes")], [ctx.fresh(f"{indices}_column")])
    if axis == 0:
        ctx.emit("ScatterND", [x, column, updates], outs, reduction="add")
        return
    first = [axis, *range(axis), *range(axis + 1, rank)]
    moved = [*range(axis, axis + index_rank), *range(axis), *range(axis + index_rank, rank - 1 + index_rank)]
    x = ctx.emit("Transpose", [x], [ctx.fresh(f"{x}_moved")], perm=first)
    updates = ctx.emit("Transpose", [updates], [ctx.fresh(f"{updates}_moved")], perm=moved)
    added = ctx.emit("ScatterND", [x, column, updates], [ctx.fresh(f"{outs[0]}_moved")], reduction="add")
    back = [*range(1, axis + 1), 0, *range(axis + 1, rank)]
    ctx.emit("Transpose", [added], outs, perm=back)
