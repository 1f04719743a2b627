"""ONNX export rules of the selection ops and dropout.

sort, argsort and topk are TopK (k the whole axis for sort and argsort; ONNX TopK puts the lower
index first at ties, as our stable order does); gather_elements and scatter_elements_add are
GatherElements and ScatterElements (reduction "add"), after their indices are mapped as their
mode says (`mode_indices`, shared with take and scatter_add: ONNX leaves out-of-range indices
undefined, and onnxruntime raises on them, which is mode "raise"; "clip" clips them first, "fill"
reads at 0 where they are out of range and puts the fill value (or a dropped update's 0) there
with Where); flip is a Slice with step -1. dropout's
mask is a bool initializer for a static shape; for a symbolic one the model computes it with the
dropout op's own `keep_code` run on int64 ONNX values (CumSum of ones for the index, then Add,
Mul and Mod), so onnxruntime draws the numpy reference's mask, and every ONNX op used imports
back one to one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..graph import Node
from ..graph.ops.dropout import PRIME, keep_code, keep_mask, keep_threshold
from ..graph.ops.index_mode import fill_value, mode_of
from ..graph.types import Dim, shape_size
from .dtypes import TO_ONNX
from .export_rules import register_exporter
from .exporter import ExportContext


def _top_k(ctx: ExportContext, node: Node, x: str, k: str, largest: bool, outs: list[str]) -> None:
    ctx.emit("TopK", [x, k], outs, axis=node.attrs["axis"], largest=int(largest), sorted=1)


def _whole_axis(ctx: ExportContext, node: Node) -> str:
    """A [1] int64 tensor holding the size of the sorted axis (computed at run time if symbolic)."""
    return ctx.dim(node.graph.type_of(node.inputs[0]).shape[node.attrs["axis"]])


@register_exporter("sort")
def _sort(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    unused = ctx.fresh(f"{outs[0]}_order")
    _top_k(ctx, node, ins[0], _whole_axis(ctx, node), node.attrs["descending"], [outs[0], unused])


@register_exporter("argsort")
def _argsort(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    unused = ctx.fresh(f"{outs[0]}_values")
    _top_k(ctx, node, ins[0], _whole_axis(ctx, node), node.attrs["descending"], [unused, outs[0]])


@register_exporter("topk")
def _topk(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    _top_k(ctx, node, ins[0], ctx.ints([node.attrs["k"]], "k"), node.attrs["largest"], outs)


class ModeIndices(NamedTuple):
    """An index op's indices as its mode reads them, and the mask of the in-range ones (None unless
    the mode is "fill")."""

    indices: str
    valid: str | None
    rank: int  # of the indices

    def read_into(self, ctx: ExportContext, out: str) -> str:
        """Where a read goes: `out` itself, unless `masked` still has to write it."""
        return out if self.valid is None else ctx.fresh(f"{out}_read")

    def masked(self, ctx: ExportContext, values: str, at: int, node: Node, otherwise: object, out: str) -> str:
        """`values` (of the node's output dtype, the indices' axes from axis `at`; the output's rank,
        or scatter_add's updates') where the index was in range, else the scalar `otherwise`, into
        `out`; `values` itself when every index is read in range."""
        if self.valid is None:
            return values
        out_type = node.types[0]
        rank = out_type.rank + (self.rank - 1 if node.op == "scatter_add" else 0)
        spread = [*range(at), *range(at + self.rank, rank)]
        fill = ctx.const(otherwise, "fill_value", out_type.dtype)
        mask = (
            ctx.emit("Unsqueeze", [self.valid, ctx.ints(spread, "axes")], [ctx.fresh(f"{out}_mask")])
            if spread
            else self.valid
        )
        return ctx.emit("Where", [mask, values, fill], [out])


def _scalar_dim(ctx: ExportContext, dim: Dim, dtype: str, hint: str) -> str:
    """A scalar of `dtype` holding a dim expression: a constant when static, else computed at run time."""
    if isinstance(dim, int):
        return ctx.const(dim, hint, dtype)
    value = ctx.emit("Squeeze", [ctx.dim(dim)], [ctx.fresh(hint)])
    return value if dtype == "int64" else ctx.emit("Cast", [value], [ctx.fresh(f"{hint}_{dtype}")], to=TO_ONNX[dtype])


def mode_indices(ctx: ExportContext, node: Node, indices: str) -> ModeIndices:
    """The indices (input 1) of an index op over input 0's `axis`: as they are in mode "raise"
    (onnxruntime raises out of range), clipped into [0, n - 1] in "clip"; in "fill" the negative ones
    moved up by n and the out-of-range ones replaced by 0, with their mask."""
    mode, index_type = mode_of(node.attrs), node.graph.type_of(node.inputs[1])
    if mode == "raise":
        return ModeIndices(indices, None, index_type.rank)
    size = node.graph.type_of(node.inputs[0]).shape[node.attrs["axis"]]
    zero = ctx.const(0, "zero", index_type.dtype)
    if mode == "clip":
        top = _scalar_dim(ctx, size - 1, index_type.dtype, "last_index")
        clipped = ctx.emit("Clip", [indices, zero, top], [ctx.fresh(f"{indices}_clipped")])
        return ModeIndices(clipped, None, index_type.rank)
    n = _scalar_dim(ctx, size, index_type.dtype, "axis_size")
    low = _scalar_dim(ctx, -size, index_type.dtype, "lowest_index")
    at_least = ctx.emit("GreaterOrEqual", [indices, low], [ctx.fresh(f"{indices}_above")])
    below = ctx.emit("Less", [indices, n], [ctx.fresh(f"{indices}_below")])
    valid = ctx.emit("Equal", [at_least, below], [ctx.fresh(f"{indices}_valid")])  # and: select_rules.both
    negative = ctx.emit("Less", [indices, zero], [ctx.fresh(f"{indices}_negative")])
    moved = ctx.emit("Add", [indices, n], [ctx.fresh(f"{indices}_moved")])
    wrapped = ctx.emit("Where", [negative, moved, indices], [ctx.fresh(f"{indices}_wrapped")])
    safe = ctx.emit("Where", [valid, wrapped, zero], [ctx.fresh(f"{indices}_safe")])
    return ModeIndices(safe, valid, index_type.rank)


@register_exporter("gather_elements")
def _gather_elements(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    safe = mode_indices(ctx, node, ins[1])
    read = ctx.emit("GatherElements", [ins[0], safe.indices], [safe.read_into(ctx, outs[0])], axis=node.attrs["axis"])
    safe.masked(ctx, read, 0, node, fill_value(node.types[0].dtype), outs[0])


@register_exporter("scatter_elements_add")
def _scatter_elements_add(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    x, indices, updates = ins
    safe = mode_indices(ctx, node, indices)
    updates = safe.masked(ctx, updates, 0, node, 0, ctx.fresh(f"{updates}_kept"))
    ctx.emit("ScatterElements", [x, safe.indices, updates], outs, axis=node.attrs["axis"], reduction="add")


@register_exporter("flip")
def _flip(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """From the last element (-1) past the first (the lowest int64) with step -1, per axis."""
    axes = node.attrs["axes"]
    starts, ends = ctx.ints([-1] * len(axes), "starts"), ctx.ints([np.iinfo(np.int64).min] * len(axes), "ends")
    ctx.emit("Slice", [ins[0], starts, ends, ctx.ints(axes, "axes"), ctx.ints([-1] * len(axes), "steps")], outs)


class _Int64Value:
    """An int64 ONNX value with the + * % that `keep_code` uses, each emitting one ONNX node."""

    def __init__(self, ctx: ExportContext, name: str) -> None:
        self.ctx, self.name = ctx, name

    def _apply(self, op_type: str, other: _Int64Value | int, **attrs: int) -> _Int64Value:
        right = other.name if isinstance(other, _Int64Value) else self.ctx.const(np.int64(other), f"c{other}")
        return _Int64Value(self.ctx, self.ctx.emit(op_type, [self.name, right], [self.ctx.fresh("hash")], **attrs))

    def __add__(self, other: _Int64Value | int) -> _Int64Value:
        return self._apply("Add", other)

    def __mul__(self, other: _Int64Value | int) -> _Int64Value:
        return self._apply("Mul", other)

    def __mod__(self, other: _Int64Value | int) -> _Int64Value:
        return self._apply("Mod", other, fmod=0)


def _flat_index(ctx: ExportContext, shape: tuple[Dim, ...]) -> str:
    """Each element's row-major index, as int64 of `shape`: an exclusive cumsum of ones, reshaped
    (ops that import one to one, so the model round-trips through the importer)."""
    ones = ctx.emit("Expand", [ctx.const(np.int64(1), "one"), ctx.dims([shape_size(shape)])], [ctx.fresh("ones")])
    axis = ctx.const(np.int64(0), "axis")
    flat = ctx.emit("CumSum", [ones, axis], [ctx.fresh("flat_index")], exclusive=1, reverse=0)
    return ctx.emit("Reshape", [flat, ctx.dims(shape)], [ctx.fresh("index")], allowzero=1)


@register_exporter("dropout")
def _dropout(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """A static shape's mask is a constant (what the importer would fold the arithmetic to); a
    symbolic one is computed in the model, by the same `keep_code` on int64 ONNX values."""
    rate, seed = node.attrs["rate"], node.attrs["seed"]
    shape, dtype = node.types[0].shape, node.types[0].dtype
    if all(isinstance(d, int) for d in shape):
        kept = ctx.const(keep_mask(shape, seed, rate), "kept")
    else:
        code = keep_code(_Int64Value(ctx, _flat_index(ctx, shape)) % PRIME, seed).name
        threshold = ctx.const(np.int64(keep_threshold(rate)), "threshold")
        kept = ctx.emit("GreaterOrEqual", [code, threshold], [ctx.fresh("kept")])
    scaled = ctx.emit("Mul", [ins[0], ctx.const(np.asarray(1.0 / (1.0 - rate), dtype), "scale")], [ctx.fresh("scaled")])
    ctx.emit("Where", [kept, scaled, ctx.const(np.zeros((), dtype), "zero")], outs)
