"""stop_gradient, straight-through estimators, custom_vjp, custom_jvp, checkpoint scopes and value_and_grad."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import OPS, OpDef
from gradkiln.symbolic import (
    checkpoint,
    custom_jvp,
    custom_vjp,
    grad,
    jvp,
    stop_gradient,
    straight_through,
    value_and_grad,
    vmap,
)
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
        before = set(g.node_ids())
        h = block(x, w)
        inside = set(g.node_ids()) - before - {h.value.node}  # the scope's activations, not its result
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


def _scaled_tanh_jvp(primals, tangents):
    (a, b), (ta, tb) = primals, tangents
    return a * gk.tanh(b), ta * gk.tanh(b) + a * (1.0 - gk.tanh(b) ** 2) * tb


def test_custom_jvp_rule_drives_forward_and_reverse_mode_and_matches_finite_differences():
    f = custom_jvp(lambda a, b: a * gk.tanh(b)).defjvp(_scaled_tanh_jvp)
    feeds = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    with gk.Graph() as g:
        a, b = gk.input("a", (2, 3), "float64"), gk.input("b", (3,), "float64")
        out = gk.sum(f(a, b) ** 2)
        grads = grad(out, [a, b])
        (tangent,) = jvp(out, [a, b], [np.ones((2, 3)), np.ones(3)])
        (second,) = grad(gk.sum(grads[1]), [b])
    want = numeric_grads(gk.compile(g, out), feeds, ["a", "b"], np.ones(()))
    got_a, got_b, got_tangent, got_second = gk.compile(g, [*grads, tangent, second])(**feeds)
    np.testing.assert_allclose(got_a, want["a"], rtol=1e-7)
    np.testing.assert_allclose(got_b, want["b"], rtol=1e-7)
    np.testing.assert_allclose(got_tangent, want["a"].sum() + want["b"].sum(), rtol=1e-7)
    want2 = numeric_grads(gk.compile(g, gk.Tensor(g, grads[1].value)), feeds, ["b"], np.ones(3))
    np.testing.assert_allclose(got_second, want2["b"], rtol=1e-6)


def test_custom_jvp_replaces_the_derivative_of_the_function_it_wraps():
    """The rule says the derivative is 3 everywhere; fn's own nodes would say 1."""
    f = custom_jvp(lambda x: x * 1.0).defjvp(lambda p, t: (p[0] * 1.0, t[0] * 3.0))
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float64")
        y = f(x) * x
        (dx,) = grad(gk.sum(y), [x])
        (tangent,) = jvp(y, [x], [np.ones(2)])
    got_dx, got_tangent = gk.compile(g, [dx, tangent])(x=np.array([1.0, 2.0]))
    np.testing.assert_array_equal(got_dx, [4.0, 8.0])  # 3x + x
    np.testing.assert_array_equal(got_tangent, [4.0, 8.0])
    assert "custom_jvp(<lambda>)" in str(g)


def test_custom_jvp_gives_a_registered_op_without_rules_its_derivatives(monkeypatch):
    cube = OpDef("cube_without_rules", lambda x: (x,), lambda x: x**3, 1, elementwise=True)
    monkeypatch.setitem(OPS, cube.name, cube)
    f = custom_jvp(lambda x: gk.emit(cube.name, x)).defjvp(lambda p, t: (p[0] ** 3, 3.0 * p[0] ** 2 * t[0]))
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        y = f(x)
        (dx,) = grad(gk.sum(y), [x])
        (tangent,) = jvp(y, [x], [np.ones(3)])
    x0 = np.array([1.0, -2.0, 0.5])
    got_y, got_dx, got_tangent = gk.compile(g, [y, dx, tangent])(x=x0)
    np.testing.assert_array_equal(got_y, x0**3)
    np.testing.assert_array_equal(got_dx, 3 * x0**2)
    np.testing.assert_array_equal(got_tangent, 3 * x0**2)


def test_custom_jvp_under_vmap_keeps_its_rule():
    f = custom_jvp(lambda x: x * 1.0).defjvp(lambda p, t: (p[0] * 1.0, t[0] * gk.cos(p[0])))
    xs0 = rng.normal(size=(4, 3))
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        xs = gk.input("xs", (4, 3), "float64")
        (ys,) = vmap(gk.sum(f(x) * x), x, xs)
        (dxs,) = grad(gk.sum(ys), [xs])
        (tangent,) = jvp(ys, [xs], [np.ones((4, 3))])
    got_dxs, got_tangent = gk.compile(g, [dxs, tangent])(xs=xs0)
    np.testing.assert_allclose(got_dxs, np.cos(xs0) * xs0 + xs0, rtol=1e-14)
    np.testing.assert_allclose(got_tangent, got_dxs.sum(1), rtol=1e-14)


def test_custom_jvp_errors_say_what_to_fix():
    f = custom_jvp(lambda x: x * x)
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float64")
        with pytest.raises(gk.GradientError, match=r"call \.defjvp\(jvp\)"):
            f(x)
        f.defjvp(lambda p, t: (p[0] * p[0], t[0] * t[0]))  # not linear in the tangent
        (tangent,) = jvp(f(x), [x], [np.full(2, 3.0)])  # forward mode uses the rule as given
        with pytest.raises(gk.GradientError, match=r"not linear in the tangents .* wrap the function in custom_vjp"):
            grad(gk.sum(f(x)), [x])
        f.defjvp(lambda p, t: t[0])
        with pytest.raises(gk.GradientError, match=r"must return \(primal_out, tangent_out\)"):
            jvp(f(x), [x], [np.ones(2)])
    np.testing.assert_array_equal(gk.compile(g, tangent)(x=np.ones(2)), [9.0, 9.0])


def test_straight_through_rounds_forward_and_passes_the_gradient_back():
    with gk.Graph() as g:
        x = gk.input("x", (4,), "float64")
        y = straight_through(x, gk.round)
        (dx,) = grad(gk.sum(y * gk.constant([1.0, 2.0, 3.0, 4.0], "float64")), [x])
    got_y, got_dx = gk.compile(g, [y, dx])(x=np.array([0.4, 1.6, -2.5, 3.0]))
    np.testing.assert_array_equal(got_y, np.round([0.4, 1.6, -2.5, 3.0]))
    np.testing.assert_array_equal(got_dx, [1.0, 2.0, 3.0, 4.0])
