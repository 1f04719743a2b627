"""Matmul epilogue fusion (bias, activation, residual into one fused_matmul node) and transposes
folded into its flags: structure, numpy and TVM results, gradients, cost."""

import numpy as np
import pytest
import sympy

import gradkiln as gk
from gradkiln.passes import optimize
from gradkiln.passes.cost import TRANSCENDENTAL, cost
from gradkiln.testing import mlp_feeds, mlp_training_step, numeric_grads


def _feeds(*shapes):
    rng = np.random.default_rng(0)
    return [rng.uniform(-1.5, 1.5, shape).astype(np.float32) for shape in shapes]


def test_bias_activation_and_residual_fuse_into_the_matmul():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 8))
        w = gk.input("w", (8, 6))
        b = gk.input("b", (6,))
        res = gk.input("res", ("N", 6))
        y = gk.tanh(x @ w + b) + res
    optimized, (out,), _ = optimize(g, [y.value], "O3")
    (node,) = optimized.nodes_of("fused_matmul")
    assert out.node == node.id and not optimized.nodes_of("matmul") and not optimized.nodes_of("fused")
    assert [optimized.node(v.node).name for v in node.inputs] == ["x", "w", "b", "res"]
    x_, w_, b_, res_ = _feeds((5, 8), (8, 6), (6,), (5, 6))
    want = np.tanh(x_ @ w_ + b_) + res_
    feeds = {"x": x_, "w": w_, "b": b_, "res": res_}
    for target in ("numpy", "llvm"):
        np.testing.assert_allclose(gk.compile(optimized, out, target=target)(**feeds), want, rtol=1e-5, atol=1e-6)


def test_a_matmul_read_twice_or_widened_keeps_its_own_node():
    with gk.Graph() as g:
        x = gk.input("x", (4, 1))
        w = gk.input("w", (1, 1))
        p = x @ w
        twice = gk.exp(p) + gk.sum(p)
        widened = gk.sigmoid(x @ gk.input("v", (1, 1)) + gk.input("row", (5,)))  # (4, 5): wider than the product
    optimized, _, _ = optimize(g, [twice.value, widened.value], "O3")
    assert len(optimized.nodes_of("matmul")) == 2 and not optimized.nodes_of("fused_matmul")
    with gk.Graph(), pytest.raises(gk.ShapeError, match="must keep the matmul's shape"):
        gk.fused_matmul(
            sympy.Symbol("x0") + sympy.Symbol("x1"), gk.input("a", (4, 1)), gk.input("c", (1, 1)), gk.input("d", (5,))
        )


def test_an_mlp_training_step_fuses_every_epilogue_and_transpose_and_keeps_its_gradients():
    graph, outputs = mlp_training_step()
    optimized, values, _ = optimize(graph, [t.value for t in outputs], "O3")
    fused = optimized.nodes_of("fused_matmul")
    epilogues = [str(n.attrs["exprs"]) for n in fused if str(n.attrs["exprs"]) != "x0"]
    # relu's backward reads relu's output, so the pre-activations are no outputs of their own
    assert sorted(epilogues) == ["Relu(x0 + x1)", "Relu(x0 + x1)", "x0 + x1"]
    assert len(fused) == 8 and not optimized.nodes_of("matmul") and not optimized.nodes_of("transpose")
    feeds = mlp_feeds(16)
    want = gk.compile(graph, outputs)(**feeds)
    for target in ("numpy", "llvm"):
        for got, value in zip(gk.compile(optimized, values, target=target)(**feeds), want):
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6)


def test_gradients_through_a_fused_matmul_match_finite_differences():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4), "float64")
        w = gk.input("w", (4, 2), "float64")
        b = gk.input("b", (2,), "float64")
        loss = gk.sum(gk.sin(x @ w + b) * (x @ w))  # the second product is another fused_matmul's x0 * x1
    optimized, (out,), _ = optimize(g, [loss.value], "O3")
    assert optimized.nodes_of("fused_matmul")
    names = ["x", "w", "b"]
    with optimized:
        wrt = [gk.Tensor(optimized, optimized.by_name(n).outputs[0]) for n in names]
        grads = gk.grad(gk.Tensor(optimized, out), wrt)
    rng = np.random.default_rng(5)
    feeds = {"x": rng.normal(size=(3, 4)), "w": rng.normal(size=(4, 2)), "b": rng.normal(size=(2,))}
    want = numeric_grads(lambda f: gk.compile(g, loss)(**f), feeds, names, np.float64(1.0))
    for name, value in zip(names, gk.compile(optimized, grads)(**feeds)):
        np.testing.assert_allclose(value, want[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_cost_counts_the_product_the_epilogue_and_the_reduction():
    with gk.Graph() as g:
        x = gk.input("x", (4, 8))
        w = gk.input("w", (8, 3))
        y = gk.tanh(x @ w)
        z = gk.sum(gk.exp(x) * 2.0, 1)
    optimized, _, _ = optimize(g, [y.value, z.value], "O3")
    by_op = {n.op: n.flops for n in cost(optimized).nodes}
    assert by_op["fused_matmul"] == 2 * 4 * 3 * 8 + 4 * 3 * TRANSCENDENTAL  # x @ w, then tanh
    assert by_op["fused_reduce"] == 4 * 8 * (TRANSCENDENTAL + 1) + 4 * 8  # exp and * 2, then the sum


@pytest.mark.parametrize("batched", [False, True])
def test_transposes_of_the_last_two_axes_fold_into_the_matmul_flags(batched):
    lead = (2,) if batched else ()
    with gk.Graph() as g:
        a = gk.input("a", (*lead, 4, 3))
        b = gk.input("b", (*lead, 5, 4))
        swap = (*range(len(lead)), len(lead) + 1, len(lead))
        y = gk.transpose(a, swap) @ gk.transpose(b, swap)
    optimized, (out,), _ = optimize(g, [y.value], "O3")
    (node,) = optimized.nodes_of("fused_matmul")
    assert node.attrs["transpose_a"] and node.attrs["transpose_b"] and not optimized.nodes_of("transpose")
    a_, b_ = _feeds((*lead, 4, 3), (*lead, 5, 4))
    want = np.swapaxes(a_, -1, -2) @ np.swapaxes(b_, -1, -2)
    for target in ("numpy", "llvm"):
        np.testing.assert_allclose(gk.compile(optimized, out, target=target)(a=a_, b=b_), want, rtol=1e-5, atol=1e-6)


def test_other_transposes_stay_and_a_transpose_read_elsewhere_is_kept():
    with gk.Graph() as g:
        x = gk.input("x", (3, 4, 4))
        w = gk.input("w", (3, 4))
        lead_swapped = gk.transpose(x, (1, 0, 2)) @ gk.input("v", (4, 2))  # not the last two axes
        wt = gk.transpose(w, (1, 0))
        y = x[0] @ wt
    optimized, _, _ = optimize(g, [lead_swapped.value, y.value, wt.value], "O3")
    flags = sorted((n.attrs["transpose_a"], n.attrs["transpose_b"]) for n in optimized.nodes_of("fused_matmul"))
    assert flags == [(False, True)]  # only x[0] @ w.T: the (1, 0, 2) transpose is a matmul's plain operand
    assert len(optimized.nodes_of("transpose")) == 2  # wt is an output; (1, 0, 2) stays
