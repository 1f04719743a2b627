"""The core of the builder API: sources, emitting, promotion and elementwise ops.

Every function adds nodes to the graph of its tensor operands (or the open graph) and returns
`Tensor` handles. Python scalars are weakly typed: they take the dtype of the tensor they meet.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..body import BodyGraph, open_body
from ..dtypes import DEFAULT_FLOAT, as_dtype, complex_dtype, is_complex, is_inexact, promote
from ..errors import GraphError
from ..ir import Graph, current_graph
from ..tensor import Tensor
from ..types import TensorType, normalize_axes

TensorLike = Any  # Tensor, numpy array, or Python scalar


# -- sources ----------------------------------------------------------------------------------
def input(name: str, shape: Sequence[Any], dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """A graph input fed by `name` at call time; dims may be ints or names such as "N"."""
    graph = current_graph()
    node = graph.add_node("input", (), {"type": TensorType(dtype, tuple(shape))}, name=name)
    return Tensor(graph, node.outputs[0])


def param(name: str, value: Any) -> Tensor:
    """A trainable parameter with its initial value (fed by `name` to override it)."""
    graph = current_graph()
    node = graph.add_node("param", (), {"value": _as_array(value)}, name=name)
    return Tensor(graph, node.outputs[0])


def constant(value: Any, dtype: Any = None, graph: Graph | None = None) -> Tensor:
    """A constant array. Numpy arrays and scalars keep their dtype (`np.uint8(1)` is uint8, as numpy 2
    treats numpy scalars: strongly typed, NEP 50); Python floats default to float32 and Python ints
    to int64, like PyTorch and JAX, and are weakly typed where they meet a tensor."""
    graph = graph or current_graph()
    array = _as_array(value) if dtype is None else np.asarray(value, dtype=as_dtype(dtype))
    return Tensor(graph, graph.add_node("constant", (), {"value": array}).outputs[0])


def _as_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if not _is_numpy(value):  # Python numbers and lists of them take the defaults
        if array.dtype == np.float64:
            array = array.astype(DEFAULT_FLOAT)
        elif array.dtype.kind in "iu":
            array = array.astype("int64")
    as_dtype(array.dtype)
    return array


def _is_numpy(value: Any) -> bool:
    """Numpy arrays and scalars carry their dtype (np.float64 is also a Python float: test it first)."""
    return isinstance(value, (np.ndarray, np.generic))


# -- emitting ---------------------------------------------------------------------------------
def emit(op: str, *operands: TensorLike, name: str | None = None, **attrs: Any) -> Any:
    """Add one `op` node over `operands`; returns a Tensor (or a tuple for multi-output ops)."""
    graph = _graph_of(operands)
    values = [_lift(graph, x, None).value for x in operands]
    node = graph.add_node(op, values, attrs, name=name)
    outs = tuple(Tensor(graph, v) for v in node.outputs)
    return outs[0] if len(outs) == 1 else outs


def fused(exprs: Any, *inputs: Tensor) -> Any:
    """One fused elementwise node computing sympy expression(s) over the symbols x0, x1, ...
    standing for `inputs` (broadcast together): `gk.fused(sympy.tanh(x0) * x1, a, b)`. Returns a
    Tensor, or a tuple for a sequence of expressions. The heads allowed are listed in
    `gradkiln.graph.ops.fused`; the optimizer's fusion pass makes such nodes from elementwise ops."""
    from ..ops.fused import Expressions

    many = isinstance(exprs, (list, tuple))
    out = emit("fused", *inputs, exprs=Expressions(tuple(exprs) if many else (exprs,)))
    return out if many or not isinstance(out, tuple) else out[0]


def fused_reduce(
    expr: Any, *inputs: Tensor, reduce: str = "sum", axis: int | Sequence[int] | None = None, keepdims: bool = False
) -> Tensor:
    """One node reducing (`reduce`: "sum", "mean" or "max", over `axis`, None: all axes) the
    sympy expression `expr` over x0, x1, ... standing for `inputs` (broadcast together):
    `gk.fused_reduce(x0 * x0, a)` is the sum of squares without the squares as a value. The
    fusion pass makes such nodes from a reduction of a fused node; see `gradkiln.graph.ops.fused_reduce`."""
    from ..ops.fused import Expressions
    from ..ops.fused_reduce import map_type

    exprs = Expressions((expr,))
    rank = len(map_type(tuple(t.type for t in inputs), exprs).shape)
    return emit("fused_reduce", *inputs, exprs=exprs, reduce=reduce, axes=normalize_axes(axis, rank), keepdims=keepdims)


def fused_matmul(
    epilogue: Any, a: Tensor, b: Tensor, *extras: Tensor, transpose_a: bool = False, transpose_b: bool = False
) -> Any:
    """One node computing the sympy expression(s) `epilogue` over x0 = a @ b (rank >= 2 operands;
    `transpose_a` / `transpose_b` read an operand with its last two axes swapped) and x1, x2, ...
    standing for `extras`: `gk.fused_matmul(Relu(x0 + x1), x, w, bias)`. Returns a Tensor, or a
    tuple for a sequence of expressions. The epilogue must keep the product's shape; the fusion
    pass makes such nodes from a matmul and the elementwise node reading it. See
    `gradkiln.graph.ops.fused_matmul`."""
    from ..ops.fused import Expressions

    many = isinstance(epilogue, (list, tuple))
    exprs = Expressions(tuple(epilogue) if many else (epilogue,))
    out = emit("fused_matmul", a, b, *extras, exprs=exprs, transpose_a=transpose_a, transpose_b=transpose_b)
    return out if many or not isinstance(out, tuple) else out[0]


def _graph_of(operands: Sequence[TensorLike]) -> Graph:
    body = open_body()
    if body is not None:  # tracing a loop body or branch: every op joins it, outer operands are captured
        return body
    graphs = {id(x.graph): x.graph for x in operands if isinstance(x, Tensor)}
    if len(graphs) > 1:
        raise GraphError("operands come from different graphs; build each computation in one graph")
    return next(iter(graphs.values())) if graphs else current_graph()


def _lift(graph: Graph, x: TensorLike, dtype: str | None) -> Tensor:
    if isinstance(x, Tensor):
        return graph.capture(x) if x.graph is not graph and isinstance(graph, BodyGraph) else x
    return constant(x, dtype, graph=graph)


def _promoted(*operands: TensorLike) -> tuple[Graph, list[Tensor]]:
    """Lift scalars (weakly typed) and cast tensors to their common dtype."""
    graph = _graph_of(operands)
    tensors = [x for x in operands if isinstance(x, Tensor)]
    dtype = promote(*[t.dtype for t in tensors]) if tensors else None
    scalars = [x for x in operands if not isinstance(x, Tensor) and not _is_numpy(x)]  # weakly typed
    if dtype is not None and any(isinstance(s, complex) for s in scalars) and not is_complex(dtype):
        dtype = complex_dtype(dtype)
    elif dtype is not None and any(isinstance(s, float) for s in scalars) and not is_inexact(dtype):
        dtype = DEFAULT_FLOAT
    elif dtype == "bool" and any(isinstance(s, int) and not isinstance(s, bool) for s in scalars):
        dtype = "int64"
    lifted = [_lift(graph, x, None if _is_numpy(x) else dtype) for x in operands]
    dtype = promote(*[t.dtype for t in lifted])
    return graph, [t if t.dtype == dtype else cast(t, dtype) for t in lifted]


def _binary(op: str, a: TensorLike, b: TensorLike, floats: bool = False) -> Tensor:
    _, (a, b) = _promoted(a, b)
    if floats and not is_inexact(a.dtype):
        a, b = cast(a, DEFAULT_FLOAT), cast(b, DEFAULT_FLOAT)
    return emit(op, a, b)


def binary_function(op: str, doc: str, floats: bool = False) -> Callable[[TensorLike, TensorLike], Tensor]:
    """The builder function of binary op `op`: operands promoted to one dtype (ints to the default
    float for float-only ops), then `emit` (`builder/elementwise.py` makes one per table row; the
    comparisons here)."""

    def binary(a: TensorLike, b: TensorLike) -> Tensor:
        return _binary(op, a, b, floats)

    binary.__name__, binary.__qualname__, binary.__doc__ = op, op, doc
    return binary


equal = binary_function("equal", "a == b elementwise (bool).")
not_equal = binary_function("not_equal", "a != b elementwise (bool).")
less = binary_function("less", "a < b elementwise (bool).")
less_equal = binary_function("less_equal", "a <= b elementwise (bool).")
greater = binary_function("greater", "a > b elementwise (bool).")
greater_equal = binary_function("greater_equal", "a >= b elementwise (bool).")


def _unary_operand(x: TensorLike, floats: bool = True) -> Tensor:
    """x as a tensor; ints cast to the default float for float-only ops."""
    x = _lift(_graph_of([x]), x, None)
    return cast(x, DEFAULT_FLOAT) if floats and not is_inexact(x.dtype) else x


def unary_function(op: str, doc: str, floats: bool = True) -> Callable[[TensorLike], Tensor]:
    """The builder function of unary op `op` (`builder/elementwise.py` makes one per table row)."""

    def unary(x: TensorLike) -> Tensor:
        return emit(op, _unary_operand(x, floats))

    unary.__name__, unary.__qualname__, unary.__doc__ = op, op, doc
    return unary


def gelu(x: TensorLike, approximate: str = "none") -> Tensor:
    """x * Phi(x), Phi the standard normal CDF (exact, with erf), or its "tanh" approximation."""
    if approximate not in ("none", "tanh"):
        raise GraphError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return emit("gelu", _unary_operand(x), approximate=approximate)


def leaky_relu(x: TensorLike, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, else negative_slope * x; the gradient at 0 is negative_slope (as in PyTorch)."""
    return emit("leaky_relu", _unary_operand(x), negative_slope=float(negative_slope))


def elu(x: TensorLike, alpha: float = 1.0) -> Tensor:
    """x for x > 0, else alpha * (e**x - 1); the gradient at 0 is alpha (as in PyTorch)."""
    return emit("elu", _unary_operand(x), alpha=float(alpha))


def clip(x: TensorLike, lo: float | None = None, hi: float | None = None) -> Tensor:
    """min(max(x, lo), hi); None leaves a side open. The gradient passes where lo <= x <= hi,
    bounds included (as in PyTorch), and is 0 outside."""
    return emit("clip", _unary_operand(x, floats=False), lo=lo, hi=hi)


def where(cond: TensorLike, a: TensorLike, b: TensorLike) -> Tensor:
    """a where cond is true, else b (broadcasting all three)."""
    graph, (a, b) = _promoted(a, b)
    return emit("where", _lift(graph, cond, "bool"), a, b)


def cast(x: TensorLike, dtype: Any) -> Tensor:
    """Convert to `dtype`; a no-op when it already has it."""
    x = _lift(_graph_of([x]), x, None)
    dtype = as_dtype(dtype)
    return x if x.dtype == dtype else emit("cast", x, dtype=dtype)


def stop_gradient(x: TensorLike) -> Tensor:
    """x itself, but treated as a constant by every derivative (grad, vjp, jvp): no gradient
    flows through it. `x + stop_gradient(f(x) - x)` computes f(x) with the gradient of x
    (a straight-through estimator)."""
    return emit("stop_gradient", _lift(_graph_of([x]), x, None))
