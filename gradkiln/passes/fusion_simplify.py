"""Sympy simplification of fused expressions, for the fusion pass under `unsafe_math`.

Arithmetic is evaluated (so `x * y / y -> x` and `x - x -> 0`), inverse heads cancel
(`exp(log x) -> x` and its kin), then `sympy.cancel` rewrites the rational structure (treating
each head as a variable). Each step assumes finite, in-domain values, which is what
`unsafe_math` promises. Bounded twice: only expressions of at most `limit` operations are
tried, and function heads are never evaluated by sympy (its evaluation of nested heads such as
tanh queries assumptions in time exponential in the depth). A rewrite replaces the expressions
only when it has no more operations and stays in the expression language; results are cached.
"""

from __future__ import annotations

import functools
from typing import Sequence

import sympy

from ..graph import GraphError
from ..graph.ops.fused import FUNCTIONS, check_heads, operation_count, subexpressions

Expr = sympy.Expr


# f(g(a)) -> a for these (f, g): true for finite, in-domain a, which `unsafe_math` assumes
_INVERSES: frozenset[tuple[type, type]] = frozenset(
    (FUNCTIONS[f], FUNCTIONS[g]) for f, g in [("exp", "log"), ("log", "exp"), ("log1p", "expm1"), ("expm1", "log1p")]
)


_UNDEFINED = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)


def simplify_exprs(exprs: Sequence[Expr], limit: int) -> tuple[Expr, ...]:
    """`exprs` rewritten by sympy when they have at most `limit` operations and the rewrite has
    no more operations than they do; otherwise `exprs` unchanged. Assumes finite, in-domain
    values (`x - x -> 0` is wrong for Inf): callers ask only under `unsafe_math`."""
    exprs = tuple(exprs)
    if not 0 < operation_count(exprs) <= limit:
        return exprs
    return _simplified(exprs)


@functools.lru_cache(maxsize=4096)
def _simplified(exprs: tuple[Expr, ...]) -> tuple[Expr, ...]:
    try:
        rewritten = tuple(sympy.cancel(e) for e in _evaluated(exprs))
        check_heads(rewritten)
    except (GraphError, sympy.PolynomialError):  # a head outside the expression language
        return exprs
    if any(e.has(*_UNDEFINED) for e in rewritten) and not any(e.has(*_UNDEFINED) for e in exprs):
        return exprs  # sympy found a 0/0 or inf - inf the graph does not compute for finite values
    return rewritten if operation_count(rewritten) <= operation_count(exprs) else exprs


def _evaluated(exprs: Sequence[Expr]) -> list[Expr]:
    memo: dict[Expr, Expr] = {}
    for e in subexpressions(exprs):
        args = [memo[a] for a in e.args]
        if not args:
            memo[e] = e
        elif isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow)):
            memo[e] = e.func(*args)
        elif (e.func, args[0].func) in _INVERSES:
            memo[e] = args[0].args[0]
        else:
            memo[e] = e.func(*args, evaluate=False)
    return [memo[e] for e in exprs]
