"""Jacobian-vector product rules (forward mode), one per op, keyed by op name in `JVP_RULES`.

A rule is called as `rule(inputs, output, tangents, **attrs)`: `inputs` and `output` as for a
vjp rule (see `vjp_rules`), `tangents` one Tensor or None per input (None: a zero tangent; at
least one is not None). It returns the output's tangent (a tuple for a multi-output op), or None
for a zero tangent; a tangent that broadcasts to the output's shape is broadcast. Rules emit
ordinary nodes with the builder API, like vjp rules, and follow the same conventions at kinks
and ties (listed in the `vjp_rules` docstring), so `<J v, u> == <v, J^T u>` holds everywhere.

Elementwise rules reuse the vjp tables: a unary op's Jacobian is diagonal, hence its own
transpose, and a binary op's partial derivative with respect to one operand applied to a
tangent is what its vjp formula gives with the cotangent replaced by that tangent. Ops that are
linear in their operands (shape ops, sums) apply themselves to the tangents.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Sequence

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_inexact
from ..graph.ops.elementwise_table import Unary
from ..graph.registry import Registry
from .vjp_rules import (
    BINARY_DERIVATIVES,
    NON_DIFFERENTIABLE,
    REDUCTION_WEIGHTS,
    UNARY_DERIVATIVES,
    VJP_RULES,
    cumprod_zero_split,
)

Tangents = Sequence[Tensor | None]
JVPRule = Callable[..., Tensor | Sequence[Tensor | None] | None]

JVP_RULES: Registry[JVPRule] = Registry("jvp rule")


def register_jvp(op_name: str, **how: Any) -> Callable[[JVPRule], JVPRule]:
    """Decorator: make `rule` the forward-mode derivative of op `op_name` (also for custom ops);
    `how` is `Registry.register`'s `when=`/`override=`."""
    if op_name in NON_DIFFERENTIABLE:
        raise ValueError(f"op {op_name!r} is non-differentiable: it takes no jvp rule")
    return JVP_RULES.register(op_name, **how)


def _total(parts: Iterable[Tensor]) -> Tensor:
    """The sum of the (one or two) contributions to a tangent."""
    return functools.reduce(gb.add, parts)


def _unary_rule(derivative: Callable[..., Tensor]) -> JVPRule:
    return lambda inputs, out, tangents, **attrs: derivative(inputs[0], out, tangents[0], **attrs)


def unary_jvp(row: Unary) -> JVPRule:
    """The forward-mode rule of an elementwise table row: its `derivative` applied to the tangent."""
    return _unary_rule(functools.partial(row.derivative, gb))


def _binary_rule(derivatives: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> JVPRule:
    def rule(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
        a, b = inputs
        return _total(derivatives(a, b, out, t)[slot] for slot, t in enumerate(tangents) if t is not None)

    return rule


def _linear_rule(op: str) -> JVPRule:
    """For an op linear in all its operands: the op applied to the tangents (zeros for None)."""

    def rule(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: object) -> Tensor:
        return gb.emit(op, *(zeros_like(x) if t is None else t for x, t in zip(inputs, tangents)), **attrs)

    return rule


for _name, _derivative in UNARY_DERIVATIVES.items():
    register_jvp(_name)(_unary_rule(_derivative))
for _name, _derivatives in BINARY_DERIVATIVES.items():
    register_jvp(_name)(_binary_rule(_derivatives))
for _name in (
    "sum",
    "mean",
    "reshape",
    "transpose",
    "broadcast_to",
    "expand_dims",
    "squeeze",
    "concat",
    "slice",
    "pad",
    "cumsum",
):
    register_jvp(_name)(_linear_rule(_name))


@register_jvp("where")
def _where(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    _, ta, tb = tangents
    return gb.where(inputs[0], 0.0 if ta is None else ta, 0.0 if tb is None else tb)


@register_jvp("cast")
def _cast(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, dtype: str) -> Tensor | None:
    return gb.cast(tangents[0], dtype) if is_inexact(dtype) else None


def _weighted_reduction(weights: Callable[..., Tensor]) -> JVPRule:
    def rule(
        inputs: tuple[Tensor, ...],
        out: Tensor,
        tangents: Tangents,
        axes: tuple[int, ...],
        keepdims: bool,
        **attrs: object,
    ) -> Tensor:
        return gb.sum(tangents[0] * weights(inputs[0], out, axes, keepdims, **attrs), axes, keepdims)

    return rule


for _name, _weights in REDUCTION_WEIGHTS.items():
    register_jvp(_name)(_weighted_reduction(_weights))


@register_jvp("cumprod")
def _cumprod(inputs: tuple[Tensor, ...], y: Tensor, tangents: Tangents, axis: int) -> Tensor:
    """Before the first zero of a slice, y * cumsum(t / x); from it on only the first zero's
    tangent contributes, times the cumprod with that zero read as 1 (see `cumprod_zero_split`)."""
    (t,) = tangents
    before, first, safe_x, skip_first = cumprod_zero_split(inputs[0], axis)
    from_first = gb.sum(gb.where(first, t, 0.0), axis, keepdims=True) * skip_first
    return gb.where(before, y * gb.cumsum(t / safe_x, axis), from_first)


@register_jvp("softmax")
def _softmax(inputs: tuple[Tensor, ...], y: Tensor, tangents: Tangents, axis: int) -> Tensor:
    """The softmax Jacobian diag(y) - y y^T is symmetric: the jvp is the vjp."""
    return VJP_RULES["softmax"](inputs, y, tangents[0], axis=axis)[0]


@register_jvp("log_softmax")
def _log_softmax(inputs: tuple[Tensor, ...], y: Tensor, tangents: Tangents, axis: int) -> Tensor:
    (t,) = tangents
    return t - gb.sum(gb.exp(y) * t, axis, keepdims=True)


@register_jvp("matmul")
def _matmul(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    (a, b), (ta, tb) = inputs, tangents
    return _total(gb.matmul(x, y) for x, y in ((ta, b), (a, tb)) if x is not None and y is not None)
