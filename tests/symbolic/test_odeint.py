"""odeint: solutions against the matrix exponential and scipy's solve_ivp; gradients by the
adjoint method against backprop through the solver, central finite differences and closed
forms (the Frechet derivative of expm); the adjoint's gradient graph and memory peak do not
depend on the step count; bad inputs raise errors that say what to do."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import gradkiln as gk
from gradkiln.passes.memory import plan_memory
from gradkiln.symbolic.odeint import odeint
from gradkiln.testing import numeric_grads

A0 = np.array([[-0.5, 1.0], [-1.0, -0.3]])
Y0 = np.array([1.0, 0.5])
T0 = np.array([0.2, 0.7, 1.5])
WEIGHTS = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]])  # L = sum(WEIGHTS * ys)
METHODS = [("rk4", {"steps": 40}), ("dopri5", {"rtol": 1e-9, "atol": 1e-12, "max_steps": 40})]


def _linear(y, t, a):
    return a @ y


def _linear_graph(method, options, adjoint):
    """y' = A y with y0, t and A as inputs; the loss and its gradients."""
    with gk.Graph() as g:
        y0, t, a = gk.input("y0", (2,), "float64"), gk.input("t", (3,), "float64"), gk.input("a", (2, 2), "float64")
        ys = odeint(_linear, y0, t, [a], method=method, adjoint=adjoint, **options)
        loss = gk.sum(ys * WEIGHTS)
        grads = gk.grad(loss, [y0, t, a])
    return g, ys, loss, grads


def _expm_solution(a, y0, t):
    return np.stack([scipy.linalg.expm(a * (ti - t[0])) @ y0 for ti in t])


def _expm_gradients(a, y0, t):
    """dL/dy0, dL/dt, dL/dA of L = sum(WEIGHTS * ys), ys[i] = expm(A (t_i - t_0)) y0."""
    ys = _expm_solution(a, y0, t)
    d_y0 = sum(scipy.linalg.expm(a * (ti - t[0])).T @ w for ti, w in zip(t, WEIGHTS))
    d_t = np.array([w @ a @ y for w, y in zip(WEIGHTS, ys)])
    d_t[0] = -d_t[1:].sum()  # a later start shifts the whole trajectory
    d_a = np.zeros((2, 2))
    for j, k in np.ndindex(2, 2):
        e = np.zeros((2, 2))
        e[j, k] = 1.0
        for ti, w in zip(t, WEIGHTS):
            d_a[j, k] += w @ scipy.linalg.expm_frechet(a * (ti - t[0]), e * (ti - t[0]), compute_expm=False) @ y0
    return d_y0, d_t, d_a


@pytest.mark.parametrize("method, options", METHODS)
def test_linear_system_matches_the_matrix_exponential(method, options):
    g, ys, _, _ = _linear_graph(method, options, adjoint=False)
    got = gk.compile(g, ys)(y0=Y0, t=T0, a=A0)
    np.testing.assert_allclose(got, _expm_solution(A0, Y0, T0), atol=1e-8)


@pytest.mark.parametrize("adjoint", [False, True], ids=["backprop", "adjoint"])
@pytest.mark.parametrize("method, options", METHODS)
def test_gradients_match_the_closed_form_and_finite_differences(method, options, adjoint):
    g, _, loss, grads = _linear_graph(method, options, adjoint)
    feeds = {"y0": Y0, "t": T0, "a": A0}
    got = gk.compile(g, grads)(**feeds)
    for value, want in zip(got, _expm_gradients(A0, Y0, T0)):
        np.testing.assert_allclose(value, want, atol=1e-7)
    if adjoint:  # the solver itself, differenced
        numeric = numeric_grads(gk.compile(g, loss), feeds, ["y0", "t", "a"], np.ones(()))
        for value, name in zip(got, ["y0", "t", "a"]):
            np.testing.assert_allclose(value, numeric[name], atol=1e-6)


def _nonlinear(y, t, k):
    return -k * y * y * y + gk.sin(t) * y


def test_nonlinear_time_dependent_system_matches_solve_ivp():
    t = np.linspace(0.0, 2.0, 5)
    with gk.Graph() as g:
        y0, k = gk.input("y0", (3,), "float64"), gk.input("k", (3,), "float64")
        ys = odeint(_nonlinear, y0, t, [k], method="dopri5", rtol=1e-10, atol=1e-12, max_steps=60)
        rk4 = odeint(_nonlinear, y0, t, [k], steps=40)
    feeds = {"y0": np.array([1.0, -0.5, 2.0]), "k": np.array([0.3, 1.0, 0.1])}
    got, got_rk4 = gk.compile(g, [ys, rk4])(**feeds)
    want = scipy.integrate.solve_ivp(
        lambda s, y: -feeds["k"] * y**3 + np.sin(s) * y, (0.0, 2.0), feeds["y0"], t_eval=t, rtol=1e-12, atol=1e-12
    ).y.T
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(got_rk4, want, atol=1e-6)


def _closure_graph(adjoint, method="rk4"):
    """A small neural ODE whose weights f reads by closure (no params argument)."""
    rng = np.random.default_rng(0)
    with gk.Graph() as g:
        y0 = gk.input("y0", (4, 2), "float64")
        w1, w2 = gk.param("w1", rng.normal(size=(2, 8))), gk.param("w2", rng.normal(size=(8, 2)) * 0.5)
        ys = odeint(lambda y, t: gk.tanh(y @ w1) @ w2, y0, [0.0, 0.5, 1.0], method=method, adjoint=adjoint, steps=8)
        loss = gk.mean(ys * ys)
        grads = gk.grad(loss, [y0, w1, w2])
    return g, loss, grads


def test_tensors_read_by_closure_get_adjoint_gradients():
    y0 = np.random.default_rng(1).normal(size=(4, 2))
    backprop = gk.compile(*_closure_graph(adjoint=False)[::2])(y0=y0)
    g, loss, grads = _closure_graph(adjoint=True)
    adjoint = gk.compile(g, grads)(y0=y0)
    for a, b in zip(adjoint, backprop):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)  # rk4's error differs backward and forward
    numeric = numeric_grads(gk.compile(g, loss), {"y0": y0}, ["y0"], np.ones(()))
    np.testing.assert_allclose(adjoint[0], numeric["y0"], rtol=1e-5, atol=1e-9)


def _sizes(steps, adjoint):
    with gk.Graph() as g:
        y0 = gk.input("y0", (32, 8), "float64")
        w = gk.param("w", np.random.default_rng(0).normal(size=(8, 8)) * 0.3)
        ys = odeint(lambda y, t: gk.tanh(y @ w), y0, [0.0, 1.0], adjoint=adjoint, steps=steps)
        grads = gk.grad(gk.sum(ys[-1] ** 2), [y0, w])
    return len(list(g.nodes())), plan_memory(g, [v.value for v in grads]).peak_bytes


def test_the_adjoint_memory_peak_does_not_grow_with_the_steps():
    (n10, adjoint10), (n1000, adjoint1000) = _sizes(10, True), _sizes(1000, True)
    (m10, backprop10), (m1000, backprop1000) = _sizes(10, False), _sizes(1000, False)
    assert n10 == n1000 and m10 == m1000, "the step count is a loop length, not nodes"
    assert adjoint10 == adjoint1000, "the adjoint keeps the outputs only"
    assert backprop1000 > 50 * adjoint1000, "backprop through 1000 steps keeps every step's state"
    assert backprop1000 > 50 * backprop10


def test_llvm_agrees_with_numpy():
    g, ys, _, grads = _linear_graph("rk4", {"steps": 4}, adjoint=True)
    feeds = {"y0": Y0, "t": T0, "a": A0}
    want = gk.compile(g, [ys, *grads], target="numpy")(**feeds)
    got = gk.compile(g, [ys, *grads], target="llvm")(**feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method, options", METHODS)
def test_onnx_export_runs_in_onnxruntime(method, options):
    ort = pytest.importorskip("onnxruntime")
    g, ys, _, grads = _linear_graph(method, {**options, "steps": 4}, adjoint=True)
    feeds = {"y0": Y0, "t": T0, "a": A0}
    want = gk.compile(g, [ys, *grads])(**feeds)
    assert all(np.isfinite(w).all() for w in want)
    session = ort.InferenceSession(gk.onnx_io.export(g, [ys, *grads]).SerializeToString())
    for a, b in zip(session.run(None, feeds), want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_times_not_increasing_at_run_time_give_nan():
    g, ys, _, _ = _linear_graph("rk4", {"steps": 2}, adjoint=False)
    assert np.isnan(gk.compile(g, ys)(y0=Y0, t=T0[::-1].copy(), a=A0)).all()


def test_dopri5_gives_nan_where_max_steps_is_not_enough():
    g, ys, _, _ = _linear_graph("dopri5", {"rtol": 1e-12, "atol": 1e-14, "max_steps": 3}, adjoint=False)
    got = gk.compile(g, ys)(y0=Y0, t=T0, a=A0)
    np.testing.assert_array_equal(got[0], Y0)
    assert np.isnan(got[1:]).all()


def test_float32_solution():
    with gk.Graph() as g:
        y0 = gk.input("y0", (2,), "float32")
        ys = odeint(lambda y, t: gk.constant(A0.astype(np.float32)) @ y, y0, T0, method="dopri5", rtol=1e-5, atol=1e-6)
    got = gk.compile(g, ys)(y0=Y0.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _expm_solution(A0, Y0, T0), atol=1e-5)


@pytest.mark.parametrize(
    "t, f, kwargs, error, message",
    [
        (np.zeros((2, 2)), _linear, {}, gk.ShapeError, "must be 1-D"),
        (np.array([0.0]), _linear, {}, gk.ShapeError, "length >= 2"),
        (np.array([0.0, 1.0, 1.0]), _linear, {}, gk.GraphError, "strictly increasing"),
        (T0, lambda y, t, a: gk.sum(a @ y), {}, gk.ShapeError, r"returned f64\[\] for y of type f64\[2\]"),
        (T0, lambda y, t, a: a, {"adjoint": True}, gk.ShapeError, r"returned f64\[2,2\] for y of type f64\[2\]"),
        (T0, _linear, {"method": "euler"}, gk.GraphError, "unknown method 'euler'"),
        (T0, _linear, {"steps": 0}, gk.GraphError, "steps must be a positive int"),
        (T0, _linear, {"rtol": -1.0}, gk.GraphError, "rtol must be a number >= 0"),
        (T0, _linear, {"rtol": 0, "atol": 0}, gk.GraphError, "both 0"),
    ],
)
def test_bad_arguments_raise_errors_that_say_what_to_do(t, f, kwargs, error, message):
    with gk.Graph():
        y0, a = gk.input("y0", (2,), "float64"), gk.input("a", (2, 2), "float64")
        with pytest.raises(error, match=message):
            odeint(f, y0, t, [a], **kwargs)


def test_bad_operands_raise_errors():
    with gk.Graph():
        y0, n = gk.input("y0", (2,), "float64"), gk.input("n", (2,), "int64")
        with pytest.raises(gk.GraphError, match="y0 is a i64"):
            odeint(_linear, n, T0)
        with pytest.raises(gk.GraphError, match=r"params\[0\] is a ndarray"):
            odeint(_linear, y0, T0, [A0])
        with pytest.raises(gk.GraphError, match="t is i64"):
            odeint(_linear, y0, gk.input("t", (3,), "int64"), [gk.input("a", (2, 2), "float64")])


def _second_order(adjoint):
    """The gradient dL/dA of a tanh field, its Hessian-vector product along ones((2, 2)) and the
    forward-mode tangent of ys along the same direction."""
    with gk.Graph() as g:
        y0, a = gk.input("y0", (2,), "float64"), gk.input("a", (2, 2), "float64")
        ys = odeint(lambda y, t, a: gk.tanh(a @ y), y0, [0.0, 0.5, 1.0], [a], adjoint=adjoint, steps=10)
        (da,) = gk.grad(gk.sum(ys * ys), [a])
        (hvp,) = gk.grad(gk.sum(da * np.ones((2, 2))), [a])
        (tangent,) = gk.jvp(ys, [a], [np.ones((2, 2))])
    return gk.compile(g, [da, hvp, tangent]), gk.compile(g, da)


def test_second_derivatives_and_forward_mode_through_the_adjoint():
    (backprop, _), (adjoint, gradient) = _second_order(False), _second_order(True)
    got = adjoint(y0=Y0, a=A0)
    for a, b in zip(got, backprop(y0=Y0, a=A0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    eps = 1e-6
    numeric = (gradient(y0=Y0, a=A0 + eps) - gradient(y0=Y0, a=A0 - eps)) / (2 * eps)  # along ones((2, 2))
    np.testing.assert_allclose(got[1], numeric, rtol=1e-6)
