"""The fused elementwise op: one node computing one or more sympy expressions of its inputs.

`fused(x0, x1, ...; exprs=(e0, e1, ...))` evaluates each expression elementwise over the inputs
broadcast together (numpy rules); expression `k` is output `k`. Expressions are sympy trees over
the symbols `x0 .. x{n-1}` whose heads are `Add`, `Mul`, `Pow`, numbers, and the functions of
`FUNCTIONS` (one per gradkiln unary op). They are built with `evaluate=False`, so a tree keeps
the order of operations of the graph it came from, and sympy never folds `x - x` to 0 or
`exp(log x)` to x (wrong for NaN, Inf and negative x). `fold` walks an expression once with a
memo, so a subexpression shared in the tree is computed once; every backend evaluates
expressions through it (numpy here, TVM in lowering, ONNX in onnx_io).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import sympy

from ..errors import DTypeError, GraphError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes
from .common import require_float
from .elementwise import BINARY, UNARY
from .elementwise_table import UNARY_ROWS, Derivative


def _new_function(name: str, doc: str, derivative: Derivative) -> type[sympy.Function]:
    """A sympy function standing for op `name` (class name capitalized: `Softplus(x0)`), whose
    derivative is the row's `derivative.fdiff(x, self, FUNCTIONS)`."""

    def fdiff(self: sympy.Function, argindex: int = 1) -> sympy.Expr:
        return derivative.fdiff(self.args[0], self, FUNCTIONS)

    return type(name.capitalize(), (sympy.Function,), {"__doc__": doc, "fdiff": fdiff, "__module__": __name__})


# gradkiln unary op -> the sympy function standing for it in fused expressions: sympy's own, or one
# made from the row's derivative (each also a module attribute, `fused.Sigmoid`, so it pickles)
FUNCTIONS: dict[str, type[sympy.Function]] = {
    row.name: _new_function(row.name, row.doc, row.sympy) if isinstance(row.sympy, Derivative) else row.sympy
    for row in UNARY_ROWS
    if row.sympy is not None
}
globals().update({fn.__name__: fn for fn in FUNCTIONS.values() if fn.__module__ == __name__})
OP_OF_FUNCTION: dict[type, str] = {fn: op for op, fn in FUNCTIONS.items()}


@dataclass(frozen=True)
class Expressions:
    """A fused node's `exprs` attribute: its output expressions, in a type of their own so code
    that resolves symbolic dims inside attributes leaves them alone."""

    exprs: tuple[sympy.Expr, ...]

    def __iter__(self) -> Iterator[sympy.Expr]:
        return iter(self.exprs)

    def __len__(self) -> int:
        return len(self.exprs)

    def __getitem__(self, index: int) -> sympy.Expr:
        return self.exprs[index]

    def __str__(self) -> str:
        return ", ".join(map(str, self.exprs))


def symbols(count: int, start: int = 0) -> list[sympy.Symbol]:
    """The input symbols x{start} .. x{start+count-1} of a fused node's expressions."""
    return [sympy.Symbol(f"x{i}") for i in range(start, start + count)]


def fold(
    exprs: Sequence[sympy.Expr],
    leaf: Callable[[sympy.Symbol], Any],
    number: Callable[[float], Any],
    apply: Callable[[str, list[Any]], Any],
) -> list[Any]:
    """Evaluate `exprs` bottom up: `leaf(symbol)`, `number(value)`, and `apply(op, args)` for each
    operation, where op is "add", "mul", "div" (a product with factors of power -1 is a
    division), "pow", "sqrt", "rsqrt", "reciprocal", "square" or a FUNCTIONS key. Shared
    subexpressions are evaluated once."""
    memo: dict[sympy.Expr, Any] = {}

    def visit(expr: sympy.Expr) -> Any:
        if expr not in memo:
            memo[expr] = _visit(expr)
        return memo[expr]

    def _visit(expr: sympy.Expr) -> Any:
        if expr.is_Symbol:
            return leaf(expr)
        if expr.is_Atom and expr.is_number:  # 2, 0.5, pi, E
            return number(float(expr))
        if isinstance(expr, sympy.Add):
            return _chain("add", [visit(a) for a in expr.args])
        if isinstance(expr, sympy.Mul):
            return _product(expr.args)
        if isinstance(expr, sympy.Pow):
            return _power(*expr.args)
        op = OP_OF_FUNCTION.get(expr.func)
        if op is None:
            raise GraphError(f"fused expression {expr}: {expr.func} is not one of {sorted(FUNCTIONS)}")
        return apply(op, [visit(expr.args[0])])

    def _chain(op: str, values: list[Any]) -> Any:
        result = values[0]
        for value in values[1:]:
            result = apply(op, [result, value])
        return result

    def _product(factors: Sequence[sympy.Expr]) -> Any:
        over = [f.args[0] for f in factors if isinstance(f, sympy.Pow) and f.args[1] == -1]
        top = [f for f in factors if not (isinstance(f, sympy.Pow) and f.args[1] == -1)]
        if not top:
            return apply("reciprocal", [_chain("mul", [visit(f) for f in over])])
        result = _chain("mul", [visit(f) for f in top])
        return apply("div", [result, _chain("mul", [visit(f) for f in over])]) if over else result

    def _power(base: sympy.Expr, exponent: sympy.Expr) -> Any:
        named = {sympy.Rational(1, 2): "sqrt", sympy.Rational(-1, 2): "rsqrt", -1: "reciprocal", 2: "square"}
        if exponent.is_Number and exponent in named:
            return apply(named[exponent], [visit(base)])
        return apply("pow", [visit(base), visit(exponent)])

    return [visit(e) for e in exprs]


def add(*terms: sympy.Expr) -> sympy.Expr:
    return sympy.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]


def mul(*factors: sympy.Expr, exact: bool = False) -> sympy.Expr:
    """The product, factors of 1 dropped; a factor 0 makes it 0 unless `exact` (0 * inf is NaN:
    a graph's own products are exact, derivative terms with a zero factor are dropped)."""
    kept = [f for f in factors if f != 1]
    if not exact and any(f == 0 for f in kept):
        return sympy.Integer(0)
    return sympy.Mul(*kept, evaluate=False) if len(kept) > 1 else (kept[0] if kept else sympy.Integer(1))


def power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    return base if exponent == 1 else sympy.Pow(base, exponent, evaluate=False)


def call(op: str, arg: sympy.Expr) -> sympy.Expr:
    return FUNCTIONS[op](arg, evaluate=False)


_BINARY: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "add": add,
    "sub": lambda a, b: add(a, mul(sympy.Integer(-1), b)),
    "mul": functools.partial(mul, exact=True),
    "div": lambda a, b: mul(a, power(b, sympy.Integer(-1)), exact=True),
    "pow": power,
}
_UNARY: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "neg": lambda a: mul(sympy.Integer(-1), a),
    "sqrt": lambda a: power(a, sympy.Rational(1, 2)),
    "rsqrt": lambda a: power(a, sympy.Rational(-1, 2)),
    "reciprocal": lambda a: power(a, sympy.Integer(-1)),
    "square": lambda a: power(a, sympy.Integer(2)),
    "exp2": lambda a: power(sympy.Integer(2), a),
    "silu": lambda a: mul(a, call("sigmoid", a), exact=True),
    **{op: functools.partial(call, op) for op in FUNCTIONS},
}
EXPRESSIBLE: frozenset[str] = frozenset({*_BINARY, *_UNARY, "fused"})


def expression_of(op: str, args: Sequence[sympy.Expr], attrs: Mapping[str, Any]) -> list[sympy.Expr] | None:
    """The expressions of a node's outputs from its operands' expressions, or None when the op
    has no sympy form here."""
    if op in _BINARY:
        return [_BINARY[op](*args)]
    if op in _UNARY:
        return [_UNARY[op](args[0])]
    if op == "fused":
        by_symbol = dict(zip(symbols(len(args)), args))
        return [substitute(e, by_symbol) for e in attrs["exprs"]]
    return None


def number(value: Any) -> sympy.Expr:
    """A constant as a sympy number: an Integer when integral (so x**2 stays a square)."""
    value = float(np.asarray(value).reshape(-1)[0])
    return sympy.Integer(int(value)) if value.is_integer() and abs(value) < 2**31 else sympy.Float(value)


def substitute(expr: sympy.Expr, mapping: Mapping[sympy.Expr, sympy.Expr]) -> sympy.Expr:
    """`expr` with each subexpression in `mapping` replaced, rebuilt without evaluation (sympy's
    xreplace would evaluate, folding x - x and the like)."""
    memo: dict[sympy.Expr, sympy.Expr] = dict(mapping)

    def visit(e: sympy.Expr) -> sympy.Expr:
        if e not in memo:
            memo[e] = e.func(*map(visit, e.args), evaluate=False) if e.args else e
        return memo[e]

    return visit(expr)


def subexpressions(exprs: Sequence[sympy.Expr]) -> list[sympy.Expr]:
    """Every subexpression once, each after its arguments (iterative: expressions can be deep)."""
    order, seen = [], set()
    stack = [(e, False) for e in reversed(exprs)]
    while stack:
        e, expanded = stack.pop()
        if expanded:
            order.append(e)
        elif e not in seen:
            seen.add(e)
            stack.append((e, True))
            stack.extend((a, False) for a in reversed(e.args) if a not in seen)
    return order


# numpy semantics of fold's operations: the gradkiln ops' own functions
NUMPY_OPS: dict[str, Callable[..., Any]] = {
    op: (UNARY | BINARY)[op][0]
    for op in ("add", "mul", "div", "pow", "sqrt", "rsqrt", "reciprocal", "square", *FUNCTIONS)
}


def check_heads(exprs: Sequence[sympy.Expr], inputs: int | None = None) -> None:
    """Raise GraphError unless `exprs` are in the expression language: +, *, **, real numbers
    (inf and nan included: constants of the graph), FUNCTIONS heads, and (when `inputs` is
    given) only the symbols x0..x{inputs-1}."""
    known = set(symbols(inputs)) if inputs is not None else None
    for expr in subexpressions(list(exprs)):
        if expr.is_Symbol and known is not None and expr not in known:
            raise GraphError(f"a fused expression uses {expr} but the node has {inputs} inputs (x0..)")
        if expr.is_Atom and expr.is_number and expr.is_extended_real is False:
            raise GraphError(f"fused expression {expr}: numbers must be real")
        if not (expr.is_Atom or isinstance(expr, (sympy.Add, sympy.Mul, sympy.Pow)) or expr.func in OP_OF_FUNCTION):
            raise GraphError(
                f"fused expression {expr}: {expr.func.__name__} is not allowed; use +, *, ** and {sorted(FUNCTIONS)}"
            )


def operation_count(exprs: Sequence[sympy.Expr]) -> int:
    """How many operations evaluating `exprs` takes (fold's applications: an n-term sum is n - 1)."""
    applied: list[str] = []
    fold(exprs, lambda s: s, float, lambda op, args: applied.append(op))
    return len(applied)


def _compute(*arrays: Any, exprs: Expressions) -> tuple[Any, ...]:
    dtype = arrays[0].dtype
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    by_symbol = dict(zip(symbols(len(arrays)), arrays))
    number = functools.partial(np.asarray, dtype=dtype)  # 0-d arrays: a head may apply to a constant
    results = fold(exprs, by_symbol.__getitem__, number, lambda op, args: NUMPY_OPS[op](*args))
    return tuple(np.broadcast_to(np.asarray(r, dtype), shape).astype(dtype, copy=False) for r in results)


def _infer(*inputs: TensorType, exprs: Expressions) -> tuple[TensorType, ...]:
    if not inputs:
        raise GraphError("a fused node needs at least one input")
    if not isinstance(exprs, Expressions):
        raise GraphError(f"a fused node's exprs must be a gradkiln.graph.ops.fused.Expressions, got {type(exprs)}")
    require_float(*inputs)
    dtypes = {t.dtype for t in inputs}
    if len(dtypes) != 1:
        raise DTypeError(f"fused inputs must share one dtype, got {sorted(dtypes)}")
    check_heads(list(exprs), len(inputs))
    out = TensorType(inputs[0].dtype, broadcast_shapes(*(t.shape for t in inputs)))
    return (out,) * len(exprs)


register_op(
    OpDef(
        "fused",
        _infer,
        _compute,
        None,
        doc="attrs: exprs, the Expressions (sympy, over x0..x{n-1}) of the outputs; see gradkiln.graph.ops.fused.",
    )
)
