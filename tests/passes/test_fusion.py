"""The fusion pass: clusters, multi-output fused nodes, reductions fused with their producers,
semantics, gradients through fused nodes. Matmul epilogues: test_fusion_matmul.py; sympy
simplification: test_fusion_simplify.py."""

import numpy as np
import pytest
import sympy
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import verify
from gradkiln.passes import optimize
from gradkiln.testing import (
    elementwise_chain,
    numeric_grads,
    random_graph_feeds,
    random_graphs,
)


def _fused(graph):
    return graph.nodes_of("fused")


def test_an_elementwise_chain_becomes_one_node_with_one_output():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4))
        b = gk.input("b", (4,))
        y = gk.sigmoid(gk.tanh(x * 0.9 + b) * 2.0 - x)
    optimized, (out,), _ = optimize(g, [y.value], ["fusion"])
    (node,) = _fused(optimized)
    assert out.node == node.id and len(node.types) == 1
    assert {optimized.node(v.node).op for v in node.inputs} == {"input"}
    feeds = {"x": np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4), "b": np.float32([0.5, -1, 2, 0])}
    np.testing.assert_allclose(gk.compile(optimized, out)(**feeds), gk.compile(g, y)(**feeds), rtol=1e-6)


def test_a_value_read_outside_the_cluster_becomes_a_second_output():
    with gk.Graph() as g:
        x = gk.input("x", (5,))
        inner = gk.exp(x) + 1.0
        y = gk.log(inner) * 3.0
        z = gk.sum(inner)  # a reduction reads the intermediate
    optimized, outs, _ = optimize(g, [y.value, z.value], ["fusion"])
    (node,) = _fused(optimized)
    assert len(node.types) == 2
    feeds = {"x": np.float32([0.1, -1, 2, 0.5, 3])}
    for got, want in zip(gk.compile(optimized, outs)(**feeds), gk.compile(g, [y, z])(**feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_fusion_stops_at_reductions_shape_changes_and_the_size_limit():
    with gk.Graph() as g:
        x = gk.input("x", (4, 6))
        a = gk.tanh(x * 2.0)
        s = gk.sum(a, 1, keepdims=True)
        y = gk.exp(s) * gk.sin(s)  # shape (4, 1): a cluster of its own
        chain = x
        for _ in range(10):
            chain = gk.tanh(chain) + 1.0
    optimized, _, _ = optimize(g, [y.value, chain.value], ["fusion"], fuse_limit=5)
    sizes = sorted(len(n.attrs["exprs"]) for n in _fused(optimized))
    assert len(_fused(optimized)) >= 2 + 20 // 5 - 1 and sizes
    (reduction,) = optimized.nodes_of("fused_reduce")  # the sum took the tanh cluster in
    assert not optimized.nodes_of("sum") and reduction.attrs["reduce"] == "sum"
    verify(optimized)


def test_nan_and_inf_behave_as_before_fusion():
    """sympy would fold x - x to 0 and exp(log x) to x; fused expressions keep the operations."""
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        y = (x - x) + gk.exp(gk.log(x)) * 1.0
    optimized, (out,), _ = optimize(g, [y.value], "O3")
    feeds = {"x": np.float32([np.inf, -1.0, 2.0])}
    np.testing.assert_array_equal(gk.compile(optimized, out)(**feeds), [np.nan, np.nan, 2.0])
    assert _fused(optimized)


def test_the_gradient_of_an_elementwise_chain_is_two_fused_kernels():
    graph, outputs = elementwise_chain(50, (8, 16))
    optimized, outs, _ = optimize(graph, [t.value for t in outputs], "O3")
    fused = _fused(optimized)
    assert len(fused) == 2
    forward, backward = sorted(fused, key=lambda n: len(n.types), reverse=True)
    assert len(forward.types) > 1  # the tanh outputs the backward pass reads, computed in one kernel
    assert "tanh" not in str(backward.attrs["exprs"])  # tanh' = 1 - y**2 reads them, not recomputes
    feeds = {"x": np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)}
    want = gk.compile(graph, outputs)(**feeds)
    for target in ("numpy", "llvm"):
        got = gk.compile(optimized, outs, target=target)(**feeds)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(case=random_graphs())
def test_gradients_through_fused_nodes_equal_the_unfused_gradients(case):
    graph, outputs = case
    fused_graph, fused_outputs, _ = optimize(graph, outputs, "O3")
    feeds = random_graph_feeds()
    results = []
    for g, outs in ((graph, outputs), (fused_graph, fused_outputs)):
        with g:
            loss = sum(gk.sum(gk.Tensor(g, v) * 0.5) for v in outs if g.type_of(v).dtype == "float32")
            x = gk.Tensor(g, g.by_name("x").outputs[0])
            results.append(gk.compile(g, gk.grad(loss, x, allow_unused=True))(**feeds))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


def test_o3_compiles_with_tvm_and_matches_numpy():
    graph, outputs = elementwise_chain(12, (4, 8))
    feeds = {"x": np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)}
    want = gk.compile(graph, outputs)(**feeds)
    got = gk.compile(graph, outputs, target="llvm", optimize="O3")(**feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_a_bad_fused_node_is_a_clear_error():
    x0, x1 = sympy.symbols("x0 x1")
    with gk.Graph():
        a = gk.input("a", (3,))
        with pytest.raises(gk.GraphError, match="uses x1 but the node has 1 inputs"):
            gk.fused(x0 + x1, a)
        with pytest.raises(gk.GraphError, match="floor is not allowed"):
            gk.fused(sympy.floor(x0), a)
    with gk.Graph():
        a = gk.input("a", (3,))
        with pytest.raises(gk.GraphError, match="reduce='prod' is not one of"):
            gk.fused_reduce(x0 * 2, a, reduce="prod")
        with pytest.raises(gk.GraphError, match="numbers must be real"):
            gk.fused(x0 * sympy.I, a)


def _feeds(*shapes, low=-1.5, high=1.5):
    rng = np.random.default_rng(0)
    return [rng.uniform(low, high, shape).astype(np.float32) for shape in shapes]


# -- reductions fused with their elementwise producers -------------------------------------------


@pytest.mark.parametrize(
    ("reduce", "axis", "keepdims"), [("sum", None, False), ("mean", 0, True), ("max", 1, False), ("sum", (0, 2), True)]
)
def test_a_reduction_of_an_elementwise_cluster_becomes_one_node(reduce, axis, keepdims):
    with gk.Graph() as g:
        x = gk.input("x", (2, 3, 4))
        b = gk.input("b", (4,))
        y = getattr(gk, reduce)(gk.tanh(x * b + 0.5) * x, axis, keepdims=keepdims)
    optimized, (out,), _ = optimize(g, [y.value], "O3")
    (node,) = optimized.nodes_of("fused_reduce")
    assert out.node == node.id and node.attrs["reduce"] == reduce
    assert not optimized.nodes_of("fused") and not optimized.nodes_of(reduce)
    x_, b_ = _feeds((2, 3, 4), (4,))
    want = getattr(np, reduce)(np.tanh(x_ * b_ + 0.5) * x_, axis=axis, keepdims=keepdims)
    for target in ("numpy", "llvm"):
        got = gk.compile(optimized, out, target=target)(x=x_, b=b_)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_a_single_elementwise_node_fuses_into_its_reduction():
    with gk.Graph() as g:
        x = gk.input("x", (5, 6))
        y = gk.sum(x * x, 1)
    optimized, (out,), _ = optimize(g, [y.value], "O3")
    assert [n.op for n in optimized.nodes()] == ["input", "fused_reduce"]
    (x_,) = _feeds((5, 6))
    np.testing.assert_allclose(gk.compile(optimized, out)(x=x_), np.sum(x_ * x_, 1), rtol=1e-6)


def test_a_reduction_input_read_elsewhere_or_requested_is_not_fused():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4))
        e = gk.exp(x) * 2.0
        y = gk.max(e, 1)
        z = gk.sum(gk.sin(x) + 1.0)
    optimized, _, _ = optimize(g, [y.value, e.value, z.value], "O3")
    assert len(optimized.nodes_of("max")) == 1  # e is an output too: it stays a value
    (node,) = optimized.nodes_of("fused_reduce")
    assert node.attrs["reduce"] == "sum"


def test_gradients_of_fused_reductions_match_finite_differences():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4), "float64")
        b = gk.input("b", (4,), "float64")
        loss = gk.sum(gk.max(gk.sin(x * b) + x, 1)) + gk.mean(gk.tanh(x - b) ** 2) + gk.sum(gk.exp(b * 0.5))
    optimized, (out,), _ = optimize(g, [loss.value], "O3")
    assert len(optimized.nodes_of("fused_reduce")) == 3
    with optimized:
        grads = gk.grad(
            gk.Tensor(optimized, out), [gk.Tensor(optimized, optimized.by_name(n).outputs[0]) for n in "xb"]
        )
    rng = np.random.default_rng(3)
    feeds = {"x": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}
    got = gk.compile(optimized, grads)(**feeds)
    want = numeric_grads(lambda f: gk.compile(g, loss)(**f), feeds, ["x", "b"], np.float64(1.0))
    for name, value in zip("xb", got):
        np.testing.assert_allclose(value, want[name], rtol=1e-6, atol=1e-8, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(case=random_graphs())
def test_o3_computes_what_the_graph_computed(case, identical, special):
    """Bit for bit on numpy, on benign feeds and on NaN, Inf, -0.0 and overflowing ones."""
    graph, outputs = case
    fused_graph, fused_outputs, _ = optimize(graph, outputs, "O3")
    for feeds in (random_graph_feeds(), {"x": special((3, 4)), "y": special((4,), shift=5)}):
        want = gk.compile(graph, outputs)(**feeds)
        for got, value in zip(gk.compile(fused_graph, fused_outputs)(**feeds), want):
            identical(got, value)


def test_zero_times_inf_stays_nan_in_a_fused_node():
    with gk.Graph() as g:
        y = gk.input("y", (2,))
        out = 0.0 / y + 0.0 / y
    optimized, (value,), _ = optimize(g, [out.value], "O3")
    assert optimized.nodes_of("fused")
    np.testing.assert_array_equal(gk.compile(optimized, value)(y=np.float32([0.0, 2.0])), [np.nan, 0.0])


UNARY_OPS = ["neg", "reciprocal", "exp", "log", "sqrt", "rsqrt", "square", "tanh", "sigmoid", "abs", "relu", "sin"]
UNARY_OPS += ["exp2", "expm1", "log1p", "softplus", "silu", "erf", "sign", "cosh"]
BINARY_OPS = ["add", "sub", "mul", "div", "pow"]
CONSTANTS = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -0.5, 1e20, 3e38, np.inf, -np.inf, np.nan, -2.5]


def random_elementwise_graph(seed, size=8):
    """An elementwise graph over x and y whose operations and scalar constants are drawn from the
    ones whose fused forms are easy to get wrong (reciprocals beside products, -0.0, Inf, NaN)."""
    rng = np.random.default_rng(seed)
    with gk.Graph() as g:
        values = [gk.input("x", (15,)), gk.input("y", (15,))]
        for _ in range(size):
            pick = lambda: values[-1 - min(int(rng.geometric(0.5)) - 1, len(values) - 1)]  # noqa: E731
            if rng.random() < 0.45:
                values.append(getattr(gk, str(rng.choice(UNARY_OPS)))(pick()))
                continue
            a = pick()
            b = gk.constant(np.float32(rng.choice(CONSTANTS))) if rng.random() < 0.4 else pick()
            a, b = (b, a) if rng.random() < 0.5 else (a, b)
            values.append(gk.emit(str(rng.choice(BINARY_OPS)), a, b))
        values.append(gk.sum(values[-1]))  # a fused_reduce
    return g, values[-4:]


@pytest.mark.parametrize("seed", range(80))
def test_o3_on_numpy_gives_the_o0_result_bit_for_bit(seed, identical, special):
    graph, outputs = random_elementwise_graph(seed)
    optimized, new_outputs, _ = optimize(graph, [v.value for v in outputs], "O3", verify=True)
    feeds = {"x": special((15,)), "y": special((15,), shift=4)}
    for got, want in zip(gk.compile(optimized, new_outputs)(**feeds), gk.compile(graph, outputs)(**feeds)):
        identical(got, want)


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        lambda x: gk.exp(x) / gk.constant(np.float32(0.0)),
        lambda x: gk.reciprocal(x * gk.constant(np.float32(-0.0))),
        lambda x: gk.reciprocal(gk.constant(np.float32(-0.0)) + x * 0.0),
        lambda x: x * gk.constant(np.float32(np.inf)) + gk.constant(np.float32(np.nan)) * x,
    ],
    ids=["exp_over_zero", "reciprocal_of_negative_zero_product", "negative_zero_sum", "inf_and_nan"],
)
def test_o3_keeps_zero_inf_and_nan_constants_exact_on_numpy_and_llvm(build, identical, special):
    with gk.Graph() as g:
        x = gk.input("x", (15,))
        out = build(x)
    optimized, outs, _ = optimize(g, [out.value], "O3")
    assert optimized.nodes_of("fused")
    feeds = {"x": special((15,))}
    want = gk.compile(g, out)(**feeds)
    identical(gk.compile(optimized, outs)(**feeds)[0], want)
    identical(gk.compile(optimized, outs, target="llvm")(**feeds)[0], want)


@pytest.mark.parametrize(
    "build",
    [
        lambda x, y, z: x * gk.reciprocal(y),
        lambda x, y, z: gk.reciprocal(y) * x,
        lambda x, y, z: gk.reciprocal(y) / z,
        lambda x, y, z: gk.reciprocal(y) * gk.reciprocal(z),
        lambda x, y, z: gk.constant(np.float32(2.0)) * gk.reciprocal(y),
        lambda x, y, z: x * gk.emit("pow", y, gk.constant(np.float32(-1.0))),
    ],
    ids=["x_times_reciprocal", "reciprocal_times_x", "reciprocal_over_z", "two_reciprocals", "two_times", "pow"],
)
def test_o3_keeps_the_order_of_reciprocals_and_products(build, identical):
    """1/y overflows for y = 1e-39: x * (1/y) is inf where x / y is 1, (1/y) / z is inf where 1 / (y*z) is 1e29."""
    with gk.Graph() as g:
        x, y, z = (gk.input(name, (4,)) for name in "xyz")
        out = build(x, y, z)
    optimized, outs, _ = optimize(g, [out.value], "O3")
    assert optimized.nodes_of("fused")
    feeds = {"x": np.float32([1e-39, 2, 0, 1e30]), "y": np.float32([1e-39, 4, 0, 1e-39]), "z": np.float32([1e10] * 4)}
    identical(gk.compile(optimized, outs)(**feeds)[0], gk.compile(g, out)(**feeds))
