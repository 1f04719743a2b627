"""Relax emitters of the selection ops and dropout: sort, argsort and topk map onto Relax's
(stable, first index first at ties, like the numpy reference); gather_elements and
scatter_elements_add first map negative indices into range (a TE kernel); flip is one Relax flip
per axis; dropout is a TE kernel that hashes each element's flat index with the same
`keep_code` the numpy reference runs, so both draw the same mask."""

from __future__ import annotations

import functools
import operator
from typing import Callable

from tvm import relax, te, tirx
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.ops.dropout import PRIME, keep_code, keep_threshold
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


def _in_range(ctx: EmitContext, x: relax.Expr, indices: relax.Expr, axis: int) -> relax.Expr:
    """indices with the negative ones moved up by the size of x's `axis` (numpy's reading)."""

    def compute(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        def element(*i: tirx.PrimExpr) -> tirx.PrimExpr:
            j = indices[i]
            return tirx.if_then_else(j < 0, j + x.shape[axis].astype(j.dtype), j)

        return te.compute(indices.shape, element, name="indices_in_range")

    return ctx.bb.emit_te(compute, x, indices, primfunc_name_hint="indices_in_range")


@register_emitter("gather_elements")
def _gather_elements(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    x, indices = args
    axis = node.attrs["axis"]
    return R.gather_elements(x, _in_range(ctx, x, indices, axis), axis)


@register_emitter("scatter_elements_add")
def _scatter_elements_add(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    x, indices, updates = args
    axis = node.attrs["axis"]
    return R.scatter_elements(x, _in_range(ctx, x, indices, axis), updates, axis, reduction="add")


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
