"""Every op's gradient rule against central finite differences, and the tie conventions exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradkiln as gk
from gradkiln.symbolic import grad
from gradkiln.testing import numeric_grads, op_samples

SAMPLES = [s for s in op_samples("float64") if s.wrt]
# The cast sample rounds through float32, so a tiny finite-difference step only sees rounding
# noise; its function is quadratic in x, so a wide central step is exact up to that rounding.
STEP_AND_RTOL = {"cast": (1e-2, 1e-4)}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_gradient_matches_finite_differences(sample):
    graph, inputs, out = sample.graph()
    with graph:
        seed = gk.input("seed", out.shape, out.dtype)  # a Tensor seed also covers symbolic shapes
    grads = grad(out, [inputs[name] for name in sample.wrt], seed=seed)
    cotangent = np.random.default_rng(1).normal(size=gk.compile(graph, out)(**sample.feeds).shape)

    got = gk.compile(graph, grads, target="numpy")(**sample.feeds, seed=cotangent)
    eps, rtol = STEP_AND_RTOL.get(sample.name, (1e-6, 1e-5))
    want = numeric_grads(gk.compile(graph, out), sample.feeds, sample.wrt, cotangent, eps=eps)
    for name, g in zip(sample.wrt, got):
        np.testing.assert_allclose(g, want[name], rtol=rtol, atol=rtol / 10, err_msg=f"{sample.name}: d/d{name}")


def test_shape_gradients_along_symbolic_axes_for_several_sizes():
    """Strided slices, interior padding and concat along the symbolic axes N and M."""
    with gk.Graph() as g:
        x, y = gk.input("x", ("N", 3), "float64"), gk.input("y", ("M", 3), "float64")
        strided = gk.concat([x[::2], y, x], 0) ** 2
        padded = gk.pad(x, (1, 0), (2, 1), (1, 2))[1:, ::2] ** 3
        out = gk.sum(strided) + gk.sum(padded)
        grads = grad(out, [x, y])
    for n in (1, 4, 5):
        feeds = {"x": np.random.default_rng(n).normal(size=(n, 3)), "y": np.ones((2, 3))}
        want = numeric_grads(gk.compile(g, out), feeds, ["x", "y"], np.ones(()))
        for name, got in zip(feeds, gk.compile(g, grads)(**feeds)):
            np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-7, err_msg=f"N={n}: d/d{name}")


def _gradients(build, **feeds):
    """The gradient of sum(build(*inputs)) with respect to each input, computed by gradkiln."""
    with gk.Graph() as g:
        xs = [gk.input(name, v.shape, "float64") for name, v in feeds.items()]
        loss = gk.sum(build(*xs))
    return gk.compile(g, grad(loss, xs))(**feeds)


def test_reduce_max_splits_the_gradient_equally_among_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])
    (dx,) = _gradients(lambda x: gk.max(x, 1), x=x)
    np.testing.assert_array_equal(dx, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]])


@pytest.mark.parametrize("op", [gk.maximum, gk.minimum])
def test_maximum_and_minimum_split_the_gradient_equally_at_ties(op):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 4.0])
    da, db = _gradients(op, a=a, b=b)
    wins = [0.5, 1.0, 0.0] if op is gk.maximum else [0.5, 0.0, 1.0]
    np.testing.assert_array_equal(da, wins)
    np.testing.assert_array_equal(db, 1 - np.array(wins))


def test_abs_and_relu_have_gradient_zero_at_zero():
    x = np.array([-1.5, 0.0, 2.0])
    np.testing.assert_array_equal(_gradients(gk.abs, x=x)[0], [-1, 0, 1])
    np.testing.assert_array_equal(_gradients(gk.relu, x=x)[0], [0, 0, 1])


def test_cast_passes_the_gradient_back_in_the_input_dtype():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        (dx,) = grad(gk.sum(gk.cast(x, "float32") * 2.0), [x])
    assert dx.dtype == "float64"
    np.testing.assert_array_equal(gk.compile(g, dx)(x=np.ones(3)), [2, 2, 2])


@st.composite
def broadcastable_shapes(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Two shapes that broadcast together: suffixes of one shape with some dims set to 1."""
    full = draw(st.lists(st.integers(1, 3), max_size=4))

    def operand() -> list[int]:
        return [1 if draw(st.booleans()) else d for d in full[draw(st.integers(0, len(full))) :]]

    return operand(), operand()


@settings(max_examples=40, deadline=None)
@given(shapes=broadcastable_shapes())
def test_broadcasting_is_undone_by_summing(shapes):
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=shapes[0]), "b": rng.normal(size=shapes[1])}
    got = _gradients(lambda a, b: a * b, **feeds)
    with gk.Graph() as g:
        product = gk.input("a", shapes[0], "float64") * gk.input("b", shapes[1], "float64")
    want = numeric_grads(gk.compile(g, product), feeds, ["a", "b"], np.ones(product.shape))
    for name, dx in zip(feeds, got):
        assert dx.shape == feeds[name].shape
        np.testing.assert_allclose(dx, want[name], rtol=1e-6, atol=1e-8)
