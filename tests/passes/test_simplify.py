"""Golden tests of the simplification rules: each exact rule fires where it should and keeps every
value bit for bit (NaN, Inf and -0.0 included); each rule that would change a value on floats
fires only with unsafe_math."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import GraphError, verify
from gradkiln.passes import PassContext, optimize
from gradkiln.passes.patterns import P, Rule, V, rewrite
from gradkiln.passes.simplify import RULES

RNG = np.random.default_rng(0)
SHAPES = {
    "x": (3, 4),
    "y": (4,),
    "z": (2, 3, 4),
    "k": (3, 1),
    "i": ((3,), "int64"),
    "j": ((3, 1), "int32"),
    "n": ((2, 3, 4), "int32"),
}


def feeds_for(graph, sizes=None, special=None):
    """Feeds for the graph's inputs: benign random values, or with `special` the values rewrites
    get wrong (NaN, +-Inf, -0.0, ...), each input starting at another point of the cycle."""
    feeds = {}
    for shift, node in enumerate(graph.inputs()):
        shape = tuple(d if isinstance(d, int) else sizes[str(d)] for d in node.types[0].shape)
        dtype = node.types[0].dtype
        if special is not None:
            feeds[node.name] = special(shape, dtype, shift)
        elif np.dtype(dtype).kind in "iu":
            feeds[node.name] = RNG.integers(-5, 5, shape).astype(dtype)
        else:
            feeds[node.name] = RNG.uniform(0.2, 2, shape).astype(dtype)
    return feeds


def simplify(build, unsafe_math=False, shapes=SHAPES, sizes=None, exact=None):
    """Build `build(**inputs)`, run the rule table on a copy; check types and values are kept: with
    `exact` (the `identical` and `special` fixtures) bit for bit on special values, else to
    rounding on benign ones. Returns (what fired, the ops left that the output needs)."""
    with gk.Graph() as g:
        inputs = {}
        for name, spec in shapes.items():
            shape, dtype = spec if isinstance(spec[-1], str) else (spec, "float32")
            inputs[name] = gk.input(name, shape, dtype)
        out = build(**inputs)
    optimized, ctx = g.copy(), PassContext([out.value], unsafe_math=unsafe_math)
    fired = rewrite(optimized, ctx, RULES)
    verify(optimized)
    (new,) = ctx.outputs
    assert optimized.type_of(new) == g.type_of(out.value)
    if exact is not None:
        identical, special = exact
        feeds = feeds_for(g, sizes, special)
        identical(gk.compile(optimized, [new])(**feeds)[0], gk.compile(g, out)(**feeds))
    feeds = feeds_for(g, sizes)
    np.testing.assert_allclose(gk.compile(optimized, [new])(**feeds)[0], gk.compile(g, out)(**feeds), rtol=1e-6)
    ops = sorted(optimized.node(n).op for n in optimized.needed_nodes([new]) if optimized.node(n).op != "input")
    return fired, ops


def one():
    return gk.constant(np.float32(1.0))


def zero(value=0.0):
    return gk.constant(np.float32(value))


EXACT_CASES = [
    # (rule, expression, ops left): the rule fires by default and the result is bit for bit the same
    ("mul_one", lambda x, **_: x * 1.0, []),
    ("mul_one", lambda x, **_: one() * x, []),
    ("mul_one", lambda x, **_: gk.broadcast_to(one(), (3, 4)) * x, []),  # ones_like(g) * g
    ("mul_one", lambda y, **_: gk.broadcast_to(one(), (3, 4)) * y, ["broadcast_to"]),
    ("add_zero", lambda x, **_: x + gk.broadcast_to(zero(-0.0), (3, 4)), []),  # only -0.0 keeps x's sign
    ("add_zero", lambda i, **_: i + 0, []),
    ("sub_zero", lambda x, **_: x - 0.0, []),
    ("div_one", lambda x, **_: x / 1.0, []),
    ("mul_zero", lambda i, **_: i * 0, ["broadcast_to", "constant"]),
    (  # the constant's products are +0.0; x * 0.0 stays, and so does the + 0.0 (x * 0.0 may be -0.0)
        "mul_zero",
        lambda x, **_: x * 0.0 + gk.constant(np.float32([1, 2, 3, 4])) * 0.0,
        ["add", "broadcast_to", "constant", "constant", "mul"],
    ),
    ("sub_self", lambda i, **_: i - i, ["broadcast_to", "constant"]),
    ("neg_neg", lambda x, **_: gk.neg(gk.neg(x)), []),
    ("cast_same", lambda x, **_: gk.emit("cast", x, dtype="float32"), []),
    ("transpose_transpose", lambda x, **_: gk.transpose(gk.transpose(x)), []),
    ("transpose_transpose", lambda z, **_: gk.transpose(gk.transpose(z, (1, 2, 0)), (1, 2, 0)), ["transpose"]),
    ("transpose_identity", lambda x, **_: gk.emit("transpose", x, perm=(0, 1)), []),
    ("reshape_reshape", lambda x, **_: gk.reshape(gk.reshape(x, (12,)), (4, 3)), ["reshape"]),
    ("reshape_reshape", lambda x, **_: gk.reshape(gk.reshape(x, (12,)), (3, 4)), []),
    ("reshape_same", lambda x, **_: gk.emit("reshape", x, shape=(3, 4)), []),
    ("broadcast_broadcast", lambda y, **_: gk.broadcast_to(gk.broadcast_to(y, (1, 4)), (3, 4)), ["broadcast_to"]),
    ("broadcast_same", lambda x, **_: gk.emit("broadcast_to", x, shape=(3, 4)), []),
    # sums and reassociation are exact on integers (wrapping arithmetic)
    ("sum_no_axes", lambda i, **_: gk.emit("sum", i, axes=(), keepdims=True), []),
    ("sum_of_broadcast", lambda j, **_: gk.sum(gk.broadcast_to(j, (3, 4)), 1, True), ["constant", "mul"]),
    ("sum_chain", lambda n, **_: gk.sum(gk.sum(n, 2, keepdims=True), 0), ["reshape", "sum"]),
    ("sum_chain", lambda j, **_: gk.sum(j, 1), ["reshape"]),
    ("mul_constants", lambda i, **_: (i * 3) * 5, ["constant", "mul"]),
    ("add_constants", lambda i, **_: (i + 3) + 5, ["add", "constant"]),
]

UNSAFE_CASES = [
    # (rule, expression, ops left with unsafe_math): on floating values the rule changes a result
    # for some input (NaN, Inf, -0.0 or rounding), so it fires only with unsafe_math
    ("add_zero", lambda x, **_: x + gk.broadcast_to(zero(), (3, 4)), []),  # -0.0 + 0.0 is +0.0
    ("sub_zero", lambda x, **_: x - zero(-0.0), []),
    ("mul_zero", lambda x, **_: x * 0.0, ["broadcast_to", "constant"]),
    ("mul_zero", lambda x, **_: gk.constant(np.float32([1, -2, 3, 4])) * 0.0 + x, []),  # -2 * 0.0 is -0.0
    ("sub_self", lambda x, **_: x - x, ["broadcast_to", "constant"]),
    ("exp_log", lambda x, **_: gk.exp(gk.log(gk.sigmoid(x))), ["sigmoid"]),
    ("log_exp", lambda x, **_: gk.log(gk.exp(x)), []),
    ("sum_no_axes", lambda x, **_: gk.emit("sum", x, axes=(), keepdims=True), []),
    ("sum_of_broadcast", lambda y, **_: gk.sum(gk.broadcast_to(y, (2, 3, 4)), (0, 1)), ["constant", "mul"]),
    ("sum_of_broadcast", lambda y, **_: gk.sum(gk.broadcast_to(y, (3, 4))), ["constant", "mul", "sum"]),
    ("sum_of_broadcast", lambda k, **_: gk.sum(gk.broadcast_to(k, (3, 4)), 1, True), ["constant", "mul"]),
    ("sum_chain", lambda z, **_: gk.sum(gk.sum(z, 2, keepdims=True), 0), ["reshape", "sum"]),
    ("sum_chain", lambda z, **_: gk.sum(gk.reshape(gk.sum(z, 0), (3, 1, 4)), (0, 2)), ["reshape", "sum"]),
    ("sum_chain", lambda z, **_: gk.sum(gk.expand_dims(gk.sum(z, 1), 0), 2, keepdims=True), ["reshape", "sum"]),
    ("sum_chain", lambda k, **_: gk.sum(k, 1), ["reshape"]),  # a sum over size-1 axes: -0.0 becomes +0.0
    ("mul_constants", lambda x, **_: (x * 2.0) * 3.0, ["constant", "mul"]),
    ("mul_constants", lambda x, **_: 2.0 * (gk.constant(np.float32([1, 2, 3, 4])) * x), ["constant", "mul"]),
    ("add_constants", lambda x, **_: (x + 2.0) + 3.0, ["add", "constant"]),
]


@pytest.mark.parametrize(("rule", "build", "left"), EXACT_CASES, ids=[c[0] for c in EXACT_CASES])
def test_exact_rules_fire_by_default_and_keep_every_value_bit_for_bit(rule, build, left, identical, special):
    fired, ops = simplify(build, exact=(identical, special))
    assert fired[rule] >= 1, fired
    assert ops == sorted(left)


@pytest.mark.parametrize(("rule", "build", "left"), UNSAFE_CASES, ids=[c[0] for c in UNSAFE_CASES])
def test_inexact_rules_on_floats_fire_only_with_unsafe_math(rule, build, left, identical, special):
    fired, _ = simplify(build, exact=(identical, special))
    assert not fired, fired
    fired, ops = simplify(build, unsafe_math=True)
    assert fired[rule] >= 1, fired
    assert ops == sorted(left)


def test_every_rule_has_a_golden_case():
    names = {rule.name for rule in RULES}
    assert names == {case[0] for case in EXACT_CASES + UNSAFE_CASES}


@pytest.mark.parametrize(
    "build",
    [
        lambda x: (x * 1e20) * 1e20,  # x * inf: NaN at x = 0
        lambda x: (x + 3e38) + 3e38,  # x + inf: NaN at x = -inf
        lambda x: (x * 2.0) * 0.5,  # overflows at the first multiply for huge x
        lambda x: x + 0.0,  # -0.0 + 0.0 is +0.0
        lambda x: x * 0.0,  # NaN for Inf, -0.0 for negative x
        lambda x: x - x,  # NaN for Inf
        lambda x: gk.sum(gk.broadcast_to(x, (3, 15)), 0) + gk.sum(gk.reshape(x, (1, 15)), 0),
    ],
    ids=["mul_overflow", "add_overflow", "mul_intermediate", "add_zero", "mul_zero", "sub_self", "sums"],
)
def test_o2_gives_the_o0_result_for_every_input(build, identical, special):
    with gk.Graph() as g:
        x = gk.input("x", (15,))
        out = build(x)
    feeds = {"x": special((15,))}  # every special value once
    identical(gk.compile(g, out, optimize="O2")(**feeds), gk.compile(g, out)(**feeds))


def test_even_unsafe_math_does_not_fold_constants_into_an_infinity():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        out = (x * 1e20) * 1e20
    fired = rewrite(g, PassContext([out.value], unsafe_math=True), RULES)
    assert not fired["mul_constants"]


def test_x_times_zero_keeps_nan_and_inf_by_default():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        out = x * 0.0 + (x - x)
    optimized, outs, _ = optimize(g, [out.value], "O2")
    (got,) = gk.compile(optimized, outs)(x=np.float32([1, np.inf, np.nan]))
    np.testing.assert_array_equal(np.isnan(got), [False, True, True])
    fast, _, _ = optimize(g, [out.value], "O2", unsafe_math=True)
    assert "mul" not in {n.op for n in fast.nodes()} and "sub" not in {n.op for n in fast.nodes()}


def test_a_transpose_of_a_square_matrix_is_not_an_identity():
    fired, ops = simplify(lambda x, **_: gk.transpose(x @ gk.transpose(x) + gk.constant(np.eye(3, dtype=np.float32))))
    assert not fired and ops.count("transpose") == 2


def test_rules_keep_symbolic_shapes():
    def build(x, y):
        ones = gk.broadcast_to(gk.constant(np.float32(1.0)), x.shape)
        return gk.sum(gk.broadcast_to(y, x.shape), 0) + gk.sum(ones * x, 0) + gk.sum(x * 0.0 + 0.0, 0)

    fired, ops = simplify(build, unsafe_math=True, shapes={"x": ("N", 4), "y": (4,)}, sizes={"N": 5})
    assert fired["sum_of_broadcast"] == 1 and fired["mul_one"] == 1 and fired["add_zero"] == 1
    assert "size" in ops  # the count of a symbolic dim is computed at run time


def test_reassociation_respects_the_fold_limit_and_shared_inner_nodes():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4))
        inner = x * 2.0
        out = inner * 3.0 + inner
    ctx = PassContext([out.value], unsafe_math=True)
    assert not rewrite(g.copy(), ctx, RULES)["mul_constants"]  # inner has two users: no gain
    with gk.Graph() as g:
        x = gk.input("x", (1, 1))
        out = (x * gk.constant(np.ones((300, 1), np.float32))) * gk.constant(np.ones((1, 300), np.float32))
    assert not rewrite(g.copy(), PassContext([out.value], fold_limit=1000, unsafe_math=True), RULES)["mul_constants"]


def test_o2_shrinks_a_gradient_graph_and_keeps_its_values(identical):
    rng = np.random.default_rng(1)
    with gk.Graph() as g:
        x, labels = gk.input("x", ("N", 6)), gk.input("labels", ("N",), "int64")
        w, b = gk.param("w", rng.normal(size=(6, 5)).astype(np.float32)), gk.param("b", np.zeros(5, np.float32))
        loss = gk.cross_entropy(gk.relu(x @ w + b) * 1.0, labels)
        grads = gk.grad(loss, [w, b, x])
    outputs = [loss.value, *(t.value for t in grads)]
    optimized, new_outputs, manager = optimize(g, outputs, "O2", verify=True)
    feeds = {"x": rng.normal(size=(7, 6)).astype(np.float32), "labels": rng.integers(0, 5, 7)}
    for got, want in zip(gk.compile(optimized, new_outputs)(**feeds), gk.compile(g, outputs)(**feeds)):
        identical(got, want)
    assert len(optimized) < len(g)
    assert any(r.name == "simplify" and r.changed for r in manager.records)
    compiled = gk.compile(g, outputs, optimize="O2")
    assert len(compiled.node_ids) < len(gk.compile(g, outputs).node_ids)


def test_the_engine_sweeps_long_chains_to_a_fixpoint():
    with gk.Graph() as g:
        out = x = gk.input("x", (2,))
        for _ in range(400):
            out = -(out * 1.0)
    ctx = PassContext([out.value])
    fired = rewrite(g, ctx, RULES)
    assert fired["mul_one"] == 400 and fired["neg_neg"] == 200
    assert ctx.outputs == [x.value] and len(g) == 1


def test_a_rule_that_breaks_the_type_is_an_error():
    bad = Rule("bad", P("neg", V("x")), lambda m: m.emit("reshape", m["x"], shape=(4,)))
    with gk.Graph() as g:
        out = -gk.input("x", (2, 2))
    with pytest.raises(GraphError, match="cannot replace"):
        rewrite(g, PassContext([out.value]), [bad])


def test_repeated_captures_must_bind_the_same_value():
    with gk.Graph() as g:
        x, y = gk.input("x", (2,)), gk.input("y", (2,))
        out = x - y
    assert not rewrite(g, PassContext([out.value], unsafe_math=True), RULES)


@pytest.mark.parametrize(
    ("zero", "fires"), [(0j, {"sub_zero"}), (complex(-0.0, -0.0), {"add_zero"}), (complex(-0.0, 0.0), set())]
)
def test_complex_zeros_fold_only_where_both_parts_keep_the_sign(zero, fires, identical):
    z = np.array([complex(-0.0, -0.0), complex(-0.0, 1), complex(1, -0.0), complex(np.inf, np.nan)], "complex64")
    with gk.Graph() as g:
        x = gk.input("x", (4,), "complex64")
        c = gk.constant(np.complex64(zero))
        outs = [x + c, x - c, x * gk.constant(np.complex64(0)), gk.constant(np.complex64([1, -1, 2, 3])) * c]
    fired = {}
    for out in outs:
        optimized, ctx = g.copy(), PassContext([out.value])
        fired.update(rewrite(optimized, ctx, RULES))
        identical(gk.compile(optimized, ctx.outputs)(x=z)[0], gk.compile(g, out)(x=z))
    assert {rule for rule in fired if rule in ("add_zero", "sub_zero")} == fires
