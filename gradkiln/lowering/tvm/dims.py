"""Symbolic dims for TVM: sympy expressions become int64 TIR expressions over one `tirx.Var` per symbol.

Sharing one variable per symbol is what lets a single compiled module serve every batch size: the
VM binds the variables from the shapes of the arguments at call time.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Sequence

import sympy
from tvm import tirx

from ...graph import LoweringError
from ...graph.types import Dim

_COMBINE: dict[Any, Callable[..., tirx.PrimExpr]] = {
    sympy.Add: lambda *xs: functools.reduce(operator.add, xs),
    sympy.Mul: lambda *xs: functools.reduce(operator.mul, xs),
    sympy.Max: lambda *xs: functools.reduce(tirx.max, xs),
    sympy.Min: lambda *xs: functools.reduce(tirx.min, xs),
    sympy.Mod: tirx.floormod,
}
_ROUNDED: dict[Any, Callable[..., tirx.PrimExpr]] = {sympy.floor: tirx.floordiv, sympy.ceiling: tirx.ceildiv}


class DimConverter:
    """Converts gradkiln dims (ints or sympy expressions) to TIR, creating one variable per symbol."""

    def __init__(self) -> None:
        self.vars: dict[sympy.Symbol, tirx.Var] = {}

    def __call__(self, dim: Dim) -> tirx.PrimExpr:
        if isinstance(dim, int):
            return tirx.IntImm("int64", dim)
        expr = sympy.sympify(dim)
        if expr.is_Integer:
            return tirx.IntImm("int64", int(expr))
        if expr.is_Symbol:
            return self.vars.setdefault(expr, tirx.Var(expr.name, "int64"))
        if expr.func in _ROUNDED:
            numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
            return _ROUNDED[expr.func](self(numerator), self(denominator))
        if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
            return functools.reduce(operator.mul, [self(expr.base)] * int(expr.exp))
        if expr.func in _COMBINE:
            return _COMBINE[expr.func](*map(self, expr.args))
        raise LoweringError(f"cannot express the dim {dim} in TIR (only +, *, max, min, mod, floor and ceiling)")

    def shape(self, dims: Sequence[Dim]) -> list[tirx.PrimExpr]:
        return [self(d) for d in dims]
