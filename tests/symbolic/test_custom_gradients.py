"""stop_gradient, straight-through estimators, custom_vjp, checkpoint scopes and value_and_grad."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.symbolic import checkpoint, custom_vjp, grad, jvp, stop_gradient, value_and_grad
from gradkiln.testing import numeric_grads

rng = np.random.default_rng(0)


def test_value_and_grad_returns_the_output_and_its_gradients():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        value, (dx,) = value_and_grad(gk.sum(x * x), [x])
    got_value, got_dx = gk.compile(g, [value, dx])(x=np.array([1.0, 2.0, 3.0]))
    assert got_value == 14.0
    np.testing.assert_array_equal(got_dx, [2.0, 4.0, 6.0])


def test_stop_gradient_is_the_identity_with_no_gradient_in_either_mode():
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float64")
        y = x * stop_gradient(x)
        (dx,) = grad(gk.sum(y), [x])
        (tangent,) = jvp(y, [x], [np.ones(2)])
    x0 = np.array([3.0, -2.0])
    got_y, got_dx, got_tangent = gk.compile(g, [y, dx, tangent])(x=x0)
    np.testing.assert_array_equal(got_y, x0 * x0)
    np.testing.assert_array_equal(got_dx, x0)  # only through the first factor
    np.testing.assert_array_equal(got_tangent, x0)


def test_straight_through_estimator_rounds_forward_and_passes_the_gradient_back():
    """x + stop_gradient(trunc(x) - x): truncates in the forward pass, identity gradient."""
    with gk.Graph() as g:
        x = gk.input("x", (4,), "float64")
        truncated = gk.cast(gk.cast(x, "int64"), "float64")
        y = x + stop_gradient(truncated - x)
        (dx,) = grad(gk.sum(y * 3.0), [x])
    got_y, got_dx = gk.compile(g, [y, dx])(x=np.array([1.7, -0.4, 2.2, 0.0]))
    np.testing.assert_allclose(got_y, [1.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(got_dx, [3.0, 3.0, 3.0, 3.0])


def _clip_gradient(limit):
    """The identity, whose backward clips the gradient to [-limit, limit]."""
    clip = custom_vjp(lambda x: x * 1.0)
    return clip.defvjp(lambda x: (x * 1.0, []), lambda res, g: [gk.minimum(gk.maximum(g, -limit), limit)])


def test_custom_vjp_replaces_the_gradient_of_the_region_it_wraps():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        y = _clip_gradient(1.0)(x * 4.0)
        (dx,) = grad(gk.sum(y * gk.constant([0.1, 1.0, -2.0], "float64")), [x])
    np.testing.assert_allclose(gk.compile(g, dx)(x=np.ones(3)), [0.4, 4.0, -4.0])
    assert "custom_vjp(<lambda>)" in str(g)


def test_custom_vjp_with_residuals_matches_finite_differences_to_second_order():
    def fn(a, b):
        return gk.log(1.0 + gk.exp(a * b))

    def fwd(a, b):
        return fn(a, b), [a, b, gk.sigmoid(a * b)]

    def bwd(res, g):
        a, b, s = res
        return [g * s * b, gk.sum(g * s * a, 0)]

    f = custom_vjp(fn).defvjp(fwd, bwd)
    feeds = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    with gk.Graph() as g:
        a, b = gk.input("a", (2, 3), "float64"), gk.input("b", (3,), "float64")
        out = gk.sum(f(a, b) ** 2)
        first = grad(out, [a, b])
        second = grad(gk.sum(first[0]), [a])
    want = numeric_grads(gk.compile(g, out), feeds, ["a", "b"], np.ones(()))
    for name, got in zip(["a", "b"], gk.compile(g, first)(**feeds)):
        np.testing.assert_allclose(got, want[name], rtol=1e-6, err_msg=name)
    want2 = numeric_grads(gk.compile(g, gk.Tensor(g, first[0].value)), feeds, ["a"], np.ones((2, 3)))
    np.testing.assert_allclose(gk.compile(g, second[0])(**feeds), want2["a"], rtol=1e-5)


def test_custom_vjp_errors_say_what_to_fix():
    f = custom_vjp(lambda x: x * 2.0)
    with gk.Graph():
        x = gk.input("x", (2,), "float64")
        with pytest.raises(gk.GradientError, match=r"call \.defvjp\(fwd, bwd\)"):
            f(x)
        f.defvjp(lambda x: (x * 2.0, []), lambda res, g: [g, g])
        with pytest.raises(gk.GradientError, match="argument 0 is a float; arguments must be Tensors"):
            f(1.0)
        with pytest.raises(gk.GradientError, match="returned 2 cotangents for 1 arguments"):
            grad(gk.sum(f(x)), [x])


def _mlp_block(x, w):
    h = gk.tanh(x @ w)
    return gk.sigmoid(h) * h


@pytest.mark.parametrize("scoped", [True, False], ids=["checkpoint", "plain"])
def test_checkpoint_gradient_is_right_and_reads_recomputed_copies(scoped):
    feeds = {"x": rng.normal(size=(4, 3)), "w": rng.normal(size=(3, 3))}
    block = checkpoint(_mlp_block) if scoped else _mlp_block
    with gk.Graph() as g:
        x, w = gk.input("x", (4, 3), "float64"), gk.input("w", (3, 3), "float64")
        before = set(g.nx)
        h = block(x, w)
        inside = set(g.nx) - before - {h.value.node}  # the scope's activations, not its result
        loss = gk.sum(block(h, w) ** 2)
        grads = grad(loss, [x, w])
    want = numeric_grads(gk.compile(g, loss), feeds, ["x", "w"], np.ones(()))
    for name, got in zip(["x", "w"], gk.compile(g, grads)(**feeds)):
        np.testing.assert_allclose(got, want[name], rtol=1e-6, err_msg=name)

    backward = [n for n in g.nodes() if n.role in ("grad", "recompute")]
    read_by_backward = {v.node for n in backward for v in n.inputs}
    if scoped:
        assert not read_by_backward & inside, "the backward pass must read recomputed copies"
        assert {"tanh", "sigmoid", "matmul"} <= {n.op for n in g.nodes() if n.role == "recompute"}
        optimized, _, _ = gk.optimize(g, [loss.value, *(t.value for t in grads)], "O1")
        assert "recompute" in {n.role for n in optimized.nodes()}, "CSE must not merge copies into the originals"
    else:
        assert read_by_backward & inside
