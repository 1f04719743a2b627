"""Gradients of gradients, and a symbolic-batch MLP, against finite differences."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.symbolic import grad
from gradkiln.testing import numeric_grads

rng = np.random.default_rng(0)


# name: (scalar function, feeds, inputs to differentiate)
CASES = {
    "tanh_times_cube": (lambda x: gk.sum(gk.tanh(x) * x**3), {"x": rng.uniform(-1.5, 1.5, (3, 4))}, ["x"]),
    "softmax_cross_entropy": (
        lambda z, labels: gk.cross_entropy(z, labels),
        {"z": rng.normal(size=(4, 5)), "labels": np.array([0, 3, 4, 1])},
        ["z"],
    ),
    "softmax_with_probability_labels": (
        lambda z, p: -gk.sum(p * gk.log(gk.softmax(z))),
        {"z": rng.normal(size=(2, 5)), "p": rng.dirichlet(np.ones(5), 2)},
        ["z"],
    ),
    "matmul": (
        lambda a, b: gk.sum(gk.tanh(a @ b)),
        {"a": rng.normal(size=(2, 3, 4)), "b": rng.normal(size=(4, 5))},
        ["a", "b"],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_second_order_matches_finite_differences_of_the_first(name):
    build, feeds, wrt = CASES[name]
    with gk.Graph(name) as g:
        inputs = {k: gk.input(k, v.shape, v.dtype.name) for k, v in feeds.items()}
        first = grad(build(**inputs), [inputs[k] for k in wrt])
    seeds = [rng.normal(size=t.shape) for t in first]
    # d/dx of sum_i seeds_i . first_i: a Hessian-vector product, by gradkiln and by finite differences
    second = grad(first, [inputs[k] for k in wrt], seed=seeds)
    got = gk.compile(g, second)(**feeds)

    first_fn = gk.compile(g, first)
    want = numeric_grads(lambda f: _flat(first_fn(**f)), feeds, wrt, _flat(seeds))
    for k, h in zip(wrt, got):
        np.testing.assert_allclose(h, want[k], rtol=1e-5, atol=1e-7, err_msg=f"d2/d{k}")


def _flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def test_third_order_of_a_polynomial_is_exact():
    with gk.Graph() as g:
        x = gk.input("x", (), "float64")
        d1 = grad(x**4, x)[0]
        d2 = grad(d1, x)[0]
        d3 = grad(d2, x)[0]
    np.testing.assert_allclose(gk.compile(g, [d1, d2, d3])(x=np.array(1.5)), [4 * 1.5**3, 12 * 1.5**2, 24 * 1.5])


def test_symbolic_batch_mlp_gradient_matches_finite_differences_for_two_batch_sizes():
    """One gradient graph over x[N,4], compiled once, run with N = 5 and N = 9."""
    params = {
        "w1": rng.normal(size=(4, 8)) / 2,
        "b1": rng.normal(size=8) / 4,
        "w2": rng.normal(size=(8, 3)) / 2,
        "b2": rng.normal(size=3) / 4,
    }
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 4), "float64")
        labels = gk.input("labels", ("N",), "int64")
        p = {name: gk.param(name, value) for name, value in params.items()}
        hidden = gk.relu(x @ p["w1"] + p["b1"]) + gk.tanh(x @ p["w1"])
        loss = gk.cross_entropy(hidden @ p["w2"] + p["b2"], labels)
        grads = grad(loss, list(p.values()))
    assert "size" in {n.op for n in g.nodes() if n.role == "grad"}, "the mean over N must divide by size(x, N)"
    step, forward = gk.compile(g, grads), gk.compile(g, loss)

    for batch in (5, 9):
        feeds = {"x": rng.normal(size=(batch, 4)), "labels": rng.integers(0, 3, batch), **params}
        want = numeric_grads(forward, feeds, list(params), np.ones(()))
        for name, dp in zip(params, step(**feeds)):
            np.testing.assert_allclose(dp, want[name], rtol=1e-5, atol=1e-8, err_msg=f"N={batch}: d loss / d {name}")
