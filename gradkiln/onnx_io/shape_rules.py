"""Import rules for shape ops, evaluated at import time where their inputs are known.

Known values are numpy arrays; symbolic dims make them object arrays of ints and sympy
expressions, on which the arithmetic below works unchanged (partial evaluation).
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np
import sympy
from onnx import helper

from ..graph import Graph, ONNXError, Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_int
from ..graph.types import Dim, as_dim, dims_equal, normalize_axis
from .dtypes import from_onnx
from .import_select import check_indices, gather
from .importer import ImportContext, ImportRule, Known, OnnxNode, Operand, register_importer


def _int_div(a: Any, b: Any) -> Any:
    """ONNX integer division (truncating); dims are non-negative, so a floor for symbols."""
    if isinstance(a, sympy.Expr) or isinstance(b, sympy.Expr):
        return sympy.floor(sympy.sympify(a) / b)
    return abs(int(a)) // abs(int(b)) * (1 if (a >= 0) == (b >= 0) else -1)


def _extreme(pick: Callable, symbolic: type) -> Callable[[Any, Any], Any]:
    return lambda a, b: symbolic(a, b) if isinstance(a, sympy.Expr) or isinstance(b, sympy.Expr) else pick(a, b)


KNOWN_ELEMENTWISE: dict[str, Callable[..., Any]] = {
    "Add": operator.add,
    "Sum": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Neg": operator.neg,
    "Max": _extreme(max, sympy.Max),
    "Min": _extreme(min, sympy.Min),
    "Div": operator.truediv,
    "Mod": operator.mod,  # fmod=0: the sign of the divisor, as Python's %
}


def tidy(array: Any, dtype: str) -> Known:
    """A Known in its plainest form: numeric whenever no element is symbolic."""
    array = np.asarray(array)
    if array.dtype == object:
        flat = [sympy.sympify(v) if isinstance(v, sympy.Basic) else v for v in array.reshape(-1)]
        if any(isinstance(v, sympy.Basic) and not v.is_Number for v in flat):
            return Known(np.array(flat, dtype=object).reshape(array.shape), dtype)
        array = np.array([int(v) if is_int(dtype) else float(v) for v in flat]).reshape(array.shape)
    return Known(array.astype(dtype), dtype)


def static_dims(x: Tensor, count: int, op_type: str) -> list[int]:
    """The last `count` dims of `x`, which `op_type` needs static (it builds a constant of their size)."""
    dims = list(x.shape[-count:]) if x.ndim >= count else []
    if len(dims) < count or not all(isinstance(d, int) for d in dims):
        raise ONNXError(f"{op_type} needs an input whose last {count} dims are static, got shape {x.shape}")
    return dims


def foldable(args: list[Operand]) -> bool:
    """Whether to evaluate an op at import time: its inputs are known, and it computes on ints or
    symbolic dims (shape arithmetic); float constant arithmetic stays in the graph as written."""
    known = [a for a in args if a is not None]
    return all(isinstance(a, Known) for a in known) and any(is_int(a.dtype) or a.array.dtype == object for a in known)


def known_broadcast(ctx: ImportContext, op_type: str, args: list[Known]) -> None:
    """Charge the import-time result of elementwise `op_type` over `args` (their broadcast shape)
    before it is computed; an `ONNXError` when the shapes do not broadcast."""
    shapes = [a.array.shape for a in args]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ONNXError(f"{op_type} of known values of shapes {shapes}, which do not broadcast") from None
    ctx.budget.value(shape, f"the {op_type} of known values of shapes {shapes}")


def eval_elementwise(ctx: ImportContext, op_type: str, args: list[Operand], dtype: str | None = None) -> Known:
    """Evaluate an elementwise op on known values (object arrays included)."""
    dtype = dtype or args[0].dtype
    if op_type == "Cast":
        return tidy(args[0].array, dtype)
    known_broadcast(ctx, op_type, args)
    fn = _int_div if op_type == "Div" and is_int(dtype) else KNOWN_ELEMENTWISE[op_type]
    arrays = [a.array.astype(object) for a in args]
    result = arrays[0]
    try:
        for other in arrays[1:]:
            result = np.frompyfunc(fn, 2, 1)(result, other)
    except ZeroDivisionError:
        raise ONNXError(f"{op_type} of known integers is a division by zero (ONNX leaves it undefined)") from None
    if len(arrays) == 1:
        result = np.frompyfunc(fn, 1, 1)(result)
    return tidy(result, dtype)


# Comparisons, logic and selection: evaluated at import time when every input is known and each
# comparison of symbolic dims is decided by what sympy knows of them (dims are non-negative
# integers, so `N == -1` is False; `N == 1` is undecided and stays a run-time comparison).
KNOWN_NUMERIC: dict[str, tuple[Callable[..., np.ndarray], str | None]] = {
    "Equal": (np.equal, "bool"),
    "Less": (np.less, "bool"),
    "LessOrEqual": (np.less_equal, "bool"),
    "Greater": (np.greater, "bool"),
    "GreaterOrEqual": (np.greater_equal, "bool"),
    "Not": (np.logical_not, "bool"),
    "And": (np.logical_and, "bool"),
    "Or": (np.logical_or, "bool"),
    "Xor": (np.logical_xor, "bool"),
    "Where": (np.where, None),  # the dtype of the selected values
}
# a comparison of a and b is the sign of a - b, which sympy's assumptions may decide
_SIGN_TESTS = {
    "Equal": "is_zero",
    "Less": "is_negative",
    "LessOrEqual": "is_nonpositive",
    "Greater": "is_positive",
    "GreaterOrEqual": "is_nonnegative",
}


def _compare_dims(test: str) -> Callable[[Any, Any], bool | None]:
    def compare(a: Any, b: Any) -> bool | None:
        return getattr(sympy.sympify(a - b), test)

    return compare


def _symbolic_comparison(op_type: str, args: list[Known]) -> bool:
    return op_type in _SIGN_TESTS and any(a.array.dtype == object for a in args)


def decided(op_type: str, args: list[Known]) -> np.ndarray | None:
    """`op_type` evaluated on known `args`; None when a comparison of symbolic dims is undecided."""
    if not _symbolic_comparison(op_type, args):
        return KNOWN_NUMERIC[op_type][0](*(a.array for a in args))
    result = np.frompyfunc(_compare_dims(_SIGN_TESTS[op_type]), 2, 1)(*(a.array for a in args))
    if any(r is None for r in np.asarray(result, dtype=object).reshape(-1)):
        return None
    return np.asarray(result, dtype=bool)


def all_known_numbers(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> bool:
    """Whether `folded` can evaluate the node: every input is known, and each comparison of
    symbolic dims is decided (a few elements: they come from shapes)."""
    if not all(isinstance(a, Known) for a in args):
        return False
    return not _symbolic_comparison(n.op_type, args) or decided(n.op_type, args) is not None


def folded(op_type: str) -> ImportRule:
    """The import rule of a KNOWN_NUMERIC op over known values: evaluated at import time."""

    def fold(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        known_broadcast(ctx, op_type, args)
        return tidy(decided(op_type, args), KNOWN_NUMERIC[op_type][1] or args[-1].dtype)

    return fold


def known_axes(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[int] | None:
    """Axes from the second input (newer opsets) or the `axes` attribute; None when absent."""
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in ctx.dims(args[1], "axes")]
    return list(n.attrs["axes"]) if "axes" in n.attrs else None


def reduction(reduce: Callable[..., Tensor]) -> ImportRule:
    """The rule of an ONNX reduction: axes from the attribute or input; none means all of
    them, or the identity with `noop_with_empty_axes`."""

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        x, axes = ctx.tensor(args[0]), known_axes(ctx, n, args)
        if not axes and n.attrs.get("noop_with_empty_axes", 0):
            return x
        return reduce(x, axes or None, keepdims=bool(n.attrs.get("keepdims", 1)))

    return rule


@register_importer("Constant")
def _constant(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    if len(n.attrs) != 1:
        raise ONNXError(f"a Constant holds its value in exactly one attribute; this one has {sorted(n.attrs)}")
    ((key, value),) = n.attrs.items()
    kinds = {"value_int": np.int64, "value_ints": np.int64, "value_float": np.float32, "value_floats": np.float32}
    array = np.asarray(value, dtype=kinds.get(key))
    return tidy(array, from_onnx(helper.np_dtype_to_tensor_dtype(array.dtype), n.label))


@register_importer("Shape")
def _shape(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = args[0]
    dims = x.shape if isinstance(x, Tensor) else x.array.shape
    start, end = n.attrs.get("start", 0), n.attrs.get("end", len(dims))
    return tidy(np.array(list(dims), dtype=object)[start:end], "int64")


@register_importer("Size")
def _size(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    dims = _shape(ctx, n, args).array
    return tidy(np.prod(dims.astype(object)), "int64")


@register_importer("Gather")
def _gather(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Evaluated when the data is known; else picked from the tensor at the known indices."""
    if isinstance(args[0], Tensor):
        return gather(ctx, args[0], ctx.known(args[1], "indices"), n.attrs.get("axis", 0))
    data, indices = ctx.known(args[0], "data"), ctx.known(args[1], "indices").astype(np.int64)
    axis = normalize_axis(n.attrs.get("axis", 0), data.ndim)
    check_indices(indices, data.shape[axis], f"axis {axis}")
    ctx.budget.value((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]), "the gathered known value")
    return tidy(np.take(data, indices, axis=axis), args[0].dtype)


@register_importer("Range")
def _range(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Evaluated at import time over numbers; over symbolic dims a run-time ramp of symbolic length."""
    bounds = [np.asarray(ctx.known(a, name)) for a, name in zip(args, ("start", "limit", "delta"))]
    if any(a.size != 1 for a in bounds):
        raise ONNXError(f"start, limit and delta must be scalars, got shapes {[a.shape for a in bounds]}")
    start, limit, delta = (a.reshape(-1)[0] for a in bounds)
    if any(a.dtype == object for a in bounds):
        return _symbolic_range(ctx, args, start, limit, delta)
    steps = np.float64(limit - start) / delta if delta else np.inf
    if not np.isfinite(steps):
        raise ONNXError(f"Range from {start} to {limit} by {delta} never ends")
    ctx.budget.value((max(0, math.ceil(steps)),), f"the range from {start} to {limit} by {delta}")
    return tidy(np.arange(start, limit, delta), args[0].dtype)


def _symbolic_range(ctx: ImportContext, args: list[Operand], start: Any, limit: Any, delta: Any) -> Tensor:
    """start + delta * i for i < ceil((limit - start) / delta), a count that is a dim expression:
    the ramp is the exclusive running sum of ones of that length. `delta` must be a number."""
    if isinstance(delta, sympy.Basic) and not delta.is_Number:
        raise ONNXError(f"Range with the symbolic step {delta} has no length known at import time")
    if delta == 0:
        raise ONNXError(f"Range from {start} to {limit} by 0 never ends")
    exact = [_exact(v) for v in (start, limit, delta)]
    count = as_dim(sympy.Max(0, sympy.ceiling((exact[1] - exact[0]) / exact[2])))
    return gb.add(gb.mul(ramp(ctx.graph, count, args[0].dtype), ctx.tensor(args[2])), ctx.tensor(args[0]))


def ramp(graph: Graph, length: Dim, dtype: str = "int64") -> Tensor:
    """0, 1, ..., length - 1: a constant for a static length, else (a dim expression such as a
    sequence length) the exclusive running sum of ones, computed at run time."""
    if isinstance(length, int):
        return gb.constant(np.arange(length, dtype=dtype), graph=graph)
    return gb.cumsum(gb.broadcast_to(gb.constant(1, dtype, graph=graph), [length]), 0, exclusive=True)


def _exact(value: Any) -> sympy.Expr:
    """A known element as an exact sympy number or expression (a float by its binary value)."""
    if isinstance(value, sympy.Basic):
        return value
    return sympy.Rational(value.item() if isinstance(value, np.generic) else value)


@register_importer("ReduceProd")
def _reduce_prod(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    data, axes = ctx.known(args[0], "data"), known_axes(ctx, n, args)
    axes = tuple(axes) if axes is not None else None
    return tidy(np.prod(data.astype(object), axis=axes, keepdims=bool(n.attrs.get("keepdims", 1))), args[0].dtype)


@register_importer("ConstantOfShape")
def _constant_of_shape(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    value = np.asarray(n.attrs.get("value", np.zeros(1, np.float32)))
    if value.size != 1:
        raise ONNXError(f"the value attribute must hold one element, it has shape {value.shape}")
    value = value.reshape(())
    dtype = from_onnx(helper.np_dtype_to_tensor_dtype(value.dtype), n.label)
    shape = ctx.shape(args[0])
    if all(isinstance(d, int) for d in shape):
        ctx.budget.value(shape, f"the constant of shape {shape}")
        return tidy(np.full(shape, value), dtype)
    return gb.broadcast_to(gb.constant(value, dtype, graph=ctx.graph), shape)


@register_importer("Unsqueeze")
def _unsqueeze(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, axes = args[0], known_axes(ctx, n, args)
    if foldable(args[:1]):
        return Known(np.expand_dims(x.array, tuple(axes)), x.dtype)
    x = ctx.tensor(x)
    return gb.expand_dims(x, [normalize_axis(a, x.ndim + len(axes)) for a in axes])


@register_importer("Squeeze")
def _squeeze(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x, axes = args[0], known_axes(ctx, n, args)
    if foldable(args[:1]):
        return Known(np.squeeze(x.array, tuple(axes) if axes else None), x.dtype)
    return gb.squeeze(ctx.tensor(x), axes or None)


@register_importer("Reshape")
def _reshape(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """0 copies the input dim unless `allowzero`; one -1 is inferred."""
    x, target = args[0], ctx.shape(args[1])
    shape = x.shape if isinstance(x, Tensor) else x.array.shape
    if not n.attrs.get("allowzero", 0):
        target = [shape[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(target)]
    if foldable(args[:1]):
        try:
            return Known(x.array.reshape([int(d) for d in target]), x.dtype)
        except (ValueError, TypeError) as err:  # sizes that differ; a symbolic dim
            raise ONNXError(f"cannot reshape the known value of shape {shape} to {target}: {err}") from None
    return gb.reshape(ctx.tensor(x), target)


@register_importer("Slice")
def _slice(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Positive steps only; bounds are clamped as in Python for static dims."""
    if n.opset < 10:
        starts, ends, axes, steps = n.attrs["starts"], n.attrs["ends"], n.attrs.get("axes"), None
    else:
        starts, ends = ctx.dims(args[1], "starts"), ctx.dims(args[2], "ends")
        axes, steps = ctx.optional(args, 3, "axes", None, dims=True), ctx.optional(args, 4, "steps", None, dims=True)
    x = args[0]
    shape = x.shape if isinstance(x, Tensor) else x.array.shape
    bounds = [(0, d, 1) for d in shape]
    for i, axis in enumerate(axes if axes is not None else range(len(starts))):
        step = 1 if steps is None else steps[i]
        if not isinstance(step, int) or step <= 0:
            raise ONNXError(f"only positive steps are supported, got {step}")
        axis = normalize_axis(int(axis), len(shape))
        bounds[axis] = (*_bound_pair(starts[i], ends[i], shape[axis]), step)
    if foldable(args[:1]) and all(isinstance(d, int) for bound in bounds for d in bound):
        return Known(x.array[tuple(slice(a, b, s) for a, b, s in bounds)], x.dtype)
    starts_, stops_, steps_ = zip(*bounds) if bounds else ((), (), ())
    return gb.slice(ctx.tensor(x), starts_, stops_, steps_)


def _bound_pair(start: Dim, end: Dim, dim: Dim) -> tuple[Dim, Dim]:
    if isinstance(dim, int) and isinstance(start, int) and isinstance(end, int):
        start, end, _ = slice(start, end).indices(dim)
        return start, max(start, end)
    return _bound(start, dim), _bound(end, dim)


def _bound(value: Dim, dim: Dim) -> Dim:
    """A slice bound on a symbolic axis: negative counts from the end, huge means the end."""
    if isinstance(value, int) and value >= 2**31 - 1:
        return dim
    if isinstance(value, int) and value < 0:
        return as_dim(sympy.sympify(dim) + value) if not dims_equal(dim, -value) else 0
    return value
