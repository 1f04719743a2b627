"""The fusion pass: clusters, multi-output fused nodes, semantics, gradients through fused nodes."""

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import verify
from gradkiln.passes import optimize
from gradkiln.testing import elementwise_chain, random_graph_feeds, random_graphs


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
    assert len(optimized.nodes_of("sum")) == 1
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
    import sympy

    x0, x1 = sympy.symbols("x0 x1")
    with gk.Graph():
        a = gk.input("a", (3,))
        with pytest.raises(gk.GraphError, match="uses x1 but the node has 1 inputs"):
            gk.fused(x0 + x1, a)
        with pytest.raises(gk.GraphError, match="floor is not allowed"):
            gk.fused(sympy.floor(x0), a)
