"""Relax emitters: one rule per gradkiln op, turning a node into a Relax expression (the table and
the emitter signature: tvm_emit_context.py). This module holds the elementwise, reduction and
shape ops' emitters and loads every family module's from one list at its end. A Relax op is used
where one has the same semantics as the numpy reference; the others are TE computations
(`ctx.bb.emit_te`), which the fusing pipeline merges with their neighbours like any other kernel.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
from tvm import relax, te, tirx
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.dtypes import is_float
from ..graph.ops.elementwise_table import BINARY_ROWS, UNARY_ROWS, Binary, Unary
from ..graph.types import TensorType, dims_equal
from .tvm_emit_context import EMITTERS, EmitContext, Emitter, register_emitter


def _call(fn: Callable[..., relax.Expr]) -> Emitter:
    """An emitter applying a Relax op to the arguments as they are."""
    return lambda ctx, node, args: fn(*args)


def relax_op(path: str) -> Callable[..., relax.Expr]:
    """The Relax op a table row names by its path under `relax.op` ("exp", "nn.silu")."""
    return functools.reduce(getattr, path.split("."), R)


# op -> the Relax op with its semantics: the table rows' `relax`, and where
DIRECT: dict[str, Callable[..., relax.Expr]] = {
    **{row.name: relax_op(row.relax) for row in (*UNARY_ROWS, *BINARY_ROWS) if row.relax is not None},
    "where": R.where,
}
for _name, _fn in DIRECT.items():
    register_emitter(_name)(_call(_fn))


def row_emitter(row: Unary | Binary) -> Emitter:
    """The emitter of an elementwise table row: the Relax op its `relax` names."""
    return _call(relax_op(row.relax))


@register_emitter("matmul")
def _matmul(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """float16 products accumulate in float32 (as numpy's float16 matmul does), then round once."""
    dtype = node.types[0].dtype
    if dtype != "float16":
        return R.matmul(*args)
    return R.astype(R.matmul(*args, out_dtype="float32"), dtype)


def keep_nan(result: relax.Expr, *operands: relax.Expr) -> relax.Expr:
    """`result` with a NaN wherever an operand is NaN, as numpy gives: LLVM's max and min
    (maximum, minimum) and TVM's sign turn NaN into a number."""
    for x in reversed(operands):
        result = R.where(R.isnan(x), x, result)
    return result


def _nan_kept(fn: Callable[..., relax.Expr]) -> Emitter:
    """The emitter of a float op whose Relax form drops NaN: `fn` with NaN put back."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        return keep_nan(fn(*args), *args) if is_float(node.types[0].dtype) else fn(*args)

    return emit


def relu(x: relax.Expr, dtype: str) -> relax.Expr:
    """0 where x <= 0, else x: a NaN fails the test and passes through (as in numpy), at the cost
    of max (which drops it), so matmul epilogues stay as cheap."""
    return R.where(R.less_equal(x, relax.const(0, dtype)), relax.const(0, dtype), x)


register_emitter("relu")(lambda ctx, node, args: relu(args[0], node.types[0].dtype))
for _name, _fn in {"maximum": R.maximum, "minimum": R.minimum}.items():
    register_emitter(_name)(_nan_kept(_fn))


@register_emitter("neg")
def _neg(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """-x; of an unsigned integer numpy's wrap-around, as ~x + 1 (TVM's negative makes the constant
    -1, which no unsigned type holds: it failed to compile; its 0 - x of uint32 gave 0)."""
    dtype = node.types[0].dtype
    if dtype.startswith("uint"):
        return R.add(R.bitwise_not(args[0]), relax.const(1, dtype))
    return R.negative(args[0])


@register_emitter("sign")
def _sign(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """numpy's sign: NaN kept for floats; 0 or 1 for unsigned integers (TVM's sign makes a -1)."""
    dtype = node.types[0].dtype
    if dtype.startswith("uint"):
        return R.astype(R.greater(args[0], relax.const(0, dtype)), dtype)
    return keep_nan(R.sign(args[0]), args[0]) if is_float(dtype) else R.sign(args[0])


def _scalar(node: Node, value: float) -> relax.Expr:
    """`value` as a constant of the node's output dtype."""
    return relax.const(value, node.types[0].dtype)


def tanh(ctx: EmitContext, x: relax.Expr, dtype: str) -> relax.Expr:
    """float32: Relax's tanh, which our llvm builds lower to a polynomial accurate near 0 too
    (`tvm_vector_math`). float64: libm's tanh, as numpy calls (TVM's tanh, and 1 - 2 / (e**2x + 1),
    lose every digit below |x| ~ 1e-8: tanh(-1e-30) gave 0). float16 is computed in float32
    (`in_float32`)."""
    if dtype == "float32":
        return R.tanh(x)
    return ctx.bb.emit_te(lambda t: te.compute(t.shape, lambda *i: tirx.call_pure_extern(dtype, "tanh", t(*i))), x)


register_emitter("tanh")(lambda ctx, node, args: tanh(ctx, args[0], node.types[0].dtype))

# op -> f(node, x) for unary ops composed from Relax ops (with the node for its dtype and attrs).
COMPOSED: dict[str, Callable[[Node, relax.Expr], relax.Expr]] = {
    "exp2": lambda node, x: R.power(_scalar(node, 2.0), x),
    "reciprocal": lambda node, x: R.divide(_scalar(node, 1.0), x),
    "gelu": lambda node, x: (R.nn.gelu_tanh if node.attrs["approximate"] == "tanh" else R.nn.gelu)(x),
    # numpy's where(x > 0, x, x * slope): Relax's leakyrelu folds x * 0.0 to 0 (-inf gave 0, numpy NaN)
    "leaky_relu": lambda node, x: R.where(
        R.greater(x, _scalar(node, 0.0)), x, R.multiply(x, _scalar(node, node.attrs["negative_slope"]))
    ),
    "clip": lambda node, x: _clip(node, x),
}


def _clip(node: Node, x: relax.Expr) -> relax.Expr:
    lo, hi = node.attrs["lo"], node.attrs["hi"]
    """x outside [lo, hi] replaced by the bound; a NaN fails both tests and passes through."""
    if lo is not None:
        x = R.where(R.less(x, _scalar(node, lo)), _scalar(node, lo), x)
    return x if hi is None else R.where(R.greater(x, _scalar(node, hi)), _scalar(node, hi), x)


def _composed(fn: Callable[[Node, relax.Expr], relax.Expr]) -> Emitter:
    return lambda ctx, node, args: fn(node, args[0])


for _name, _fn in COMPOSED.items():
    register_emitter(_name)(_composed(_fn))


@register_emitter("round")
def _round(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Half to even (`nearbyint`), like numpy; Relax's round rounds halves away from zero."""
    return ctx.bb.emit_te(lambda x: te.compute(x.shape, lambda *i: tirx.nearbyint(x(*i)), name="round"), args[0])


def _compare(fn: Callable[..., relax.Expr]) -> Emitter:
    """A comparison; bool operands are compared as int8 (TVM's LLVM codegen emits a float compare for i1)."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        if node.graph.type_of(node.inputs[0]).dtype == "bool":
            args = [R.astype(a, "int8") for a in args]
        return fn(*args)

    return emit


COMPARISONS: dict[str, Callable[..., relax.Expr]] = {
    "equal": R.equal,
    "not_equal": R.not_equal,
    "less": R.less,
    "less_equal": R.less_equal,
    "greater": R.greater,
    "greater_equal": R.greater_equal,
}
for _name, _fn in COMPARISONS.items():
    register_emitter(_name)(_compare(_fn))


def _over_axes(fn: Callable[..., relax.Expr], *attr_names: str) -> Emitter:
    """Apply `fn(x, axes, *attrs)`, or pass x through when `axes` is empty: Relax reads an empty
    axis list as "every axis", while for gradkiln it means "no axis" (an identity)."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        axes = list(node.attrs["axes"])
        return fn(args[0], axes, *(node.attrs[a] for a in attr_names)) if axes else args[0]

    return emit


def _numpy_extreme(fn: Callable[..., relax.Expr], sign: float) -> Callable[..., relax.Expr]:
    """A max (sign -1) or min (sign 1) reduction with numpy's edge values. LLVM's max and min drop
    NaN, and TVM starts from the largest finite value, so the max of -infs was -3.4e38 in float32.
    One more sum counts the elements at that value and is NaN where one is NaN: NaN is put back,
    and a result at the starting value that no element has is the infinity."""

    def reduce(x: relax.Expr, axes: list[int], keepdims: bool) -> relax.Expr:
        dtype = str(x.ty.dtype)
        if not is_float(dtype):
            return fn(x, axes, keepdims=keepdims)
        start, one, zero = (relax.const(v, dtype) for v in (sign * float(np.finfo(dtype).max), 1, 0))
        marks = R.where(R.isnan(x), x, R.where(R.equal(x, start), one, zero))
        count = R.sum(marks, axes, keepdims=keepdims)
        extreme = fn(x, axes, keepdims=keepdims)
        infinite = R.where(R.equal(count, zero), relax.const(sign * np.inf, dtype), extreme)
        return keep_nan(R.where(R.equal(extreme, start), infinite, extreme), count)

    return reduce


def _logsumexp(x: relax.Expr, axes: list[int], keepdims: bool) -> relax.Expr:
    """max + log(sum(exp(x - max))), which cannot overflow, with numpy's max (NaN kept) and, as the
    numpy reference does, 0 for an infinite max: inf - inf made NaN where the result is inf."""
    top = REDUCTIONS["max"](x, axes, True)
    top = R.where(R.isfinite(top), top, relax.const(0, str(x.ty.dtype)))
    out = R.add(R.log(R.sum(R.exp(R.subtract(x, top)), axes, keepdims=True)), top)
    return out if keepdims else R.squeeze(out, axes)


REDUCTIONS: dict[str, Callable[..., relax.Expr]] = {
    "sum": R.sum,
    "max": _numpy_extreme(R.max, -1.0),
    "min": _numpy_extreme(R.min, 1.0),
    "prod": R.prod,
    "logsumexp": _logsumexp,
}
for _name, _fn in REDUCTIONS.items():
    register_emitter(_name)(_over_axes(_fn, "keepdims"))


def _nan_over_nothing(emitter: Emitter) -> Emitter:
    """`emitter` of mean, var or std, giving NaN over zero elements as numpy does: Relax would fold a
    division by a zero count and fail to compile (var of a (0, 1) array did)."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        shape = args[0].ty.shape
        counts = [shape.values[a] for a in node.attrs["axes"]] if isinstance(shape, relax.ShapeExpr) else []
        if any(isinstance(n, tirx.IntImm) and n.value == 0 for n in counts):  # the sum of nothing, times NaN
            return R.multiply(_over_axes(R.sum, "keepdims")(ctx, node, args), _scalar(node, np.nan))
        return emitter(ctx, node, args)

    return emit


def _moment(fn: Callable[..., relax.Expr], power: float) -> Emitter:
    """var or std: Relax's (dividing by n) rescaled by (n / (n - correction)) ** power."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        axes, correction = list(node.attrs["axes"]), node.attrs["correction"]
        out = fn(args[0], axes, node.attrs["keepdims"])
        if not correction:
            return out
        n = _count(ctx, args[0], axes, node.types[0].dtype)
        return R.multiply(out, R.power(R.divide(n, R.subtract(n, _scalar(node, correction))), _scalar(node, power)))

    return _nan_over_nothing(emit)


register_emitter("mean")(_nan_over_nothing(_over_axes(R.mean, "keepdims")))
register_emitter("var")(_moment(R.variance, 1.0))
register_emitter("std")(_moment(R.std, 0.5))


@register_emitter("argmax")
@register_emitter("argmin")
def _arg_extreme(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """The first index of the extreme, as numpy. Over floats TVM's comparisons skip NaN, and it starts
    from index -1 at the largest finite value, where it stays when no element is beyond (all -inf
    for argmax). Marks (2 at NaN, 1 at that value) give numpy's answer there: the first NaN, else the
    first element at the value, else 0."""
    fn, (x,) = (R.argmax if node.op == "argmax" else R.argmin), args
    axis, keepdims, dtype = node.attrs["axis"], node.attrs["keepdims"], str(x.ty.dtype)
    if not is_float(dtype):
        return fn(x, axis, keepdims)
    start = relax.const((-1.0 if node.op == "argmax" else 1.0) * float(np.finfo(dtype).max), dtype)
    mark = [relax.const(v, "int8") for v in (0, 1, 2)]
    marks = ctx.bb.emit(R.where(R.isnan(x), mark[2], R.where(R.equal(x, start), mark[1], mark[0])))
    first = ctx.bb.emit(R.argmax(marks, axis, keepdims))
    found = ctx.bb.emit(fn(x, axis, keepdims))
    has_nan = R.equal(R.max(marks, [axis], keepdims=keepdims), mark[2])
    return R.where(has_nan, first, R.where(R.less(found, relax.const(0, "int64")), first, found))


@register_emitter("cumsum")
def _cumsum(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """A reverse cumsum is the cumsum of the flipped input, flipped back."""
    axis, reverse = node.attrs["axis"], node.attrs["reverse"]
    x = R.flip(args[0], axis) if reverse else args[0]
    out = R.cumsum(x, axis, exclusive=node.attrs["exclusive"])
    return R.flip(out, axis) if reverse else out


@register_emitter("cumprod")
def _cumprod(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.cumprod(args[0], node.attrs["axis"])


register_emitter("expand_dims")(_over_axes(R.expand_dims))
register_emitter("squeeze")(_over_axes(R.squeeze))


@register_emitter("cast")
def _cast(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.astype(args[0], node.attrs["dtype"])


@register_emitter("stop_gradient")
@register_emitter("custom_vjp")
@register_emitter("custom_jvp")
def _pass_through(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Autodiff markers are identities at run time: the value is the last input."""
    return args[-1]


@register_emitter("reshape")
def _reshape(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.reshape(args[0], ctx.dim.shape(node.attrs["shape"]))


@register_emitter("broadcast_to")
def _broadcast_to(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.broadcast_to(args[0], relax.ShapeExpr(ctx.dim.shape(node.attrs["shape"])))


@register_emitter("transpose")
def _transpose(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.permute_dims(args[0], list(node.attrs["perm"]))


CONCAT_FAN_IN = 64  # TVM selects a concat's input by a chain of if_then_else, one per input


@register_emitter("concat")
def _concat(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Relax's concat; of many inputs, a tree of concats of at most CONCAT_FAN_IN each: TVM's
    compiler recursed once per input and a 4800-way concat (ONNX's dilated MaxPool, imported as
    one slice per window offset) overflowed its stack, killing the process."""
    axis = node.attrs["axis"]
    while len(args) > CONCAT_FAN_IN:
        groups = [args[i : i + CONCAT_FAN_IN] for i in range(0, len(args), CONCAT_FAN_IN)]
        args = [ctx.bb.emit(R.concat(group, axis)) if len(group) > 1 else group[0] for group in groups]
    return R.concat(args, axis)


@register_emitter("slice")
def _slice(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Not assumed in bounds: Relax then clamps stops to the dims, as numpy does. Axes taken whole
    are left out, so that their (symbolic) dims pass through unchanged rather than clamped. A
    symbolic bound on a static axis (BERT's position ids cut to the sequence length) is taken in
    bounds, as the node's type does, and checked before each call (`Executable.check_feeds`):
    TVM's clamp of it gives a shape that no cast to the node's type survives (TVM crashes)."""
    attrs, dims = node.attrs, node.graph.type_of(node.inputs[0]).shape
    whole = [
        a == 0 and s == 1 and dims_equal(b, d)
        for a, b, s, d in zip(attrs["starts"], attrs["stops"], attrs["steps"], dims)
    ]
    axes = [i for i, w in enumerate(whole) if not w]
    if not axes:
        return args[0]
    begin = ctx.dim.shape([attrs["starts"][i] for i in axes])
    end = ctx.dim.shape([attrs["stops"][i] for i in axes])
    inbound = all(isinstance(dims[i], int) for i in axes) and not all(isinstance(b, tirx.IntImm) for b in begin + end)
    return R.strided_slice(args[0], axes, begin, end, [attrs["steps"][i] for i in axes], assume_inbound=inbound)


@register_emitter("one_hot")
def _one_hot(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Relax's one_hot compares each index with 0..depth-1, so out-of-range indices give zero rows
    (mode "fill"; "raise" too, as kernels cannot raise); mode "clip" clamps them into range first."""
    dtype, depth, indices = node.attrs["dtype"], node.attrs["depth"], args[0]
    if node.attrs.get("mode") == "clip":
        index_dtype = node.graph.type_of(node.inputs[0]).dtype
        low, high = relax.const(0, index_dtype), relax.const(depth - 1, index_dtype)
        indices = ctx.bb.emit(R.minimum(R.maximum(indices, low), high))
    return R.one_hot(indices, tirx.const(1, dtype), tirx.const(0, dtype), depth)


@register_emitter("size")
def _size(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """The element count over `axes` as a 0-d tensor, read from the (symbolic) input shape: x is an
    argument of the kernel so that its symbolic dims are bound there."""
    return _count(ctx, args[0], node.attrs["axes"], node.attrs["dtype"])


def _count(ctx: EmitContext, x: relax.Expr, axes: Sequence[int], dtype: str) -> relax.Expr:
    """The number of elements of x over `axes`, as a 0-d tensor of `dtype`."""

    def compute(x: te.Tensor) -> te.Tensor:
        count = functools.reduce(operator.mul, (x.shape[a] for a in axes), tirx.IntImm("int64", 1))
        return te.compute((), lambda: count.astype(dtype), name="size")

    return ctx.bb.emit_te(compute, x, primfunc_name_hint="size")


@register_emitter("pad")
def _pad(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Zero padding with interior zeros: output position i holds x[(i - low) / (interior + 1)] when
    that division is exact and in range, else zero. TE, because Relax's pad has no interior padding."""
    low, interior = node.attrs["low"], node.attrs["interior"]
    out_shape = ctx.dim.shape(node.types[0].shape)

    def compute(x: te.Tensor) -> te.Tensor:
        def element(*index: tirx.PrimExpr) -> tirx.PrimExpr:
            conditions, source = [tirx.const(True)], []
            for i, lo, k, d in zip(index, low, interior, x.shape):
                j = i - lo
                conditions += [j >= 0, tirx.floormod(j, k + 1) == 0, tirx.floordiv(j, k + 1) < d]
                source.append(tirx.floordiv(j, k + 1))
            return tirx.if_then_else(tirx.all(*conditions), x[tuple(source)], tirx.const(0, x.dtype))

        return te.compute(out_shape, element, name="pad")

    return ctx.bb.emit_te(compute, args[0], primfunc_name_hint="pad")


def emit_constant(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """A constant node becomes a Relax constant (the backend's rule for the `constant` source op).
    The dtype is explicit: `relax.const` would otherwise narrow float64 arrays to float32."""
    value = np.asarray(node.attrs["value"])
    return relax.const(value, str(value.dtype))


from . import (  # noqa: E402,F401  (each family's emitters, into EMITTERS; they import tvm_emit_context)
    tvm_emitters_bitwise,  # the bitwise ops
    tvm_emitters_collective,  # the collectives: a packed call of the communicator on the VM's buffer
    tvm_emitters_complex,  # the complex ops: refused, TVM has no complex dtype
    tvm_emitters_control,  # scan and cond, unrolled
    tvm_emitters_fused,  # the fused elementwise op
    tvm_emitters_linalg,  # the linear algebra ops
    tvm_emitters_nn,  # the nn ops
    tvm_emitters_numerics,  # mod, floordiv, log1p, expm1, elu with numpy's results near special values
    tvm_emitters_random,  # random_bits: the same integer hash as the numpy reference
    tvm_emitters_resize,  # resize and resize_grad: gathers by constant tables
    tvm_emitters_select,  # the selection ops and dropout
)


class _Float32View(Node):
    """A node read as if its float16 outputs were float32 (for emitters that take constants'
    dtypes from the node)."""

    __slots__ = ()

    @property
    def types(self) -> tuple[TensorType, ...]:
        return tuple(replace(t, dtype="float32") if t.dtype == "float16" else t for t in super().types)


def in_float32(emitter: Emitter) -> Emitter:
    """`emitter` of a float16 node computed in float32 and rounded once, as numpy's float16 loops
    call the float32 function: TVM has no float16 form of most libm calls (atan2, cosh, asin failed
    to compile on llvm), and its float16 arithmetic forms (sigmoid, silu, tanh) round every step."""

    def emit(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
        wide = [ctx.bb.emit(R.astype(a, "float32")) for a in args]
        return R.astype(ctx.bb.emit(emitter(ctx, _Float32View(node.graph, node.id), wide)), "float16")

    return emit


def _is_float16(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> bool:
    return node.types[0].dtype == "float16"


for _row in (*UNARY_ROWS, *BINARY_ROWS):
    if _row.rounding == "transcendental":
        register_emitter(_row.name, when=_is_float16)(in_float32(EMITTERS[_row.name]))
