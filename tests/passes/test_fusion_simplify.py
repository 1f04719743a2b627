"""Sympy simplification of fused nodes under unsafe_math: golden rewrites the rule tables miss,
the size bound, and semantics on finite values."""

import time

import numpy as np
import pytest
import sympy
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.passes import optimize
from gradkiln.testing import random_graph_feeds, random_graphs


def _simplified(build, limit=48):
    """(graph, output tensor, optimized graph, output value) for O3 with unsafe_math."""
    with gk.Graph() as g:
        x = gk.input("x", (3, 4))
        y = gk.input("y", (4,))
        out = build(x, y)
    optimized, (value,), _ = optimize(g, [out.value], "O3", unsafe_math=True, simplify_limit=limit)
    return g, out, optimized, value


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda x, y: gk.exp(gk.log(x)) * y / y, None),  # x itself: no node left
        (lambda x, y: (x * y) / y + gk.tanh(x), "x0 + tanh(x0)"),  # and y is no longer read
        (lambda x, y: (x * x - 1.0) / (x - 1.0) * gk.sigmoid(y), "x0*x1 + x1"),  # sigmoid(y): an operand
        (lambda x, y: gk.log(gk.exp(x * y)) - x * y + gk.sin(x), "sin(x0)"),
    ],
)
def test_sympy_simplifies_what_the_rule_tables_miss(build, expected):
    graph, out, optimized, value = _simplified(build)
    _, _, unsimplified, _ = _simplified(build, limit=0)
    assert len(unsimplified.nodes_of("fused")) == 1  # simplify's rules alone left the cluster
    if expected is None:
        assert optimized.node(value.node).op == "input"
    else:
        (node,) = optimized.nodes_of("fused")
        assert node.attrs["exprs"][0] == sympy.sympify(expected)
        assert len(node.inputs) == len(sympy.sympify(expected).free_symbols)
    feeds = {"x": np.float32([[0.5, 2, 3, 4]] * 3), "y": np.float32([1, -2, 0.5, 3])}
    np.testing.assert_allclose(gk.compile(optimized, value)(**feeds), gk.compile(graph, out)(**feeds), rtol=1e-5)


def test_simplification_keeps_a_result_that_would_lose_the_broadcast():
    """x1 * x0 / x0 is x1, of shape (4,): the node must still broadcast it to (3, 4)."""
    graph, out, optimized, value = _simplified(lambda x, y: y * gk.tanh(x) / gk.tanh(x))
    assert optimized.type_of(value).shape == (3, 4)
    feeds = {"x": np.float32(np.arange(1, 13).reshape(3, 4)), "y": np.float32([1, -2, 0.5, 3])}
    np.testing.assert_allclose(gk.compile(optimized, value)(**feeds), gk.compile(graph, out)(**feeds), rtol=1e-5)


def test_simplification_is_bounded_by_simplify_limit_and_stays_fast():
    def chain(x, y):
        for _ in range(40):
            x = gk.tanh(x * 0.9 + y)
        return x * y / y

    start = time.perf_counter()
    _, _, small_limit, _ = _simplified(chain, limit=16)
    _, _, large_limit, _ = _simplified(chain, limit=1000)
    assert time.perf_counter() - start < 10  # sympy never evaluates the nested tanh heads
    (kept,) = small_limit.nodes_of("fused")
    (simplified,) = large_limit.nodes_of("fused")
    assert "x1**(-1)" in sympy.srepr(kept.attrs["exprs"][0]) or "/x1" in str(kept.attrs["exprs"][0])
    assert sympy.count_ops(simplified.attrs["exprs"][0]) < sympy.count_ops(kept.attrs["exprs"][0])


@settings(max_examples=40, deadline=None)
@given(case=random_graphs())
def test_unsafe_o3_computes_the_same_on_finite_values(case):
    graph, outputs = case
    simplified, simplified_outputs, _ = optimize(graph, outputs, "O3", unsafe_math=True)
    feeds = random_graph_feeds()
    want = gk.compile(graph, outputs)(**feeds)
    for got, value in zip(gk.compile(simplified, simplified_outputs)(**feeds), want):
        if np.all(np.isfinite(value)):
            np.testing.assert_allclose(got, value, rtol=1e-4, atol=1e-5)
