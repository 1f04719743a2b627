"""vjp, jvp and batching rules of the selection ops (sort, topk, gather_elements,
scatter_elements_add, flip) and of dropout; argsort is non-differentiable (integer-valued).

- gather_elements and scatter_elements_add are each other's transpose: the gradient of a
  gather is a scatter-add of the cotangent into zeros, the gradient of a scatter-add passes g to
  x and gathers it for the updates. Both keep the op's index mode: with "clip" the gradient goes to
  the clamped index, with "fill" nowhere (a fill read is a constant; a dropped update gets 0).
- sort and topk scatter the cotangent of each value back to the index it came from (argsort of
  x, or topk's own indices), so ties follow the ops' convention: the first index wins, and with
  several equal values each gets the cotangent of its own place in the sorted order.
- flip is its own transpose; dropout is linear with a fixed mask, so its vjp and jvp are the
  same dropout (same seed, same shape, same mask) of the cotangent or tangent.
- Batching moves axes by one. The unbatched operand of gather/scatter is broadcast over the
  batch. dropout's mask depends on its input's shape, so a batched dropout reuses the mask of
  the unbatched shape for every batch element, as B separate calls would.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.types import Dim
from .batching import register_batch
from .jvp_rules import Tangents, register_jvp
from .vjp_rules import register_vjp


def _scatter_into_zeros(x: Tensor, indices: Tensor, g: Tensor, axis: int, mode: str = "raise") -> Tensor:
    return gb.scatter_elements_add(zeros_like(x), indices, g, axis, mode)


def in_range(x: Tensor, indices: Tensor, axis: int) -> Tensor:
    """Where -n <= indices < n for the size n of x's `axis` (bool; read at run time when symbolic)."""
    dim, n = x.shape[axis], gb.size(x, axis, indices.dtype)
    low = -dim if isinstance(dim, int) else gb.neg(n)
    return both(gb.greater_equal(indices, low), gb.less(indices, n))


def both(above_low: Tensor, below_high: Tensor) -> Tensor:
    """above_low and below_high, for bounds low < high: the two are never both false, so they are both
    true where they are equal. An equal, not a logical and: ONNX And imports as a bool where, which
    onnxruntime cannot run, and Equal round-trips as itself."""
    return gb.equal(above_low, below_high)


def linear_read(
    read: Callable[[Tensor, str], Tensor], x: Tensor, indices: Tensor, axis: int, mode: str, at: int
) -> Tensor:
    """A tangent or cotangent read `read(indices, mode)` with the op's mode, except that a "fill" read
    gives 0, not NaN: the derivative of a constant. It reads at the indices made non-negative, the
    out-of-range ones at 0, and zeroes those positions (the indices' mask placed at axis `at` of the
    read), so no NaN is made."""
    if mode != "fill":
        return read(indices, mode)
    mask = in_range(x, indices, axis)
    n = gb.size(x, axis, indices.dtype)
    values = read(gb.where(mask, gb.where(gb.less(indices, 0), indices + n, indices), 0), "raise")
    before, after = tuple(range(at)), tuple(range(at + mask.ndim, values.ndim))
    return gb.where(gb.expand_dims(mask, before + after) if before + after else mask, values, 0.0)


def _tangent_or_zeros(t: Tensor | None, like: Tensor) -> Tensor:
    return zeros_like(like) if t is None else t


@register_vjp("sort")
def _sort(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, descending: bool) -> tuple[Tensor]:
    (x,) = inputs
    return (_scatter_into_zeros(x, gb.argsort(x, axis, descending), g, axis),)


@register_jvp("sort")
def _sort_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axis: int, descending: bool) -> Tensor:
    return gb.gather_elements(tangents[0], gb.argsort(inputs[0], axis, descending), axis)


@register_vjp("topk")
def _topk(
    inputs: tuple[Tensor, ...], outs: tuple[Tensor, Tensor], gs: tuple[Tensor, Tensor], axis: int, **attrs: object
) -> tuple[Tensor]:
    return (_scatter_into_zeros(inputs[0], outs[1], gs[0], axis),)


@register_jvp("topk")
def _topk_jvp(
    inputs: tuple[Tensor, ...], outs: tuple[Tensor, Tensor], tangents: Tangents, axis: int, **attrs: object
) -> tuple[Tensor, None]:
    return gb.gather_elements(tangents[0], outs[1], axis), None


@register_vjp("gather_elements")
def _gather_elements(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, mode: str = "raise"
) -> tuple[Tensor, None]:
    x, indices = inputs
    return _scatter_into_zeros(x, indices, g, axis, mode), None


@register_jvp("gather_elements")
def _gather_elements_jvp(
    inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axis: int, mode: str = "raise"
) -> Tensor:
    x, indices = inputs
    return linear_read(lambda i, m: gb.gather_elements(tangents[0], i, axis, m), x, indices, axis, mode, 0)


@register_vjp("scatter_elements_add")
def _scatter_elements_add(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, mode: str = "raise"
) -> tuple[Tensor, None, Tensor]:
    x, indices, _ = inputs
    return g, None, linear_read(lambda i, m: gb.gather_elements(g, i, axis, m), x, indices, axis, mode, 0)


@register_jvp("scatter_elements_add")
def _scatter_elements_add_jvp(
    inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axis: int, mode: str = "raise"
) -> Tensor:
    (x, indices, updates), (tx, _, tu) = inputs, tangents
    return gb.scatter_elements_add(_tangent_or_zeros(tx, x), indices, _tangent_or_zeros(tu, updates), axis, mode)


@register_vjp("flip")
def _flip(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...]) -> tuple[Tensor]:
    return (gb.flip(g, axes),)


@register_jvp("flip")
def _flip_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, axes: tuple[int, ...]) -> Tensor:
    return gb.flip(tangents[0], axes)


@register_vjp("dropout")
def _dropout(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, rate: float, seed: int) -> tuple[Tensor]:
    return (gb.dropout(g, rate, seed),)


@register_jvp("dropout")
def _dropout_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, rate: float, seed: int) -> Tensor:
    return gb.dropout(tangents[0], rate, seed)


# -- batching -------------------------------------------------------------------------------------
def _with_batch(x: Tensor, flag: bool, size: Dim) -> Tensor:
    return x if flag else gb.broadcast_to(x, (size, *x.shape))


def _along_axis_batch(op: str):
    """An op over one axis of its first input (and indices/updates of the same shape)."""

    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: object, size: Dim, axis: int, **attrs):
        operands = [_with_batch(x, flag, size) for x, flag in zip(inputs, batched)]
        return gb.emit(op, *operands, axis=axis + 1, **attrs)

    return rule


for _op in ("sort", "argsort", "topk", "gather_elements", "scatter_elements_add"):
    register_batch(_op)(_along_axis_batch(_op))


@register_batch("flip")
def _flip_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, axes: tuple[int, ...]
) -> Tensor:
    return gb.flip(inputs[0], [a + 1 for a in axes])


@register_batch("dropout")
def _dropout_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, rate: float, seed: int
) -> Tensor:
    """The mask of the unbatched shape (a dropout of ones), applied to every batch element."""
    (xs,) = inputs
    ones = gb.broadcast_to(gb.constant(np.ones((), out.dtype), graph=out.graph), out.shape)
    kept = gb.not_equal(gb.dropout(ones, rate, seed), 0.0)
    return gb.where(kept, xs * (1.0 / (1.0 - rate)), 0.0)
