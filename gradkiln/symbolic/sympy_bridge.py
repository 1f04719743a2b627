"""The sympy bridge: elementwise subgraphs as sympy expressions and back, and their derivatives.

- `to_sympy(outputs, inputs)` applies `expression_of` (the sympy form of one elementwise node,
  in `gradkiln.graph.ops.fused`) over a whole subgraph; `from_sympy(exprs, inputs)` emits
  ordinary nodes for expressions.
- `vjp_exprs` and `jvp_exprs` differentiate expressions. Each head's local derivative comes from
  sympy (`sympy.diff` of the head at a fresh symbol, once per head); the chain rule is applied
  over the expression DAG in one reverse (or forward) sweep, so the result has the size of the
  expression. (`sympy.diff` of a whole nested expression grows exponentially with its depth: a
  50-op chain takes minutes.) Derivatives refer to a head's own value where sympy writes them
  so (tanh' = 1 - tanh**2), and `share` swaps in values the caller already has, such as the
  forward outputs of a fused node.
Expressions are built with `evaluate=False`: sympy keeps the graph's operations as they are
(see `gradkiln.graph.ops.fused`).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.ops.fused import (
    OP_OF_FUNCTION,
    add,
    call,
    expression_of,
    fold,
    mul,
    number,
    power,
    subexpressions,
    substitute,
    symbols,
)

Expr = sympy.Expr
_Y = sympy.Symbol("_y")  # a head's own value in a derivative template
_S = sympy.Symbol("_s")  # a head's argument in a derivative template


def to_sympy(outputs: Sequence[Tensor], inputs: Sequence[Tensor]) -> list[Expr]:
    """The expressions of `outputs` over the symbols x0.. standing for `inputs`: every node
    between them must be elementwise with a sympy form (`EXPRESSIBLE`) or a scalar constant."""
    env: dict[Any, Expr] = {x.value: s for x, s in zip(inputs, symbols(len(inputs)))}

    def visit(t: Tensor) -> Expr:
        if t.value not in env:
            node = t.node
            if node.op == "constant" and np.size(node.attrs["value"]) == 1:
                env[t.value] = number(node.attrs["value"])
            else:
                args = [visit(Tensor(t.graph, v)) for v in node.inputs]
                exprs = expression_of(node.op, args, node.attrs) if node.op != "input" else None
                if exprs is None:
                    raise GradientError(f"to_sympy: {node.label} ({node.op}) has no sympy form and is not an input")
                env.update(zip(node.outputs, exprs))
        return env[t.value]

    return [visit(t) for t in outputs]


def from_sympy(exprs: Sequence[Expr], inputs: Sequence[Tensor]) -> list[Tensor]:
    """Ordinary nodes computing `exprs` (over x0.. standing for `inputs`): the inverse of `to_sympy`."""
    by_symbol = dict(zip(symbols(len(inputs)), inputs))
    dtype = inputs[0].dtype

    def apply(op: str, args: list[Any]) -> Tensor:
        tensors = [a if isinstance(a, Tensor) else gb.constant(np.asarray(a, dtype)) for a in args]
        return gb.emit(op, *tensors)

    results = fold(exprs, by_symbol.__getitem__, float, apply)
    return [r if isinstance(r, Tensor) else gb.constant(np.asarray(r, dtype)) for r in results]


@functools.cache
def _template(head: type) -> list[Expr]:
    """sympy's derivative of `head` at _s, with the head's own value written _y."""
    applied = head(_S)
    return [sympy.diff(applied, _S).xreplace({applied: _Y})]


def partials(expr: Expr) -> list[tuple[Expr, Expr]]:
    """(argument, d expr / d argument) for each argument of `expr`'s head."""
    args = expr.args
    if isinstance(expr, sympy.Add):
        return [(a, sympy.Integer(1)) for a in args]
    if isinstance(expr, sympy.Mul):
        return [(a, mul(*args[:i], *args[i + 1 :])) for i, a in enumerate(args)]
    if isinstance(expr, sympy.Pow):
        base, exponent = args
        if exponent.is_Number:
            return [(base, mul(exponent, power(base, exponent - 1)))]
        return [(base, mul(exponent, power(base, exponent - 1))), (exponent, mul(expr, call("log", base)))]
    if expr.func not in OP_OF_FUNCTION:
        raise GradientError(f"no derivative for {expr.func} in a fused expression")
    (template,) = _template(expr.func)
    return [(args[0], substitute(template, {_S: args[0], _Y: expr}))]


def vjp_exprs(exprs: Sequence[Expr], cotangents: Sequence[Expr | None], wrt: Sequence[Expr]) -> list[Expr]:
    """sum_k cotangents[k] * d exprs[k] / d w for each w in `wrt` (0 where w does not occur)."""
    adjoint: dict[Expr, list[Expr]] = {}
    for e, g in zip(exprs, cotangents):
        if g is not None:
            adjoint.setdefault(e, []).append(g)
    for e in reversed(subexpressions(exprs)):
        if e in adjoint and e.args and not e.is_Number:
            g = add(*adjoint[e])
            for arg, d in partials(e):
                if not arg.is_Number:
                    adjoint.setdefault(arg, []).append(mul(g, d))
    return [add(*adjoint[w]) if w in adjoint else sympy.Integer(0) for w in wrt]


def jvp_exprs(exprs: Sequence[Expr], tangents: Mapping[Expr, Expr]) -> list[Expr]:
    """sum_i d exprs[k] / d x_i * tangents[x_i] for each k (0 where no tangent reaches)."""
    tangent: dict[Expr, Expr] = dict(tangents)
    for e in subexpressions(exprs):
        if e not in tangent and e.args and not e.is_Number:
            terms = [mul(d, tangent[a]) for a, d in partials(e) if a in tangent]
            if terms:
                tangent[e] = add(*terms)
    return [tangent.get(e, sympy.Integer(0)) for e in exprs]


def share(exprs: Sequence[Expr], known: Mapping[Expr, Expr]) -> list[Expr]:
    """`exprs` with each subexpression the caller already has (`known`: expression -> symbol)
    read from there instead of recomputed."""
    return [substitute(e, known) for e in exprs]
