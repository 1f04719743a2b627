"""Relax emitters of the selection ops and dropout: sort, argsort and topk map onto Relax's
(stable, first index first at ties, like the numpy reference); for a dtype TVM's CPU sort lacks
(uint64, int8, uint16, ...) they sort an order-preserving key and gather the values
(`_sort_key`); gather_elements, like take, is one
TE kernel reading each element at its index as the mode says (`read_at_indices`: clamped for
"clip", else negatives counted from the end and out-of-range ones giving the fill value; kernels
cannot raise, so "raise" reads as "fill" and `detect_anomaly` checks the indices); the scatters
map their indices the same way first (`safe_indices`) and drop the updates at out-of-range ones;
flip is one Relax flip
per axis; dropout is a TE kernel that hashes each element's flat index with the same
`keep_code` the numpy reference runs, so both draw the same mask."""

from __future__ import annotations

import functools
import operator
from typing import Callable, NamedTuple

from tvm import relax, te, tirx
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..graph import Node
from ..graph.ops.dropout import PRIME, keep_code, keep_threshold
from ..graph.ops.index_mode import fill_value, mode_of
from .tvm_emit_context import EmitContext, register_emitter

# The integer dtypes whose sort, argsort and topk TVM's CPU runtime (contrib/sort) implements.
_NATIVE_SORT_DTYPES = frozenset({"int32", "int64"})
_UINT64_SIGN = relax.const(1 << 63, "uint64")
# float dtype -> (the integer of its bits, their width, the sort key's dtype, the bits of +inf)
_FLOAT_BITS = {
    "float16": ("int16", 16, "int32", 0x7C00),
    "float32": ("int32", 32, "int32", 0x7F800000),
    "float64": ("int64", 64, "int64", 0x7FF0000000000000),
}


def _float_key(x: te.Tensor) -> te.Tensor:
    """An integer key ordered as numpy sorts floats: the IEEE bits with the magnitude bits of
    negatives flipped (a monotone map), -0.0 and 0.0 one key, every NaN one key above +inf. TVM's
    float sort compares with `<`, which is no order with NaN: [3, nan, 1, -inf, nan, 2] came out
    [-inf, 1, 3, nan, nan, 2]. Each element is read once, into a Let: a fused producer's own Let
    would be defined twice if its expression were inlined at several places (ill-formed TIR)."""
    bits, width, wide, inf_bits = _FLOAT_BITS[str(x.dtype)]
    magnitude = tirx.const((1 << (width - 1)) - 1, bits)
    above_every_number = tirx.const((1 << (width - 1)) - 1, wide)

    def key(*i: tirx.PrimExpr) -> tirx.PrimExpr:
        b = tirx.Var("bits", bits)
        size = b & magnitude
        flipped = (b ^ ((b >> (width - 1)) & magnitude)).astype(wide)
        number = tirx.Select(size == tirx.const(0, bits), tirx.const(0, wide), flipped)
        ordered = tirx.Select(size > tirx.const(inf_bits, bits), above_every_number, number)
        return tirx.Let(b, tirx.reinterpret(bits, x(*i)), ordered)

    return te.compute(x.shape, key, name="sort_key")


def _sort_key(ctx: EmitContext, x: relax.Expr, dtype: str) -> relax.Expr | None:
    """x as a tensor of a dtype TVM sorts, ordered exactly as numpy orders x (ties stay ties);
    None when x's dtype is sorted natively. Floats get `_float_key`; uint64 flips its top bit
    and reads as int64; the other integers widen to int64 (exact)."""
    if dtype in _NATIVE_SORT_DTYPES:
        return None
    if dtype in _FLOAT_BITS:
        return ctx.bb.emit_te(_float_key, x)
    if dtype == "uint64":
        return ctx.bb.emit(R.astype(ctx.bb.emit(R.bitwise_xor(x, _UINT64_SIGN)), "int64"))
    return ctx.bb.emit(R.astype(x, "int64"))


@register_emitter("sort")
def _sort(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    axis, descending = node.attrs["axis"], node.attrs["descending"]
    key = _sort_key(ctx, args[0], node.types[0].dtype)
    if key is None:
        return R.sort(args[0], axis, descending)
    return R.gather_elements(args[0], ctx.bb.emit(R.argsort(key, axis, descending, "int64")), axis)


@register_emitter("argsort")
def _argsort(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    key = _sort_key(ctx, args[0], node.graph.type_of(node.inputs[0]).dtype)
    return R.argsort(args[0] if key is None else key, node.attrs["axis"], node.attrs["descending"], "int64")


@register_emitter("topk")
def _topk(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    key = _sort_key(ctx, args[0], node.types[0].dtype)
    if key is None:
        return R.topk(args[0], a["k"], a["axis"], "both", a["largest"], "int64")
    indices = ctx.bb.emit(R.topk(key, a["k"], a["axis"], "indices", a["largest"], "int64"))
    return relax.Tuple([ctx.bb.emit(R.gather_elements(args[0], indices, a["axis"])), indices])


def _resolved(j: tirx.PrimExpr, n: tirx.PrimExpr, mode: str) -> tuple[tirx.PrimExpr, tirx.PrimExpr | None]:
    """(the index in [0, n) that `mode` reads for j, whether j is in range; None in mode "clip",
    which clamps every index into range). Out-of-range indices read 0, to be masked."""
    zero = tirx.const(0, j.dtype)
    if mode == "clip":
        return tirx.max(tirx.min(j, n - 1), zero), None
    in_range = tirx.all(j >= -n, j < n)
    return tirx.if_then_else(in_range, tirx.if_then_else(j < 0, j + n, j), zero), in_range


def read_at_indices(ctx: EmitContext, node: Node, x: relax.Expr, indices: relax.Expr, paired: bool) -> relax.Expr:
    """take (`paired` False: the output holds the indices' axes in place of x's `axis`) or
    gather_elements (`paired`: indices of x's rank, one per output element) as one TE kernel:
    each element reads x at its index as the node's mode says, or the fill value."""
    axis, mode, out = node.attrs["axis"], mode_of(node.attrs), node.types[0]

    def compute(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        rank = 1 if paired else len(indices.shape)
        fill = tirx.const(fill_value(out.dtype), out.dtype)

        def element(*o: tirx.PrimExpr) -> tirx.PrimExpr:
            j = indices[o] if paired else indices[tuple(o[axis : axis + rank])]
            k, in_range = _resolved(j, x.shape[axis].astype(j.dtype), mode)
            value = x[(*o[:axis], k, *o[axis + rank :])]
            return value if in_range is None else tirx.if_then_else(in_range, value, fill)

        shape = indices.shape if paired else (*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])
        return te.compute(shape, element, name=node.op)

    return ctx.bb.emit_te(compute, x, indices, primfunc_name_hint=node.op)


class SafeIndices(NamedTuple):
    """A scatter's indices in [0, n) as its mode reads them, and the mask of the in-range ones
    (None in mode "clip", where every index is clamped into range)."""

    indices: relax.Expr
    valid: relax.Expr | None
    rank: int  # of the indices

    def kept(self, ctx: EmitContext, updates: relax.Expr, at: int, rank: int, dtype: str) -> relax.Expr:
        """The updates (of `rank` axes, the indices' axes from axis `at`), zero where the index was
        out of range: those are dropped."""
        if self.valid is None:
            return updates
        spread = [*range(at), *range(at + self.rank, rank)]
        mask = ctx.bb.emit(R.expand_dims(self.valid, spread)) if spread else self.valid
        return ctx.bb.emit(R.where(mask, updates, relax.const(0, dtype)))


def safe_indices(ctx: EmitContext, node: Node, x: relax.Expr, indices: relax.Expr) -> SafeIndices:
    """The indices (input 1) of a scatter `node` over x's `node.attrs["axis"]`, in TE kernels (the
    axis may be symbolic): as `_resolved` reads them, with their mask."""
    axis, mode = node.attrs["axis"], mode_of(node.attrs)

    def index(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        n = x.shape[axis].astype(indices.dtype)
        return te.compute(indices.shape, lambda *i: _resolved(indices[i], n, mode)[0], name="indices_in_range")

    def mask(x: te.Tensor, indices: te.Tensor) -> te.Tensor:
        n = x.shape[axis].astype(indices.dtype)
        return te.compute(indices.shape, lambda *i: _resolved(indices[i], n, mode)[1], name="index_valid")

    safe = ctx.bb.emit_te(index, x, indices, primfunc_name_hint="indices_in_range")
    valid = None if mode == "clip" else ctx.bb.emit_te(mask, x, indices, primfunc_name_hint="index_valid")
    return SafeIndices(safe, valid, node.graph.type_of(node.inputs[1]).rank)


@register_emitter("gather_elements")
def _gather_elements(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return read_at_indices(ctx, node, *args, paired=True)


def without_updates(node: Node) -> bool:
    """Whether a scatter's indices (input 1) have no element: it adds nothing, and TVM's scatter
    of zero-size indices divided by their zero extent and failed to compile."""
    return 0 in node.graph.type_of(node.inputs[1]).shape


@register_emitter("scatter_elements_add")
def _scatter_elements_add(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    x, indices, updates = args
    if without_updates(node):
        return x
    safe = safe_indices(ctx, node, x, indices)
    kept = safe.kept(ctx, updates, 0, node.types[0].rank, node.types[0].dtype)
    return R.scatter_elements(x, safe.indices, kept, node.attrs["axis"], reduction="add")


@register_emitter("flip")
def _flip(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    out = args[0]
    for axis in node.attrs["axes"]:
        out = ctx.bb.emit(R.flip(out, axis))
    return out


class _Elementwise:
    """A value of every element as a function of its index (what `te.compute` takes), with the
    integer + * % that `keep_code` uses."""

    def __init__(self, at: Callable[..., tirx.PrimExpr]) -> None:
        self.at = at

    def _combine(self, other: _Elementwise | int, op: Callable) -> _Elementwise:
        right = other.at if isinstance(other, _Elementwise) else lambda *i: other
        return _Elementwise(lambda *i: op(self.at(*i), right(*i)))

    def __add__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.add)

    def __mul__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.mul)

    def __mod__(self, other: _Elementwise | int) -> _Elementwise:
        return self._combine(other, operator.mod)


@register_emitter("dropout")
def _dropout(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """Each value the hash reads several times is a stage of its own (stored), so that inlining
    the rest keeps every expression small."""
    rate, seed = node.attrs["rate"], node.attrs["seed"]

    def compute(x: te.Tensor) -> te.Tensor:
        def stage(value: _Elementwise) -> _Elementwise:
            return _Elementwise(te.compute(x.shape, value.at, name="dropout_hash"))

        def flat(*i: tirx.PrimExpr) -> tirx.PrimExpr:
            """The row-major index, int64 (of a 0-d tensor too: a Python 0 made an int32 hash, which overflowed)."""
            start = tirx.const(0, "int64")
            return functools.reduce(lambda total, pair: total * pair[1] + pair[0], zip(i, x.shape), start)

        code = keep_code(stage(_Elementwise(flat) % PRIME), seed, stage)
        scale, zero, threshold = tirx.const(1.0 / (1.0 - rate), x.dtype), tirx.const(0, x.dtype), keep_threshold(rate)
        return te.compute(
            x.shape, lambda *i: tirx.if_then_else(code.at(*i) >= threshold, x(*i) * scale, zero), name="dropout"
        )

    return ctx.bb.emit_te(compute, args[0], primfunc_name_hint="dropout")
