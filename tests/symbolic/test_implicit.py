"""fixed_point and root: derivatives by the implicit function theorem, checked against the
analytic implicit derivatives and finite differences of the converged solver; the gradient
graph does not grow with the number of forward iterations."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.symbolic import fixed_point, grad, jvp, root, vmap
from gradkiln.testing import numeric_grads

A0 = np.array([0.5, -0.3, 0.8])
B0 = np.array([0.2, 1.0, -0.5])


def _tanh_map(x, a, b):
    return a * gk.tanh(x) + b


def _fixed_point_graph(iterations):
    with gk.Graph() as g:
        a, b = gk.input("a", (3,), "float64"), gk.input("b", (3,), "float64")
        x = fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, b], iterations=iterations, adjoint_iterations=40)
        loss = gk.sum(x * x)
        grads = grad(loss, [a, b])
    return g, x, loss, grads


def _implicit_tanh_derivatives(x):
    """x = a tanh(x) + b: dx/da = tanh(x) / (1 - a sech^2 x), dx/db = 1 / (1 - a sech^2 x)."""
    denominator = 1 - A0 * (1 - np.tanh(x) ** 2)
    return np.tanh(x) / denominator, 1 / denominator


def test_fixed_point_gradient_is_the_implicit_function_theorem_gradient():
    g, x, loss, (da, db) = _fixed_point_graph(60)
    x_star, got_da, got_db = gk.compile(g, [x, da, db])(a=A0, b=B0)
    np.testing.assert_allclose(x_star, A0 * np.tanh(x_star) + B0, atol=1e-14)
    want_da, want_db = _implicit_tanh_derivatives(x_star)
    np.testing.assert_allclose(got_da, 2 * x_star * want_da, rtol=1e-12)
    np.testing.assert_allclose(got_db, 2 * x_star * want_db, rtol=1e-12)
    numeric = numeric_grads(gk.compile(g, loss), {"a": A0, "b": B0}, ["a", "b"], np.ones(()))
    np.testing.assert_allclose(got_da, numeric["a"], rtol=1e-7)
    np.testing.assert_allclose(got_db, numeric["b"], rtol=1e-7)


def _loop_sizes(g):
    """The graph's node count and, per loop node, its body's node count and trip count."""
    loops = [n for n in g.nodes() if n.op == "scan"]
    return len(list(g.nodes())), sorted((len(n.attrs["body"].nodes()), n.attrs["length"]) for n in loops)


def test_fixed_point_graph_is_loops_whose_size_does_not_depend_on_the_iterations():
    (n10, loops10), (n200, loops200) = (_loop_sizes(_fixed_point_graph(k)[0]) for k in (10, 200))
    assert n10 == n200, "the same nodes for 10 and 200 forward iterations"
    assert [size for size, _ in loops10] == [size for size, _ in loops200]
    assert sorted(trips for _, trips in loops200) == [40, 200], "the adjoint loop and the forward loop"


def test_fixed_point_forward_mode_and_second_derivatives():
    with gk.Graph() as g:
        a, b = gk.input("a", (3,), "float64"), gk.input("b", (3,), "float64")
        x = fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, b], iterations=60)
        (tangent,) = jvp(x, [a, b], [np.ones(3), np.zeros(3)])
        (da,) = grad(gk.sum(x), [a])
        (dda,) = grad(gk.sum(da), [a])
    x_star, got_tangent, got_da, got_dda = gk.compile(g, [x, tangent, da, dda])(a=A0, b=B0)
    want_da, _ = _implicit_tanh_derivatives(x_star)
    np.testing.assert_allclose(got_tangent, want_da, rtol=1e-12)
    np.testing.assert_allclose(got_da, got_tangent, rtol=1e-12)  # reverse mode: the transposed rule
    numeric = numeric_grads(gk.compile(g, da), {"a": A0, "b": B0}, ["a"], np.ones(3))
    np.testing.assert_allclose(got_dda, numeric["a"], rtol=1e-6)


def test_fixed_point_under_vmap_matches_a_loop_in_value_and_gradient():
    a_rows = np.stack([A0, A0 / 2, -A0])
    with gk.Graph() as g:
        a, b = gk.input("a", (3,), "float64"), gk.input("b", (3,), "float64")
        x = fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, b], iterations=60)
        batch = gk.input("a_rows", (3, 3), "float64")
        (xs,) = vmap(x, a, batch)
        (d_rows,) = grad(gk.sum(xs), [batch])
    got_xs, got_d = gk.compile(g, [xs, d_rows])(a_rows=a_rows, b=B0)
    for row, got_x, got_row in zip(a_rows, got_xs, got_d):
        np.testing.assert_allclose(got_x, row * np.tanh(got_x) + B0, atol=1e-13)
        np.testing.assert_allclose(got_row, np.tanh(got_x) / (1 - row * (1 - np.tanh(got_x) ** 2)), rtol=1e-7)


def test_newton_root_of_a_cube_has_derivative_one_over_three_root_squared():
    p0 = np.array([2.0, 8.0, 27.0])
    with gk.Graph() as g:
        p = gk.input("p", (3,), "float64")
        x = root(lambda x, p: x**3 - p, gk.constant(np.ones(3)), [p], iterations=30)
        (dp,) = grad(gk.sum(x), [p])
        (tangent,) = jvp(x, [p], [np.ones(3)])
    got_x, got_dp, got_tangent = gk.compile(g, [x, dp, tangent])(p=p0)
    np.testing.assert_allclose(got_x, np.cbrt(p0), rtol=1e-14)
    np.testing.assert_allclose(got_dp, 1 / (3 * np.cbrt(p0) ** 2), rtol=1e-12)
    np.testing.assert_allclose(got_tangent, got_dp, rtol=1e-14)
    numeric = numeric_grads(gk.compile(g, x), {"p": p0}, ["p"], np.ones(3))
    np.testing.assert_allclose(got_dp, numeric["p"], rtol=1e-7)


def test_root_of_a_scalar_equation_with_two_parameters():
    """x^2 = c * s for a scalar x: dx/dc = s / (2x), dx/ds = c / (2x)."""
    with gk.Graph() as g:
        c, s = gk.input("c", (), "float64"), gk.input("s", (), "float64")
        x = root(lambda x, c, s: x * x - c * s, gk.constant(1.0, "float64"), [c, s])
        dc, ds = grad(x, [c, s])
    got_x, got_dc, got_ds = gk.compile(g, [x, dc, ds])(c=np.float64(3.0), s=np.float64(1.5))
    np.testing.assert_allclose(got_x, np.sqrt(4.5), rtol=1e-14)
    np.testing.assert_allclose([got_dc, got_ds], [1.5 / (2 * got_x), 3.0 / (2 * got_x)], rtol=1e-12)


def test_solver_errors_name_the_solver_and_what_to_do():
    with gk.Graph():
        a = gk.input("a", (3,), "float64")
        x0 = gk.constant(np.zeros(3))
        with pytest.raises(gk.GradientError, match=r"fixed_point\(_tanh_map\): params\[1\] is a float"):
            fixed_point(_tanh_map, x0, [a, 0.5])
        with pytest.raises(gk.GradientError, match="iterations must be a positive int, got 0"):
            fixed_point(_tanh_map, x0, [a, a], iterations=0)
        with pytest.raises(gk.GradientError, match=r"returned f64\[\] for x0 of type f64\[3\]"):
            fixed_point(lambda x, a: gk.sum(x * a), x0, [a])
        with pytest.raises(gk.GradientError, match=r"root\(<lambda>\): x0 is a i64\[3\]"):
            root(lambda x, a: x - a, gk.constant(np.zeros(3, np.int64)), [a])


def test_fixed_point_gradient_graph_exports_to_onnx_with_the_same_numbers():
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[test]'")
    g, x, _, (da, db) = _fixed_point_graph(30)
    want = gk.compile(g, [x, da, db])(a=A0, b=B0)
    model = gk.onnx_io.export(g, [x, da, db])
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"a": A0, "b": B0})
    for ours, theirs in zip(want, got):
        np.testing.assert_allclose(theirs, ours, rtol=1e-12)


def _numpy_fixed_point(a, b, iterations, tol):
    """The oracle of the stopping rule: x <- a tanh(x) + b from 0 until a step changes no
    element by more than tol, at most `iterations` steps."""
    x = np.zeros_like(b)
    for _ in range(iterations):
        x, previous = a * np.tanh(x) + b, x
        if np.max(np.abs(x - previous)) <= tol:
            break
    return x


@pytest.mark.parametrize("tol", [1e-3, 1e-9])
def test_fixed_point_stops_once_a_step_changes_no_element_by_more_than_tol(tol):
    with gk.Graph() as g:
        a, b = gk.input("a", (3,), "float64"), gk.input("b", (3,), "float64")
        x = fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, b], iterations=500, tol=tol)
        da, db = grad(gk.sum(x), [a, b])
    got_x, got_da, got_db = gk.compile(g, [x, da, db])(a=A0, b=B0)
    np.testing.assert_array_equal(got_x, _numpy_fixed_point(A0, B0, 500, tol))
    assert 0 < np.max(np.abs(got_x - (A0 * np.tanh(got_x) + B0))) <= tol, "stopped early, within tol"
    want_da, want_db = _implicit_tanh_derivatives(got_x)
    np.testing.assert_allclose(got_da, want_da, rtol=10 * tol)
    np.testing.assert_allclose(got_db, want_db, rtol=10 * tol)


def test_fixed_point_under_vmap_stops_each_example_on_its_own():
    a_rows = np.stack([A0, A0 / 10, -A0])  # A0 / 10 converges in far fewer steps
    with gk.Graph() as g:
        a, b = gk.input("a", (3,), "float64"), gk.input("b", (3,), "float64")
        x = fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, b], iterations=500, tol=1e-6)
        (xs,) = vmap(x, a, gk.input("a_rows", (3, 3), "float64"))
    got = gk.compile(g, xs)(a_rows=a_rows, b=B0)
    for row, got_x in zip(a_rows, got):
        np.testing.assert_array_equal(got_x, _numpy_fixed_point(row, B0, 500, 1e-6))


def test_jacobian_and_fixed_point_inside_a_scan_match_finite_differences():
    """A scan whose step solves a fixed point: its gradient and jacobian (a vmapped vjp, so the
    adjoint loop batched) against central differences of the whole graph."""
    bs0 = np.random.default_rng(0).normal(size=(4, 3))
    with gk.Graph() as g:
        a, bs = gk.input("a", (3,), "float64"), gk.input("bs", (4, 3), "float64")

        def step(carry, b):
            x = fixed_point(_tanh_map, gk.zeros((3,), "float64"), [a, b + carry], iterations=80)
            return carry + 0.1 * x, x

        final, xs = gk.scan(step, gk.zeros((3,), "float64"), bs)
        loss = gk.sum(final * final) + gk.sum(xs)
        da, dbs = grad(loss, [a, bs])
        jac = gk.jacobian(final, a)
    got_da, got_dbs, got_jac = gk.compile(g, [da, dbs, jac])(a=A0, bs=bs0)
    feeds = {"a": A0, "bs": bs0}
    numeric = numeric_grads(gk.compile(g, loss), feeds, ["a", "bs"], np.ones(()))
    np.testing.assert_allclose(got_da, numeric["a"], rtol=1e-7)
    np.testing.assert_allclose(got_dbs, numeric["bs"], rtol=1e-7)
    final_of = gk.compile(g, final)
    for i in range(3):
        np.testing.assert_allclose(got_jac[i], numeric_grads(final_of, feeds, ["a"], np.eye(3)[i])["a"], atol=1e-9)


def test_root_with_a_tolerance_stops_as_newton_does():
    p0 = np.array([2.0, 8.0, 27.0])
    with gk.Graph() as g:
        p = gk.input("p", (3,), "float64")
        x = root(lambda x, p: x**3 - p, gk.constant(np.ones(3)), [p], iterations=100, tol=1e-4)
    want = np.ones(3)
    for _ in range(100):
        want, previous = want - (want**3 - p0) / (3 * want**2), want
        if np.max(np.abs(want - previous)) <= 1e-4:
            break
    np.testing.assert_array_equal(gk.compile(g, x)(p=p0), want)


@pytest.mark.parametrize("tol", [-1e-6, float("nan"), "1e-6", True])
def test_a_tolerance_that_is_not_a_float_at_least_zero_is_refused(tol):
    with gk.Graph():
        a = gk.input("a", (3,), "float64")
        with pytest.raises(gk.GradientError, match=r"fixed_point: tol must be a float >= 0"):
            fixed_point(_tanh_map, gk.constant(np.zeros(3)), [a, a], tol=tol)
        with pytest.raises(gk.GradientError, match=r"root: tol must be a float >= 0"):
            root(lambda x, a: x - a, gk.constant(np.zeros(3)), [a], tol=tol)
