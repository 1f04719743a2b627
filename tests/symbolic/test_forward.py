"""Forward mode: every op's jvp against finite differences and against its vjp (the transpose)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import gradkiln as gk
from gradkiln.symbolic import grad, jvp, register_jvp
from gradkiln.testing import op_samples

SAMPLES = [s for s in op_samples("float64") if s.wrt]
# see test_op_gradients: the cast sample rounds through float32 (also in its jvp and vjp)
STEP_AND_RTOL = {"cast": (1e-2, 1e-4)}


def _with_jvp(sample):
    """The sample's graph, its inputs, its output, the jvp of the output along tangent inputs
    `t_<name>`, and feeds for all of them."""
    graph, inputs, out = sample.graph()
    with graph:
        tangents = [gk.input(f"t_{k}", inputs[k].shape, inputs[k].dtype) for k in sample.wrt]
    (dout,) = jvp(out, [inputs[k] for k in sample.wrt], tangents)
    rng = np.random.default_rng(2)
    feeds = dict(sample.feeds) | {f"t_{k}": rng.normal(size=sample.feeds[k].shape) for k in sample.wrt}
    return graph, inputs, out, dout, feeds


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_jvp_matches_a_finite_difference_along_the_tangent(sample):
    graph, _, out, dout, feeds = _with_jvp(sample)
    assert dout.type == out.type
    f = gk.compile(graph, out)
    eps, rtol = STEP_AND_RTOL.get(sample.name, (1e-6, 1e-5))

    def shifted(delta):
        return f(**(sample.feeds | {k: sample.feeds[k] + delta * feeds[f"t_{k}"] for k in sample.wrt}))

    want = (shifted(eps) - shifted(-eps)) / (2 * eps)
    got = gk.compile(graph, dout)(**feeds)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol / 10, err_msg=sample.name)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_jvp_is_the_transpose_of_vjp(sample):
    """<J v, u> == <v, J^T u> for random v (tangents) and u (a cotangent)."""
    graph, inputs, out, dout, feeds = _with_jvp(sample)
    with graph:
        seed = gk.input("u", out.shape, out.dtype)
    grads = grad(out, [inputs[k] for k in sample.wrt], seed=seed)
    u = np.random.default_rng(3).normal(size=gk.compile(graph, out)(**sample.feeds).shape)
    jv, *vjps = gk.compile(graph, [dout, *grads])(**feeds, u=u)
    lhs = np.sum(jv * u)
    rhs = sum(np.sum(feeds[f"t_{k}"] * g) for k, g in zip(sample.wrt, vjps))
    rtol = 1e-6 if sample.name == "cast" else 1e-10
    np.testing.assert_allclose(lhs, rhs, rtol=rtol, atol=rtol / 100, err_msg=sample.name)


def test_an_output_that_does_not_depend_on_the_inputs_gets_a_zero_tangent():
    with gk.Graph() as g:
        x, y = gk.input("x", (3,), "float64"), gk.input("y", (2,), "float64")
        dx_out, dy_out = jvp([gk.exp(x), gk.sum(gk.sign(x)) * y], [x], [np.ones(3)])
    got = gk.compile(g, [dx_out, dy_out])(x=np.zeros(3), y=np.ones(2))
    np.testing.assert_array_equal(got[0], np.ones(3))
    np.testing.assert_array_equal(got[1], np.zeros(2))


def test_an_intermediate_input_adds_its_tangent_to_the_propagated_one():
    """jvp treats each input as an independent variable, which makes it the transpose of vjp."""
    with gk.Graph() as g:
        x = gk.input("x", (), "float64")
        h = gk.tanh(x)
        (dy,) = jvp(h * x, [h, x], [np.array(2.0), np.array(3.0)])
    x0 = 0.7
    dh = 2.0 + (1 - np.tanh(x0) ** 2) * 3.0
    np.testing.assert_allclose(gk.compile(g, dy)(x=np.array(x0)), dh * x0 + np.tanh(x0) * 3.0)


def test_jvp_nodes_have_role_grad_and_unused_ones_are_removed():
    with gk.Graph() as g:
        a, b = gk.input("a", (2, 2), "float64"), gk.input("b", (2, 2), "float64")
        y = a * b
        forward = set(g.node_ids())
        (dy,) = jvp(y, [a], [np.ones((2, 2))])
    added = set(g.node_ids()) - forward
    assert all(g.node(i).role == "grad" for i in added)
    assert added <= set(g.needed_nodes([dy.value]))  # the mul rule's tangent for b is gone


def test_missing_and_faulty_jvp_rules_are_reported():
    gk.graph.register_op(gk.graph.OpDef("test_twice", lambda x: (x,), lambda x: 2 * x, 1, elementwise=True))
    with gk.Graph():
        x = gk.input("x", (3,), "float64")
        y = gk.emit("test_twice", x, name="twice")
        with pytest.raises(gk.UnsupportedOpError, match=r"no jvp rule for op 'test_twice' \(node %twice\)"):
            jvp(y, [x], [np.ones(3)])
        register_jvp("test_twice")(
            lambda inputs, out, tangents: gk.sum(tangents[0]) * 2.0 + gk.constant([1.0, 2.0], "float64")
        )
        with pytest.raises(
            gk.GradientError, match=r"jvp rule of 'test_twice' .* f64\[2\] for an output of type f64\[3\]"
        ):
            jvp(y, [x], [np.ones(3)])


@settings(max_examples=30, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3))
def test_jvp_through_broadcasting_is_the_transpose_of_vjp(shapes):
    rng = np.random.default_rng(0)
    a0, b0 = (rng.normal(size=s) for s in shapes.input_shapes)
    ta, tb, u = rng.normal(size=a0.shape), rng.normal(size=b0.shape), rng.normal(size=shapes.result_shape)
    with gk.Graph() as g:
        a, b = gk.input("a", a0.shape, "float64"), gk.input("b", b0.shape, "float64")
        out = a * b - gk.minimum(a, b) / 3.0
        (jv,) = jvp(out, [a, b], [ta, tb])
        da, db = grad(out, [a, b], seed=u)
    got_jv, got_da, got_db = gk.compile(g, [jv, da, db])(a=a0, b=b0)
    np.testing.assert_allclose(np.sum(got_jv * u), np.sum(ta * got_da) + np.sum(tb * got_db), rtol=1e-10, atol=1e-12)
