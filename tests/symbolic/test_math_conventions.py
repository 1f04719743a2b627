"""The math family's conventions, exactly: ties, bounds, kinks and zeros in gradients; rounding,
remainder signs and integer division in values, on numpy, TVM and onnxruntime alike."""

import numpy as np
import onnxruntime as ort
import pytest

import gradkiln as gk
from gradkiln.graph import builder as gb
from gradkiln.symbolic import grad, jvp
from gradkiln.testing import numeric_grads


def _gradients(build, **feeds):
    """The gradient of sum(build(*inputs)) with respect to each input, computed by gradkiln."""
    with gk.Graph() as g:
        xs = [gk.input(name, v.shape, "float64") for name, v in feeds.items()]
        loss = gk.sum(build(*xs))
    return gk.compile(g, grad(loss, xs))(**feeds)


def _on_every_runtime(build, **feeds):
    """build(*inputs) on numpy, TVM (llvm) and onnxruntime, by runtime."""
    with gk.Graph() as g:
        out = build(*(gk.input(name, v.shape, v.dtype.name) for name, v in feeds.items()))
    model = gk.onnx_io.export(g, out)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {
        "numpy": gk.compile(g, out, target="numpy")(**feeds),
        "llvm": gk.compile(g, out, target="llvm")(**feeds),
        "onnxruntime": session.run(None, feeds)[0],
    }


def test_reduce_min_splits_the_gradient_equally_among_ties():
    x = np.array([[1.0, 0.0, 0.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])
    (dx,) = _gradients(lambda x: gb.min(x, 1), x=x)
    np.testing.assert_array_equal(dx, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])


def test_clip_passes_the_gradient_at_its_bounds_and_between_them_only():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(_gradients(lambda x: gb.clip(x, -1.0, 1.0), x=x)[0], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(_gradients(lambda x: gb.clip(x, hi=0.0), x=x)[0], [1, 1, 1, 0, 0])


def test_leaky_relu_and_elu_take_the_negative_branch_at_zero():
    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(_gradients(lambda x: gb.leaky_relu(x, 0.1), x=x)[0], [0.1, 0.1, 1])
    np.testing.assert_allclose(_gradients(lambda x: gb.elu(x, 2.0), x=x)[0], [2 * np.exp(-1), 2, 1])


@pytest.mark.parametrize("op", [gb.floor, gb.ceil, gb.round, gb.sign])
def test_piecewise_constant_ops_have_zero_gradient(op):
    x = np.array([-1.3, 0.2, 2.7])
    np.testing.assert_array_equal(_gradients(lambda x: op(x) + x, x=x)[0], [1, 1, 1])


ZEROS = {
    "none": np.array([[1.5, -0.5, 2.0, 0.7]]),
    "one": np.array([[1.5, 0.0, 2.0, 0.7]]),
    "two": np.array([[1.5, 0.0, 2.0, 0.0]]),
    "first": np.array([[0.0, -0.5, 2.0, 0.7]]),
}


@pytest.mark.parametrize("x", ZEROS.values(), ids=ZEROS.keys())
@pytest.mark.parametrize("op", [lambda x: gb.prod(x, 1), lambda x: gb.cumprod(x, 1)], ids=["prod", "cumprod"])
def test_prod_and_cumprod_gradients_are_exact_with_zeros(op, x):
    """vjp against central differences (exact here: both are polynomials), and the jvp as its
    transpose: <J v, u> == <v, J^T u>."""
    with gk.Graph() as g:
        xt, v = gk.input("x", x.shape, "float64"), gk.input("v", x.shape, "float64")
        out = op(xt)
        u = gk.input("u", out.shape, "float64")
        (dx,) = grad(out, [xt], seed=u)
        (tangent,) = jvp([out], [xt], [v])
    rng = np.random.default_rng(0)
    feeds = {"x": x, "u": rng.normal(size=out.shape), "v": rng.normal(size=x.shape)}
    want = numeric_grads(gk.compile(g, out), {"x": x}, ["x"], feeds["u"])["x"]
    got, jv = gk.compile(g, [dx, tangent])(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.sum(jv * feeds["u"]), np.sum(feeds["v"] * want), rtol=1e-9)


def test_round_takes_halves_to_even_on_every_runtime():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, 2.51], np.float32)
    for runtime, got in _on_every_runtime(gb.round, x=x).items():
        np.testing.assert_array_equal(got, [-2, -2, -0, 0, 2, 2, 0, 3], err_msg=runtime)


def test_mod_takes_the_sign_of_the_divisor_like_numpy_on_every_runtime():
    a = np.array([7.5, -7.5, 7.5, -7.5], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0], np.float32)
    for runtime, got in _on_every_runtime(gb.mod, a=a, b=b).items():
        np.testing.assert_allclose(got, np.mod(a, b), err_msg=runtime)
        np.testing.assert_array_equal(got, [1.5, 0.5, -0.5, -1.5], err_msg=runtime)
    i, j = np.array([7, -7, 7, -7, 6]), np.array([3, 3, -3, -3, -3])
    for runtime, got in _on_every_runtime(gb.mod, i=i, j=j).items():
        np.testing.assert_array_equal(got, [1, 2, -2, -1, 0], err_msg=runtime)


def test_integer_floordiv_rounds_toward_minus_infinity_on_every_runtime():
    i, j = np.array([7, -7, 7, -7, 6, -6]), np.array([2, 2, -2, -2, -3, 4])
    for runtime, got in _on_every_runtime(gb.floordiv, i=i, j=j).items():
        assert got.dtype == np.int64, runtime
        np.testing.assert_array_equal(got, np.floor_divide(i, j), err_msg=runtime)
        np.testing.assert_array_equal(got, [3, -4, -4, 3, -2, -2], err_msg=runtime)


def test_argmax_and_argmin_pick_the_first_of_tied_extremes_on_every_runtime():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 2.0, 0.0]], np.float32)
    for runtime, got in _on_every_runtime(lambda x: gb.argmax(x, 1), x=x).items():
        np.testing.assert_array_equal(got, [1, 2], err_msg=runtime)
    for runtime, got in _on_every_runtime(lambda x: gb.argmin(x, 1, keepdims=True), x=x).items():
        np.testing.assert_array_equal(got, [[3], [0]], err_msg=runtime)


def test_var_and_std_use_numpy_ddof_as_correction():
    x = np.arange(12.0).reshape(3, 4) ** 1.5
    with gk.Graph() as g:
        xt = gk.input("x", ("N", 4), "float64")
        outs = [gb.var(xt, 0, correction=1), gb.std(xt, 1, keepdims=True, correction=1), gb.var(xt)]
    for target in ("numpy", "llvm"):
        got = gk.compile(g, outs, target=target)(x=x)
        want = [np.var(x, 0, ddof=1), np.std(x, 1, keepdims=True, ddof=1), np.var(x)]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=target)
