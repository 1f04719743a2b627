"""Relax emitters of the selection ops and dropout: sort, argsort and topk map onto Relax's
(stable, first index first at ties, like the numpy reference); gather_elements and
scatter_elements_add first map their indices into range as their mode reads them (`safe_indices`,
TE kernels shared with take and scatter_add: clamped for "clip"; else negatives counted from the
end and out-of-range ones read 0 and masked: a fill value read, an update dropped; kernels cannot
raise, so "raise" reads as "fill" and `detect_anomaly` checks the indices); flip is one Relax flip
per axis; dropout is a TE kernel that hashes each element's flat index with the same
`keep_code` the numpy reference runs, so both draw the same mask."""

from __future__ import annotations

import functools
import operator
from typing import Callable, NamedTuple

from tvm import relax, te, tirx
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.ops.dropout import PRIME, keep_code, keep_threshold
from ..graph.ops.index_mode import fill_value, mode_of
from .tvm_emitters import EmitContext, register_emitter


@register_emitter("sort")
def _sort(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.sort(args[0], node.attrs["axis"], node.attrs["descending"])


@register_emitter("argsort")
def _argsort(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.argsort(args[0], node.attrs["axis"], node.attrs["descending"], "int64")


@register_emitter("topk")
def _topk(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    return R.topk(args[0], a["k"], a["axis"], "both", a["largest"], "int64")


class SafeIndices(NamedTuple):
    """Indices in [0, n) as an index op's mode reads them, and the mask of the in-range ones (None
    in mode "clip", where every index is clamped into range)."""

    indices: relax.Expr
    valid: relax.Expr | None
    rank: int  # of the indices

    def masked(self, ctx: EmitContext, values: relax.Expr, at: int, rank: int, otherwise: relax.Expr) -> relax.Expr:
        """`values` (of `rank` axes, the indices' axes from axis `at`) where the index was in range,
        else `otherwise`."""
        if self.valid is None:
            return values
        spread = [*range(at), *range(at + self.rank, rank)]
        mask = ctx.bb.emit(R.expand_dims(self.valid, spread)) if spread else self.valid
        return R.where(mask, values, otherwise)


def safe_indices(ctx: EmitContext, node: Node, x: relax.Expr, indices: relax.Expr) -> SafeIndices:
    """The indices (input 1) of an index op `node` over x's `node.attrs["axis"]`, in TE kernels
    (the axis may be symbolic): clamped into [0, n) in mode "clip", else the negative ones moved up
    by n and the out-of-range ones replaced by 0, with their mask."""
    axis, mode = node.attrs["axis"], mode_of(node.attrs)

    def index(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        def element(*i: tirx.PrimExpr) -> tirx.PrimExpr:
            j, n = indices[i], x.shape[axis].astype(indices.dtype)
            if mode == "clip":
                return tirx.max(tirx.min(j, n - 1), tirx.const(0, j.dtype))
            wrapped = tirx.if_then_else(j < 0, j + n, j)
            return tirx.if_then_else(tirx.all(j >= -n, j < n), wrapped, tirx.const(0, j.dtype))

        return te.compute(indices.shape, element, name="indices_in_range")

    def mask(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        n = x.shape[axis].astype(indices.dtype)
        return te.compute(indices.shape, lambda *i: tirx.all(indices[i] >= -n, indices[i] < n), name="index_valid")

    safe = ctx.bb.emit_te(index, x, indices, primfunc_name_hint="indices_in_range")
    valid = None if mode == "clip" else ctx.bb.emit_te(mask, x, indices, primfunc_name_hint="index_valid")
    return SafeIndices(safe, valid, node.graph.type_of(node.inputs[1]).rank)


def fill_constant(dtype: str) -> relax.Expr:
    """What a "fill" read gives (index_mode.fill_value), as a Relax scalar."""
    return relax.const(fill_value(dtype), dtype)


@register_emitter("gather_elements")
def _gather_elements(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    x, indices = args
    axis, dtype = node.attrs["axis"], node.types[0].dtype
    safe = safe_indices(ctx, node, x, indices)
    read = ctx.bb.emit(R.gather_elements(x, safe.indices, axis))
    return safe.masked(ctx, read, 0, node.types[0].rank, fill_constant(dtype))


@register_emitter("scatter_elements_add")
def _scatter_elements_add(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    x, indices, updates = args
    axis, dtype = node.attrs["axis"], node.types[0].dtype
    safe = safe_indices(ctx, node, x, indices)
    kept = safe.masked(ctx, updates, 0, node.types[0].rank, relax.const(0, dtype))
    return R.scatter_elements(x, safe.indices, ctx.bb.emit(kept), axis, reduction="add")


@register_emitter("flip")
def _flip(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    out = args[0]
    for axis in node.attrs["axes"]:
        out = ctx.bb.emit(R.flip(out, axis))
    return out


class _Elementwise:
    """A value of every element as a function of its index (what `te.compute` takes), with the
    integer + * % that `keep_code` uses."""

    def __init__(self, at: Callable[..., tirx.PrimExpr]) -> None:
        self.at = at

    def _combine(self, other: _Elementwise | int, op: Callable) -> _Elementwise:
        right = other.at if isinstance(other, _Elementwise) else lambda *i: other
        return _Elementwise(lambda *i: op(self.at(*i), right(*i)))

    def __add__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.add)

    def __mul__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.mul)

    def __mod__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.mod)


@register_emitter("dropout")
def _dropout(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Each value the hash reads several times is a stage of its own (stored), so that inlining
    the rest keeps every expression small."""
    rate, seed = node.attrs["rate"], node.attrs["seed"]

    def compute(x: te.Tensor) -> te.Tensor:
        def stage(value: _Elementwise) -> _Elementwise:
            return _Elementwise(te.compute(x.shape, value.at, name="dropout_hash"))

        def flat(*i: tirx.PrimExpr) -> tirx.PrimExpr:
            return functools.reduce(lambda total, pair: total * pair[1] + pair[0], zip(i, x.shape), 0)

        code = keep_code(stage(_Elementwise(flat) % PRIME), seed, stage)
        scale, zero, threshold = tirx.const(1.0 / (1.0 - rate), x.dtype), tirx.const(0, x.dtype), keep_threshold(rate)
        return te.compute(
            x.shape, lambda *i: tirx.if_then_else(code.at(*i) >= threshold, x(*i) * scale, zero), name="dropout"
        )

    return ctx.bb.emit_te(compute, args[0], primfunc_name_hint="dropout")
