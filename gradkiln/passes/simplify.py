"""Algebraic simplification: identities as one rule table (`RULES`) over the pattern matcher.

Every rule gives back a value of exactly the matched value's type (dtype and shape, symbolic
dims included): where the simpler expression has a smaller shape it is broadcast up
(`Match.fit`), and a rule that cannot keep the type declines.

Without `unsafe_math` every rewrite is exact: the result is bit for bit what the graph computes,
for every input, NaN, +-Inf and -0.0 included (docs/passes.md lists the rules by class). On
floating and complex values that leaves x*1, x/1, x+(-0.0), x-(+0.0), -(-x), cast to the same
dtype and the view rules; x+(+0.0) and x-(-0.0) turn -0.0 into +0.0, x*0 is NaN for Inf and NaN
and -0.0 for negative x, x-x is NaN for Inf and NaN, exp(log x) and log(exp x) round (and log(exp
x) overflows), reassociating constants rounds and overflows differently ((x*1e20)*1e20 is 0 at
x = 0, x*inf is NaN), and a sum rounds differently from a multiply by the count or from a chain
of sums (and numpy's sum turns -0.0 into +0.0, even over no axes). These fire on floating values
only with `PassContext.unsafe_math` (`optimize(..., unsafe_math=True)`, like -ffast-math), or
where the operands make them exact: x*0 and x-x on integers, or on constants whose products
are finite and not -0.0. On integers (wrapping arithmetic) the sum and reassociation rules are
exact and always fire. Complex x*1 and x/1 also wait for `unsafe_math`: numpy multiplies by 1+0j
(Inf * 0 is NaN).
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Value
from ..graph.dtypes import is_complex, is_float, is_inexact
from ..graph.types import Dim, dims_equal, shape_size
from .manager import PassContext, register_pass
from .patterns import Builder, C, Match, P, Rule, V, constant_array, rewrite, source_constant

CHAIN_OPS = frozenset({"sum", "reshape", "expand_dims", "squeeze"})  # what unbroadcast chains are made of


def _ieee(m: Match) -> bool:
    """Whether the matched value is floating or complex and `unsafe_math` is off: then a rewrite
    must give IEEE results bit for bit (integers wrap, so algebra is exact on them)."""
    return not m.ctx.unsafe_math and is_inexact(m.root_type.dtype)


def _unsafe_only(build: Builder) -> Builder:
    """`build` where `_ieee` allows any rewrite (integers, or `unsafe_math`), else no rewrite."""
    return lambda m: None if _ieee(m) else build(m)


def _zero_product(m: Match) -> bool:
    """Whether x * zero is +0.0 everywhere: x is known finite and the products keep no sign."""
    if not _ieee(m):
        return True
    array = source_constant(m.graph, m["x"])
    if array is None:
        return False
    with np.errstate(all="ignore"):
        product = array * m.uniform(m["zero"])
    negative = np.signbit(np.real(product)) | np.signbit(np.imag(product))
    return bool(np.isfinite(array).all() and not negative.any())


def _finite(m: Match, value: Value) -> bool:
    """Whether every element of `value` is known to be finite (or `_ieee` does not apply)."""
    if not _ieee(m):
        return True
    array = source_constant(m.graph, value)
    return array is not None and bool(np.isfinite(array).all())


def _zero_signs(m: Match) -> list[bool]:
    """The sign bits of the captured zero (of its real and imaginary parts when complex)."""
    zero = m.uniform(m["zero"])
    return [bool(np.signbit(part)) for part in ((zero.real, zero.imag) if isinstance(zero, complex) else (zero,))]


def _add_zero(m: Match) -> Value | None:
    """x + 0 -> x: exact when the zero is -0.0 ((+0.0) + (+0.0) and (-0.0) + (-0.0) keep x's sign)."""
    return m.fit(m["x"]) if not _ieee(m) or all(_zero_signs(m)) else None


def _sub_zero(m: Match) -> Value | None:
    """x - 0 -> x: exact when the zero is +0.0 (x - (-0.0) turns -0.0 into +0.0)."""
    return m.fit(m["x"]) if not _ieee(m) or not any(_zero_signs(m)) else None


def _exact(m: Match, value: Value) -> Value | None:
    """`value` itself when it already has the matched type (a removed no-op), else None."""
    return value if m.type(value) == m.root_type else None


def _reshaped(m: Match, value: Value) -> Value:
    """`value` reshaped to the matched shape (itself when it already has it)."""
    return _exact(m, value) or m.emit("reshape", value, shape=m.root_type.shape)


def _zeros(m: Match) -> Value:
    return m.fill(0, m.root_type)


def _identity_perm(m: Match, value: Value) -> bool:
    perm = m.attrs(value)["perm"]
    return tuple(perm) == tuple(range(len(perm)))


def _compose_transposes(m: Match) -> Value | None:
    inner, outer = m.attrs("inner")["perm"], m.attrs(m.root)["perm"]
    perm = tuple(inner[p] for p in outer)
    return m["x"] if perm == tuple(range(len(perm))) else m.emit("transpose", m["x"], perm=perm)


def _reassociate(op: str, fn: np.ufunc) -> Rule:
    """(x op c1) op c2 -> x op (c1 op c2) for constants c1, c2 (the inner node used only here).
    Exact on integers of one dtype (wrapping arithmetic associates); on floating values it rounds
    and overflows differently, so it needs `unsafe_math`, and even then a folded constant that
    is not finite is refused ((x*1e20)*1e20 -> x*inf would turn x = 0 into NaN)."""

    def build(m: Match) -> Value | None:
        if m.users("inner") != 1 or m["inner"] in m.ctx.outputs:
            return None
        c1, c2 = constant_array(m.graph, m["c1"]), constant_array(m.graph, m["c2"])
        dtype = m.root_type.dtype
        if np.broadcast(c1, c2).size > m.ctx.fold_limit or {m.type("x").dtype, str(c1.dtype), str(c2.dtype)} != {dtype}:
            return None
        with np.errstate(all="ignore"):
            folded = fn(c1, c2).astype(dtype)
        if is_inexact(dtype) and not np.isfinite(folded).all():
            return None
        return m.emit(op, m["x"], m.constant(folded))

    inner = P(op, V("x"), P("constant", name="c1"), name="inner")
    return Rule(f"{op}_constants", P(op, inner, P("constant", name="c2")), _unsafe_only(build))


def _is_unit(dim: Dim) -> bool:
    return isinstance(dim, int) and dim == 1


def _count(m: Match, broadcast: Value, axes: list[int]) -> Value | None:
    """The number of elements of `broadcast` over `axes` as a scalar of the matched dtype."""
    count: Dim = shape_size([m.type(broadcast).shape[a] for a in axes])
    if isinstance(count, int):
        return None if count == 1 else m.constant(np.asarray(count).astype(m.root_type.dtype))
    return m.emit("size", broadcast, axes=tuple(axes), dtype=m.root_type.dtype)


def _sum_of_broadcast(m: Match) -> Value | None:
    """sum(broadcast_to(x, s), axes) -> reshape(sum(x, the axes x really has) * count): the sum
    over the repeated axes is a multiply. Applies when every repeated axis is summed."""
    x_shape, shape = m.type("x").shape, m.type("b").shape
    lead, axes = len(shape) - len(x_shape), m.attrs(m.root)["axes"]
    repeated = [i for i in range(len(shape)) if i < lead or (_is_unit(x_shape[i - lead]) and not _is_unit(shape[i]))]
    if not set(repeated) <= set(axes):
        return None
    real = tuple(i - lead for i in axes if i not in repeated)
    value = m.emit("sum", m["x"], axes=real, keepdims=False) if real else m["x"]
    count = _count(m, m["b"], [i for i in axes if i in repeated])
    return _reshaped(m, value if count is None else m.emit("mul", value, count))


def _unit_reshape_map(in_shape: tuple, out_shape: tuple, axes: list) -> list | None:
    """Carry the axis map over a reshape that only inserts or drops size-1 axes; None otherwise."""
    kept = [(d, a) for d, a in zip(in_shape, axes) if not _is_unit(d)]
    out_dims = [d for d in out_shape if not _is_unit(d)]
    if len(out_dims) != len(kept) or not all(dims_equal(a, b) for a, (b, _) in zip(out_dims, kept)):
        return None
    carried = iter(a for _, a in kept)
    return [None if _is_unit(d) else next(carried) for d in out_shape]


def _after_sum(axes_map: list, axes: tuple[int, ...], keepdims: bool) -> list:
    if keepdims:
        return [None if i in axes else a for i, a in enumerate(axes_map)]
    return [a for i, a in enumerate(axes_map) if i not in axes]


def _sum_chain(m: Match) -> Value | None:
    """A chain of sums and size-1 reshapes (what `unbroadcast` emits, nested) becomes one sum and
    one reshape; a sum over size-1 axes only becomes a reshape. Inner links must be used only
    by the chain, so no work is duplicated."""
    graph, chain, value = m.graph, [m.root], m.graph.inputs_of(m.root.node)[0]
    while graph.op_of(value.node) in CHAIN_OPS and graph.use_count(value.node) == 1:
        if value in m.ctx.outputs:
            break
        chain.append(value)
        value = graph.inputs_of(value.node)[0]
    x = value
    axes_map: list = [None if _is_unit(d) else i for i, d in enumerate(m.type(x).shape)]
    reduced: set[int] = set()
    for link in reversed(chain):
        attrs = m.attrs(link)
        if graph.op_of(link.node) == "sum":
            reduced |= {axes_map[a] for a in attrs["axes"] if axes_map[a] is not None}
            axes_map = _after_sum(axes_map, attrs["axes"], attrs["keepdims"])
            continue
        carried = _unit_reshape_map(m.type(graph.inputs_of(link.node)[0]).shape, m.type(link).shape, axes_map)
        if carried is None:
            return None
        axes_map = carried
    if len(chain) < 2 and reduced:
        return None
    summed = m.emit("sum", x, axes=tuple(sorted(reduced)), keepdims=False) if reduced else x
    return _reshaped(m, summed)


def _log_exp(m: Match) -> Value | None:
    """log(exp x) -> x for real x (complex x comes back only modulo 2*pi*i)."""
    return m["x"] if is_float(m.type("x").dtype) else None


def _real_or_unsafe(m: Match) -> bool:
    """Complex x*1 and x/1 compute with 1+0j, which turns an infinite part into NaN."""
    return m.ctx.unsafe_math or not is_complex(m.root_type.dtype)


RULES: list[Rule] = [
    # exact for every input (complex x*1, x/1: with unsafe_math)
    Rule("mul_one", P("mul", V("x"), C(1)), lambda m: m.fit(m["x"]) if _real_or_unsafe(m) else None),
    Rule("div_one", P("div", V("x"), C(1)), lambda m: m.fit(m["x"]) if _real_or_unsafe(m) else None),
    Rule("add_zero", P("add", V("x"), C(0, name="zero")), _add_zero),  # -0.0, also + zeros_like(-0.0)
    Rule("sub_zero", P("sub", V("x"), C(0, name="zero")), _sub_zero),
    Rule("neg_neg", P("neg", P("neg", V("x"))), lambda m: m["x"]),
    # exact only for known operands (integers; finite constants)
    Rule("mul_zero", P("mul", V("x"), C(0, name="zero")), lambda m: _zeros(m) if _zero_product(m) else None),
    Rule("sub_self", P("sub", V("x"), V("x")), lambda m: _zeros(m) if _finite(m, m["x"]) else None),
    # rounding or range: unsafe_math only on floating values
    Rule("exp_log", P("exp", P("log", V("x"))), _unsafe_only(lambda m: m["x"])),
    Rule("log_exp", P("log", P("exp", V("x"))), _unsafe_only(_log_exp)),
    # views and casts: exact
    Rule("cast_same", P("cast", V("x")), lambda m: _exact(m, m["x"])),
    Rule("transpose_transpose", P("transpose", P("transpose", V("x"), name="inner")), _compose_transposes),
    Rule("transpose_identity", P("transpose", V("x"), where=_identity_perm), lambda m: m["x"]),
    Rule("reshape_reshape", P("reshape", P("reshape", V("x"))), lambda m: _reshaped(m, m["x"])),
    Rule("reshape_same", P("reshape", V("x")), lambda m: _exact(m, m["x"])),
    Rule("broadcast_broadcast", P("broadcast_to", P("broadcast_to", V("x"))), lambda m: m.fit(m["x"])),
    Rule("broadcast_same", P("broadcast_to", V("x")), lambda m: _exact(m, m["x"])),
    # sums (numpy's sum makes -0.0 +0.0 and rounds in its own order) and reassociation: exact on integers
    Rule("sum_no_axes", P("sum", V("x"), axes=()), _unsafe_only(lambda m: _exact(m, m["x"]))),
    Rule("sum_of_broadcast", P("sum", P("broadcast_to", V("x"), name="b")), _unsafe_only(_sum_of_broadcast)),
    Rule("sum_chain", P("sum", V()), _unsafe_only(_sum_chain)),
    _reassociate("mul", np.multiply),
    _reassociate("add", np.add),
]


@register_pass("simplify")
def simplify(graph: Graph, ctx: PassContext) -> bool:
    """Apply `RULES` to a fixpoint."""
    return bool(rewrite(graph, ctx, RULES))
