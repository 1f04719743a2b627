"""Vector-Jacobian product rules, one per op, keyed by op name in `VJP_RULES`.

A rule is called as `rule(inputs, output, cotangent, **attrs)`: `inputs` is the tuple of the
forward node's input Tensors, `output` its output Tensor (a tuple for a multi-output op),
`cotangent` the gradient flowing into that output (a tuple likewise, zeros where an output
received none), and `attrs` the node's attributes. It returns one cotangent Tensor, or None,
per input. Rules are written with the builder API, so they emit ordinary graph nodes and
gradients of gradients come for free. `register_vjp(op)` adds a rule for a custom op.

Ops in `NON_DIFFERENTIABLE` pass no gradient to their inputs: comparisons, `one_hot`, `size`,
`sign`, `floor`, `ceil`, `round`, `floordiv`, `argmax`, `argmin`, `argsort`, `random_bits` and the bitwise ops
(piecewise constant or integer-valued: their gradient is 0 where it exists), and the sources `input`, `param` and
`constant`, which have no inputs to pass a gradient to, and `stop_gradient` by definition.

Conventions at non-differentiable points and edge cases:
- `abs` and `relu` have gradient 0 at 0 (`abs` uses sign(x), `relu` the mask x > 0).
- `maximum` and `minimum` split the gradient equally between a and b where a == b.
- reduce `max` and `min` split the gradient equally among the tied extremes of each reduced slice.
- `leaky_relu` and `elu` take the x <= 0 branch at 0 (gradient negative_slope, alpha), as PyTorch.
- `clip` passes the gradient where lo <= x <= hi, bounds included (as PyTorch), 0 outside.
- `mod`'s gradient is (g, -g * floordiv(a, b)), the derivative away from the jumps.
- `prod` and `cumprod` are exact also with zeros: no division by a zero element. For `prod`, an
  element's gradient is the product of the others (non-zero only when at most one is 0); for
  `cumprod`, elements before the first zero of their slice use the reverse cumsum of g * y divided
  by x, the first zero gets the reverse cumsum of g times the cumprod taken with it read as 1,
  and elements after it get 0 (every product through them contains that zero). Derivatives of
  these gradients (second order) hold the zero pattern fixed, so they are exact only away from 0.
- `var` and `std` divide by n - correction, like their values.
- `cast` passes the gradient back cast to the input dtype when the input is a float (its real
  part, from a complex result) or complex; an integer or bool input gets none.
- Complex operands (the ops listed in docs/autodiff.md) follow PyTorch's convention: the
  gradient with respect to z is dL/d conj(z). Rules of holomorphic ops are wrapped in
  `holomorphic`; the others (abs, real, imag, conj, angle, complex) are in `complex_rules`.
- `pow`'s gradient with respect to the exponent is g * a**b * log(a), valid for a > 0.
- `where` passes nothing to its bool condition; `slice`'s gradient is a zero `pad` and
  `pad`'s is a strided `slice`; `concat`'s is one slice per operand.
- Broadcasting is undone by summing (`unbroadcast`); symbolic dims stay symbolic (the mean's
  gradient divides by a `size` node when a reduced dim is symbolic).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np
import sympy

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_float, is_inexact
from ..graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS, Binary, Unary
from ..graph.registry import Registry
from ..graph.types import Dim, as_dim, dims_equal

VJPRule = Callable[..., Sequence[Tensor | None]]

VJP_RULES: Registry[VJPRule] = Registry("gradient rule")

NON_DIFFERENTIABLE: frozenset[str] = frozenset(
    {
        "equal",
        "not_equal",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "one_hot",
        "size",
        "argmax",
        "argmin",
        "argsort",
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "bitwise_not",
        "left_shift",
        "right_shift",
        "random_bits",
        "stop_gradient",
        "input",
        "param",
        "constant",
        *(row.name for row in (*UNARY_ROWS, *BINARY_ROWS) if row.derivative is None),  # sign, floor, ..., floordiv
    }
)


def register_vjp(op_name: str, **how: Any) -> Callable[[VJPRule], VJPRule]:
    """Decorator: make `rule` the gradient of op `op_name` (also how custom ops get one); `how` is
    `Registry.register`'s `when=`/`override=`."""
    if op_name in NON_DIFFERENTIABLE:
        raise ValueError(f"op {op_name!r} is non-differentiable: it takes no gradient rule")
    return VJP_RULES.register(op_name, **how)


# -- helpers ------------------------------------------------------------------------------------
def unbroadcast(g: Tensor, x: Tensor) -> Tensor:
    """Sum `g` back to the shape of `x`, undoing numpy broadcasting: over the leading axes `x`
    lacks and over the axes where `x` has size 1."""
    lead = g.ndim - x.ndim
    axes = [*range(lead)] + [
        lead + i for i, d in enumerate(x.shape) if dims_equal(d, 1) and not dims_equal(g.shape[lead + i], 1)
    ]
    return gb.reshape(gb.sum(g, axes), x.shape) if axes else g


def _keep_reduced_axes(t: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """Give a reduction's result back its reduced axes as size-1 axes, to broadcast against x."""
    return t if keepdims else gb.expand_dims(t, axes)


def _strided_extent(count: Dim, step: int) -> Dim:
    """How many positions `count` elements taken every `step` span (0 for no elements), written
    as `pad`'s type inference writes it, so the slice rule's pad gets back the input's shape."""
    gaps = max(0, count - 1) if isinstance(count, int) else sympy.Max(0, count - 1)
    return as_dim(count + gaps * (step - 1))


def _past_last(first: Dim, count: Dim, step: int) -> Dim:
    """A stop for the slice taking `count` elements every `step` from `first`: just past the last
    one. For a symbolic count this assumes count >= 1, which lets sympy simplify the slice's
    length back to `count` (with a Max(0, count - 1) term it cannot)."""
    span = (count - 1) * step + 1
    return as_dim(first + (max(0, span) if isinstance(span, int) else span))


def max_weights(x: Tensor, out: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """d max(x, axes) / dx (and min's): 1 / (number of ties) at each extreme of its slice, 0 elsewhere."""
    is_max = gb.cast(gb.equal(x, _keep_reduced_axes(out, axes, keepdims)), x.dtype)
    return is_max / gb.sum(is_max, axes, keepdims=True)


def prod_weights(x: Tensor, out: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """d prod(x, axes) / dx, the product of the other elements of the slice, without dividing by
    zero: with one zero in a slice only that zero gets a non-zero weight, with two none does."""
    zero = gb.equal(x, 0.0)
    nonzero = gb.where(zero, 1.0, x)
    others = gb.prod(nonzero, axes, keepdims=True)
    zeros = gb.sum(gb.cast(zero, x.dtype), axes, keepdims=True)
    return gb.where(
        zero, gb.where(gb.equal(zeros, 1.0), others, 0.0), gb.where(gb.equal(zeros, 0.0), others / nonzero, 0.0)
    )


def _deviation(x: Tensor, axes: tuple[int, ...], correction: int) -> Tensor:
    """(x - mean) / (n - correction): half the gradient of the variance."""
    count = gb.size(x, axes, x.dtype)
    return (x - gb.mean(x, axes, keepdims=True)) / (count - float(correction) if correction else count)


# d reduce(x, axes) / dx for reductions with one output element per slice, as a function of
# (x, y, axes, keepdims, **attrs): the vjp spreads g with it, the jvp sums the tangent weighted by it.
REDUCTION_WEIGHTS: dict[str, Callable[..., Tensor]] = {
    "max": max_weights,
    "min": max_weights,
    "prod": prod_weights,
    "logsumexp": lambda x, y, axes, keepdims: gb.exp(x - _keep_reduced_axes(y, axes, keepdims)),
    "var": lambda x, y, axes, keepdims, correction: 2.0 * _deviation(x, axes, correction),
    "std": lambda x, y, axes, keepdims, correction: (
        _deviation(x, axes, correction) / _keep_reduced_axes(y, axes, keepdims)
    ),
}


def _swap_last_two(t: Tensor) -> Tensor:
    return gb.transpose(t, (*range(t.ndim - 2), t.ndim - 1, t.ndim - 2))


# -- elementwise ----------------------------------------------------------------------------------
# d(op)/dx applied to g, as a function of (x, y = op(x), g, **attrs): the table's rows (their
# `derivative`, given the builder) and the ops with attributes; the jvp rules reuse it (a diagonal
# Jacobian is its own transpose).
UNARY_DERIVATIVES: dict[str, Callable[..., Tensor]] = {
    **{row.name: functools.partial(row.derivative, gb) for row in UNARY_ROWS if row.derivative is not None},
    "gelu": lambda x, y, g, approximate: g * _gelu_slope(x, approximate),
    "leaky_relu": lambda x, y, g, negative_slope: gb.where(x > 0, g, g * negative_slope),
    "elu": lambda x, y, g, alpha: gb.where(x > 0, g, g * (y + alpha)),
    "clip": lambda x, y, g, lo, hi: _clip_slope(x, g, lo, hi),
}


def _gelu_slope(x: Tensor, approximate: str) -> Tensor:
    """d gelu / dx: Phi(x) + x * phi(x), or the derivative of the tanh approximation."""
    if approximate == "tanh":
        c, k = math.sqrt(2.0 / math.pi), 0.044715
        t = gb.tanh(c * (x + k * x * x * x))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * k * x * x)
    cdf = 0.5 * (1.0 + gb.erf(x * (1.0 / math.sqrt(2.0))))
    return cdf + x * gb.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


def _clip_slope(x: Tensor, g: Tensor, lo: float | None, hi: float | None) -> Tensor:
    """g where lo <= x <= hi (bounds included), 0 outside."""
    g = g if lo is None else gb.where(x < lo, 0.0, g)
    return g if hi is None else gb.where(x > hi, 0.0, g)


# (cotangent of a, cotangent of b) at the broadcast shape, as a function of (a, b, y, g): the
# binary rows' `derivative`, given the builder; the jvp rules reuse it with g set to one operand's
# tangent.
BINARY_DERIVATIVES: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    row.name: functools.partial(row.derivative, gb) for row in BINARY_ROWS if row.derivative is not None
}


def holomorphic(rule: VJPRule) -> VJPRule:
    """A real rule made right for complex operands too, in PyTorch's convention (docs/autodiff.md):
    for an op holomorphic in its operands a real rule computes J^T g, so conjugating g on the way
    in and the cotangents on the way out gives J^H g, the gradient with respect to conj(z).
    `gb.conj` is the identity on real tensors: real graphs get no extra nodes."""

    def conjugated(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, **attrs: object) -> Sequence[Tensor | None]:
        return [None if ct is None else gb.conj(ct) for ct in rule(inputs, out, gb.conj(g), **attrs)]

    return conjugated


def _unary_rule(derivative: Callable[..., Tensor]) -> VJPRule:
    return holomorphic(lambda inputs, out, g, **attrs: (derivative(inputs[0], out, g, **attrs),))


def _binary_rule(derivatives: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> VJPRule:
    @holomorphic
    def rule(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        a, b = inputs
        da, db = derivatives(a, b, out, g)
        return unbroadcast(da, a), unbroadcast(db, b)

    return rule


def unary_vjp(row: Unary) -> VJPRule:
    """The gradient rule of an elementwise table row: its `derivative` applied to the cotangent."""
    return _unary_rule(functools.partial(row.derivative, gb))


def binary_vjp(row: Binary) -> VJPRule:
    """The gradient rule of a binary table row: its `derivative`, summed to each operand's shape."""
    return _binary_rule(functools.partial(row.derivative, gb))


for _name, _derivative in UNARY_DERIVATIVES.items():
    register_vjp(_name)(_unary_rule(_derivative))
for _name, _derivatives in BINARY_DERIVATIVES.items():
    register_vjp(_name)(_binary_rule(_derivatives))


@register_vjp("where")
def _where(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[None, Tensor, Tensor]:
    cond, a, b = inputs
    return None, unbroadcast(gb.where(cond, g, 0.0), a), unbroadcast(gb.where(cond, 0.0, g), b)


@register_vjp("cast")
def _cast(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, dtype: str) -> tuple[Tensor | None]:
    (x,) = inputs
    return (gb.cast(gb.real(g) if is_float(x.dtype) else g, x.dtype) if is_inexact(x.dtype) else None,)


# -- reductions and normalisations ----------------------------------------------------------------
@register_vjp("sum")
def _sum(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...], keepdims: bool) -> tuple[Tensor]:
    (x,) = inputs
    return (gb.broadcast_to(_keep_reduced_axes(g, axes, keepdims), x.shape),)


@register_vjp("mean")
def _mean(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...], keepdims: bool) -> tuple[Tensor]:
    (x,) = inputs
    spread = gb.broadcast_to(_keep_reduced_axes(g, axes, keepdims), x.shape)
    return (spread / gb.size(x, axes, x.dtype),)


def _weighted_reduction(weights: Callable[..., Tensor]) -> VJPRule:
    def rule(
        inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...], keepdims: bool, **attrs: object
    ) -> tuple[Tensor]:
        return (_keep_reduced_axes(g, axes, keepdims) * weights(inputs[0], out, axes, keepdims, **attrs),)

    return rule


for _name, _weights in REDUCTION_WEIGHTS.items():
    register_vjp(_name)(_weighted_reduction(_weights))


@register_vjp("cumsum")
def _cumsum(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int, exclusive: bool, reverse: bool
) -> tuple[Tensor]:
    """The transpose of a running sum is the running sum the other way."""
    return (gb.cumsum(g, axis, exclusive=exclusive, reverse=not reverse),)


def cumprod_zero_split(x: Tensor, axis: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For the exact cumprod derivatives: (before, first, safe_x, skip_first). `before` marks the
    elements before the first zero of their slice along `axis`, `first` that zero; `safe_x` is x
    there and 1 elsewhere (safe to divide by); `skip_first` is the cumprod with that zero read as 1."""
    zero = gb.cast(gb.equal(x, 0.0), x.dtype)
    seen = gb.cumsum(zero, axis)
    before, first = gb.equal(seen, 0.0), gb.equal(seen * zero, 1.0)
    return before, first, gb.where(before, x, 1.0), gb.cumprod(gb.where(first, 1.0, x), axis)


@register_vjp("cumprod")
def _cumprod(inputs: tuple[Tensor, ...], y: Tensor, g: Tensor, axis: int) -> tuple[Tensor]:
    before, first, safe_x, skip_first = cumprod_zero_split(inputs[0], axis)
    at_first = gb.cumsum(g * skip_first, axis, reverse=True)
    return (gb.where(before, gb.cumsum(g * y, axis, reverse=True) / safe_x, gb.where(first, at_first, 0.0)),)


@register_vjp("softmax")
def _softmax(inputs: tuple[Tensor, ...], y: Tensor, g: Tensor, axis: int) -> tuple[Tensor]:
    return (y * (g - gb.sum(g * y, axis, keepdims=True)),)


@register_vjp("log_softmax")
def _log_softmax(inputs: tuple[Tensor, ...], y: Tensor, g: Tensor, axis: int) -> tuple[Tensor]:
    return (g - gb.exp(y) * gb.sum(g, axis, keepdims=True),)


# -- shapes -----------------------------------------------------------------------------------------
@register_vjp("reshape")
def _reshape(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, shape: tuple[Dim, ...]) -> tuple[Tensor]:
    return (gb.reshape(g, inputs[0].shape),)


@register_vjp("transpose")
def _transpose(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, perm: tuple[int, ...]) -> tuple[Tensor]:
    return (gb.transpose(g, [int(p) for p in np.argsort(perm)]),)


@register_vjp("broadcast_to")
def _broadcast_to(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, shape: tuple[Dim, ...]) -> tuple[Tensor]:
    return (unbroadcast(g, inputs[0]),)


@register_vjp("expand_dims")
def _expand_dims(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...]) -> tuple[Tensor]:
    return (gb.squeeze(g, axes),)


@register_vjp("squeeze")
def _squeeze(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axes: tuple[int, ...]) -> tuple[Tensor]:
    return (gb.expand_dims(g, axes),)


@register_vjp("concat")
def _concat(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, axis: int) -> list[Tensor]:
    cotangents, offset = [], 0
    for x in inputs:
        starts = [offset if i == axis else 0 for i in range(g.ndim)]
        stops = [as_dim(offset + d) if i == axis else d for i, d in enumerate(x.shape)]
        cotangents.append(gb.slice(g, starts, stops))
        offset = stops[axis]
    return cotangents


@register_vjp("slice")
def _slice(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, starts: tuple, stops: tuple, steps: tuple
) -> tuple[Tensor]:
    (x,) = inputs
    high = [
        as_dim(dim - start - _strided_extent(count, step))
        for dim, start, count, step in zip(x.shape, starts, out.shape, steps)
    ]
    return (gb.pad(g, starts, high, [step - 1 for step in steps]),)


@register_vjp("pad")
def _pad(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, low: tuple, high: tuple, interior: tuple) -> tuple[Tensor]:
    (x,) = inputs
    stops = [_past_last(lo, d, k + 1) for lo, d, k in zip(low, x.shape, interior)]
    return (gb.slice(g, low, stops, [k + 1 for k in interior]),)


# -- linear algebra -----------------------------------------------------------------------------------
@register_vjp("matmul")
@holomorphic
def _matmul(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    a, b = inputs
    da = unbroadcast(gb.matmul(g, _swap_last_two(b)), a)
    if b.ndim == 2 < a.ndim:  # one matrix for every batch element (a linear layer): one matmul over all rows
        return da, gb.matmul(_swap_last_two(_rows(a)), _rows(g))
    return da, unbroadcast(gb.matmul(_swap_last_two(a), g), b)


def _rows(t: Tensor) -> Tensor:
    """`t` as a matrix: its leading axes flattened into rows."""
    return gb.reshape(t, (-1, t.shape[-1]))
