"""ONNX export rules, one per gradkiln op: `rule(ctx, node, inputs, outputs)` appends ONNX nodes
that read the ONNX names `inputs` and define the names `outputs`. The table (`EXPORTERS`,
`register_exporter`) lives beside `ExportContext` in exporter.py; this module holds the ops with one
ONNX op each, and the export_* modules, which `onnx_io/__init__.py` loads from one list, the rest."""

from __future__ import annotations

import numpy as np

from ..graph import Node
from ..graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS, Binary, Unary
from ..graph.types import shape_size
from .dtypes import TO_ONNX
from .exporter import EXPORTERS, ExportContext, ExportRule, register_exporter  # noqa: F401  (the table, here too)

# gradkiln op -> ONNX op with the same inputs, outputs and semantics: the table rows' `onnx`, and
# the comparisons, where and matmul.
ONE_TO_ONE = {
    **{row.name: row.onnx for row in (*UNARY_ROWS, *BINARY_ROWS) if row.onnx is not None},
    "equal": "Equal",
    "less": "Less",
    "less_equal": "LessOrEqual",
    "greater": "Greater",
    "greater_equal": "GreaterOrEqual",
    "where": "Where",
    "matmul": "MatMul",
}
# gradkiln op -> (ONNX op, {ONNX attribute: gradkiln attribute}).
WITH_ATTRS = {
    "transpose": ("Transpose", {"perm": "perm"}),
    "softmax": ("Softmax", {"axis": "axis"}),
    "log_softmax": ("LogSoftmax", {"axis": "axis"}),
    "concat": ("Concat", {"axis": "axis"}),
    "leaky_relu": ("LeakyRelu", {"alpha": "negative_slope"}),
    "elu": ("Elu", {"alpha": "alpha"}),
    "argmax": ("ArgMax", {"axis": "axis", "keepdims": "keepdims"}),
    "argmin": ("ArgMin", {"axis": "axis", "keepdims": "keepdims"}),
}
# gradkiln op -> ONNX op taking the `axes` attribute as its second input.
AXES_OPS = {
    "sum": "ReduceSum",
    "mean": "ReduceMean",
    "max": "ReduceMax",
    "min": "ReduceMin",
    "prod": "ReduceProd",
    "logsumexp": "ReduceLogSumExp",
    "expand_dims": "Unsqueeze",
    "squeeze": "Squeeze",
}


def direct_exporter(op_type: str, attr_map: dict[str, str]) -> ExportRule:
    """One ONNX node of `op_type` with the node's inputs and outputs, attributes renamed by
    `attr_map` (the rule of ONE_TO_ONE, `{}`, and WITH_ATTRS ops)."""

    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        attrs = {onnx_key: _plain(node.attrs[key]) for onnx_key, key in attr_map.items()}
        ctx.emit(op_type, ins, outs, **attrs)

    return rule


def _plain(value: object) -> object:
    """An attribute value as ONNX takes it: tuples as lists, bools as ints."""
    if isinstance(value, bool):
        return int(value)
    return list(value) if isinstance(value, tuple) else value


def _over_axes(op_type: str) -> ExportRule:
    """An op whose axes become an int64 input; with no axes it is the identity (for ONNX, no axes
    would mean every axis)."""

    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        axes = node.attrs["axes"]
        if not axes:
            ctx.emit("Identity", ins, outs)
            return
        attrs = {"keepdims": int(node.attrs["keepdims"])} if "keepdims" in node.attrs else {}
        ctx.emit(op_type, [ins[0], ctx.ints(axes, "axes")], outs, **attrs)

    return rule


def row_exporter(row: Unary | Binary) -> ExportRule:
    """The export rule of an elementwise table row: the one ONNX op its `onnx` names."""
    return direct_exporter(row.onnx, {})


for _op, _onnx_op in ONE_TO_ONE.items():
    register_exporter(_op)(direct_exporter(_onnx_op, {}))
for _op, (_onnx_op, _attr_map) in WITH_ATTRS.items():
    register_exporter(_op)(direct_exporter(_onnx_op, _attr_map))
for _op, _onnx_op in AXES_OPS.items():
    register_exporter(_op)(_over_axes(_onnx_op))


@register_exporter("stop_gradient")
@register_exporter("custom_vjp")
@register_exporter("custom_jvp")
def _pass_through(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Autodiff markers are identities at run time: the value is the last input."""
    ctx.emit("Identity", [ins[-1]], outs)


@register_exporter("not_equal")
def _not_equal(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Not", [ctx.emit("Equal", ins, [ctx.fresh(f"{outs[0]}_eq")])], outs)


@register_exporter("cast")
def _cast(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Cast", ins, outs, to=TO_ONNX[node.attrs["dtype"]])


@register_exporter("reshape")
def _reshape(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Reshape", [ins[0], ctx.dims(node.attrs["shape"])], outs, allowzero=1)


@register_exporter("broadcast_to")
def _broadcast_to(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Expand", [ins[0], ctx.dims(node.attrs["shape"])], outs)


@register_exporter("slice")
def _slice(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    a = node.attrs
    bounds = [ctx.dims(a["starts"], "starts"), ctx.dims(a["stops"], "stops")]
    axes = ctx.ints(range(len(a["steps"])), "axes")
    ctx.emit("Slice", [ins[0], *bounds, axes, ctx.ints(a["steps"], "steps")], outs)


@register_exporter("pad")
def _pad(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Zero padding; interior padding is composed first (see `_interior_pad`)."""
    x = ins[0]
    if any(node.attrs["interior"]):
        x = _interior_pad(ctx, node, x)
    ctx.emit("Pad", [x, ctx.dims(tuple(node.attrs["low"]) + tuple(node.attrs["high"]), "pads")], outs)


def _interior_pad(ctx: ExportContext, node: Node, x: str) -> str:
    """Put k zeros between the elements of each axis with interior k: give each element a new
    axis after it, pad that axis to k + 1, merge it back, and cut the k zeros after the last."""
    shape, interior = node.graph.type_of(node.inputs[0]).shape, node.attrs["interior"]
    spread = [i for i, k in enumerate(interior) if k]
    new_axes = [i + 1 + n for n, i in enumerate(spread)]
    rank = len(shape) + len(spread)
    pads = [0] * (2 * rank)
    for axis, i in zip(new_axes, spread):
        pads[rank + axis] = interior[i]
    x = ctx.emit("Unsqueeze", [x, ctx.ints(new_axes, "axes")], [ctx.fresh(f"{x}_spread")])
    x = ctx.emit("Pad", [x, ctx.ints(pads, "pads")], [ctx.fresh(f"{x}_gaps")])
    merged = ctx.dims([d * (k + 1) for d, k in zip(shape, interior)])
    x = ctx.emit("Reshape", [x, merged], [ctx.fresh(f"{x}_merged")], allowzero=1)
    stops = ctx.dims([d * (k + 1) - k for d, k in zip(shape, interior)], "stops")
    starts, axes = ctx.ints([0] * len(shape), "starts"), ctx.ints(range(len(shape)), "axes")
    return ctx.emit("Slice", [x, starts, stops, axes], [ctx.fresh(f"{x}_interior")])


@register_exporter("one_hot")
def _one_hot(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Compare each index with 0..depth-1: out-of-range indices match nothing (a zero row: mode
    "fill", and "raise", which a model cannot); mode "clip" clips them into range first."""
    index_dtype, depth, indices = node.graph.type_of(node.inputs[0]).dtype, node.attrs["depth"], ins[0]
    if node.attrs.get("mode") == "clip":
        bounds = [ctx.const(0, "zero", index_dtype), ctx.const(depth - 1, "last_class", index_dtype)]
        indices = ctx.emit("Clip", [indices, *bounds], [ctx.fresh(f"{indices}_clipped")])
    classes = ctx.const(np.arange(depth), "classes", dtype=index_dtype)
    column = ctx.emit("Unsqueeze", [indices, ctx.ints([-1], "axes")], [ctx.fresh(f"{indices}_column")])
    hits = ctx.emit("Equal", [column, classes], [ctx.fresh(f"{outs[0]}_hits")])
    ctx.emit("Cast", [hits], outs, to=TO_ONNX[node.attrs["dtype"]])


@register_exporter("size")
def _size(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """A constant when the counted dims are static, else the product of the run-time dims."""
    element_count(ctx, node, ins[0], node.attrs["axes"], node.attrs["dtype"], outs[0])


def element_count(ctx: ExportContext, node: Node, x: str, axes: tuple[int, ...], dtype: str, out: str) -> str:
    """Define `out` as the number of elements of the node's first input `x` over `axes` (a
    scalar of `dtype`)."""
    count = shape_size([node.graph.type_of(node.inputs[0]).shape[a] for a in axes])
    if isinstance(count, int):
        return ctx.initializer(out, count, dtype)
    dims = ctx.emit("Shape", [x], [ctx.fresh(f"{x}_shape")])
    picked = ctx.emit("Gather", [dims, ctx.ints(axes, "axes")], [ctx.fresh(f"{x}_dims")])
    product = ctx.emit("ReduceProd", [picked], [ctx.fresh(f"{out}_int")], keepdims=0)
    return ctx.emit("Cast", [product], [out], to=TO_ONNX[dtype])
