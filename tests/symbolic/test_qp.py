"""qp, the batched QP layer: its solution against the KKT point of the active set scipy's SLSQP
finds (certified optimal: feasible, multipliers > 0), its derivatives against central
differences of the solution and against closed forms, batched and shared inputs, forward mode,
vmap and second derivatives, dependent active constraints, NaN where the iteration did not
converge, numpy against llvm and onnxruntime, and the errors for bad inputs."""

import re

import numpy as np
import pytest
from scipy.optimize import minimize

import gradkiln as gk
from gradkiln.symbolic import grad, jvp, vjp, vmap
from gradkiln.testing import numeric_grads

N, M, E = 4, 6, 1
NAMES = ("Q", "p", "G", "h", "A", "b")
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0])


def problem(seed=1, batch=None):
    """A strictly convex QP whose optimum has active inequalities (p is large against h); with a
    batch, one p per example."""
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(N, N))
    p = 5 * rng.normal(size=(N,) if batch is None else (batch, N))
    return {
        "Q": root @ root.T + np.eye(N),
        "p": p,
        "G": rng.normal(size=(M, N)),
        "h": rng.uniform(0.1, 1.0, size=M),
        "A": rng.normal(size=(E, N)),
        "b": np.array([0.2]),
    }


def kkt_point(data, p):
    """The minimizer for `data` with linear term `p`: SLSQP finds the active set, the KKT
    equations on it are solved exactly, and the result is checked to be optimal (feasible,
    multipliers > 0, a margin on the inactive constraints)."""
    q, g, h, a, b = (data[k] for k in ("Q", "G", "h", "A", "b"))
    found = minimize(
        lambda z: 0.5 * z @ q @ z + p @ z,
        np.zeros(len(p)),
        jac=lambda z: q @ z + p,
        method="SLSQP",
        constraints=[
            {"type": "ineq", "fun": lambda z: h - g @ z, "jac": lambda z: -g},
            {"type": "eq", "fun": lambda z: a @ z - b, "jac": lambda z: a},
        ],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    active = np.abs(h - g @ found.x) < 1e-6
    rows = np.vstack([g[active], a])
    k = len(rows)
    kkt = np.block([[q, rows.T], [rows, np.zeros((k, k))]])
    solution = np.linalg.solve(kkt, np.concatenate([-p, h[active], b]))
    z, multipliers = solution[: len(p)], solution[len(p) :]
    assert np.all(g @ z <= h + 1e-12) and np.allclose(a @ z, b)
    assert np.all(multipliers[: active.sum()] > 1e-3), "the active set is strictly complementary"
    assert np.all(h[~active] - g[~active] @ z > 1e-2), "the inactive constraints have a margin"
    return z, active


def qp_graph(data, iterations=20, dtype="float64"):
    """Inputs of the shapes of `data` (None: left out) and qp's solution over them."""
    with gk.Graph() as g:
        inputs = {k: gk.input(k, v.shape, dtype) for k, v in data.items() if v is not None}
        z = gk.qp(*(inputs.get(k) for k in NAMES), iterations=iterations)
    return g, inputs, z


def test_the_solution_is_the_certified_kkt_point_for_each_batch_element():
    data = problem(batch=3)
    g, _, z = qp_graph(data)
    got = gk.compile(g, z)(**data)
    assert got.shape == (3, N)
    for row, p in zip(got, data["p"]):
        want, active = kkt_point(data, p)
        assert active.any(), "the test wants active inequalities"
        np.testing.assert_allclose(row, want, atol=1e-12)


def test_gradients_of_every_input_match_central_differences_of_the_solution():
    data = problem()
    g, inputs, z = qp_graph(data)
    grads = grad(gk.sum(z * WEIGHTS), [inputs[k] for k in NAMES])
    got = gk.compile(g, grads)(**data)
    numeric = numeric_grads(gk.compile(g, z), data, NAMES, WEIGHTS)
    for name, value in zip(NAMES, got):
        np.testing.assert_allclose(value, numeric[name], atol=1e-8, err_msg=name)


def test_the_gradient_is_one_kkt_solve_whatever_the_iterations():
    counts = []
    for iterations in (5, 50):
        data = problem()
        g, inputs, z = qp_graph(data, iterations)
        grad(gk.sum(z * WEIGHTS), [inputs[k] for k in NAMES])
        counts.append([node.role for node in g.nodes()].count("grad"))
        assert sum(node.op == "scan" for node in g.nodes()) == 1, "the iterations are one scan"
        solves = [node.role for node in g.nodes() if node.op == "solve"]
        assert solves.count("grad") == 1, "the gradient is one (transposed) KKT solve"
    assert counts[0] == counts[1]


@pytest.mark.parametrize("constraints", ["equality", "none"])
def test_without_inequalities_the_solution_and_gradient_are_one_kkt_solve(constraints):
    data = problem()
    data["G"] = data["h"] = None
    if constraints == "none":
        data["A"] = data["b"] = None
    g, inputs, z = qp_graph(data)
    wrt = [inputs[k] for k in ("p", "b") if k in inputs]
    got, *grads = gk.compile(g, [z, *grad(gk.sum(z * WEIGHTS), wrt)])(
        **{k: v for k, v in data.items() if v is not None}
    )
    assert not any(node.op == "scan" for node in g.nodes())
    eq = data["A"] if data["A"] is not None else np.zeros((0, N))
    kkt = np.block([[data["Q"], eq.T], [eq, np.zeros((len(eq), len(eq)))]])
    b = data["b"] if data["b"] is not None else np.zeros(0)
    np.testing.assert_allclose(got, np.linalg.solve(kkt, np.concatenate([-data["p"], b]))[:N], rtol=1e-12)
    adjoint = np.linalg.solve(kkt.T, np.concatenate([WEIGHTS, np.zeros(len(eq))]))  # z = K^-1 [-p; b]
    np.testing.assert_allclose(grads[0], -adjoint[:N], rtol=1e-12)
    if constraints == "equality":
        np.testing.assert_allclose(grads[1], adjoint[N:], rtol=1e-12)


def test_shared_inputs_get_the_sum_of_the_per_example_gradients():
    data = problem(batch=3)
    data["h"] = np.stack([data["h"], data["h"] + 0.1, data["h"] * 2])  # batched h too; Q, G, A, b shared
    g, inputs, z = qp_graph(data)
    grads = grad(gk.sum(z * WEIGHTS), [inputs[k] for k in NAMES])
    batched = gk.compile(g, [z, *grads])(**data)
    single_g, single_inputs, single_z = qp_graph(problem())
    single_grads = grad(gk.sum(single_z * WEIGHTS), [single_inputs[k] for k in NAMES])
    single = gk.compile(single_g, [single_z, *single_grads])
    rows = [single(**{**data, "p": data["p"][i], "h": data["h"][i]}) for i in range(3)]
    np.testing.assert_allclose(batched[0], np.stack([r[0] for r in rows]), rtol=1e-10)
    for k, name in enumerate(NAMES, start=1):
        per_example = [r[k] for r in rows]
        want = np.stack(per_example) if data[name].ndim > problem()[name].ndim else sum(per_example)
        np.testing.assert_allclose(batched[k], want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_symbolic_batch_dim_takes_any_batch_size():
    data = problem(batch=5)
    with gk.Graph() as g:
        p = gk.input("p", ("B", N), "float64")
        z = gk.qp(data["Q"], p, data["G"], data["h"], data["A"], data["b"])
        (dp,) = grad(gk.sum(z), [p])
    run = gk.compile(g, [z, dp])
    five, two = run(p=data["p"]), run(p=data["p"][:2])
    np.testing.assert_allclose(two[0], five[0][:2], rtol=1e-12)
    np.testing.assert_allclose(two[1], five[1][:2], rtol=1e-12)


def test_forward_mode_is_the_transpose_of_reverse_mode_and_vmap_batches_it():
    data = problem()
    g, inputs, z = qp_graph(data)
    rng = np.random.default_rng(2)
    tangents = [rng.normal(size=data[k].shape) for k in NAMES]
    with g:
        (tangent,) = jvp(z, [inputs[k] for k in NAMES], tangents)
        cotangents = vjp(z, [inputs[k] for k in NAMES], WEIGHTS)
        ps = gk.input("ps", (3, N), "float64")
        (zs,) = vmap(z, inputs["p"], ps)
        (dps,) = grad(gk.sum(zs * WEIGHTS), [ps])
    ps0 = np.stack([data["p"], data["p"] * 0.5, -data["p"]])
    t, *cts, batched, d_batched = gk.compile(g, [tangent, *cotangents, zs, dps])(**data, ps=ps0)
    np.testing.assert_allclose(WEIGHTS @ t, sum(np.sum(c * v) for c, v in zip(cts, tangents)), rtol=1e-10)
    eps = 1e-6
    run = gk.compile(g, z)
    shifted = [run(**{k: data[k] + sign * eps * v for k, v in zip(NAMES, tangents)}) for sign in (1, -1)]
    np.testing.assert_allclose(t, (shifted[0] - shifted[1]) / (2 * eps), atol=1e-7)
    single = gk.compile(g, [z, grad(gk.sum(z * WEIGHTS), [inputs["p"]])[0]])
    for row, d_row, p in zip(batched, d_batched, ps0):
        want_z, want_d = single(**{**data, "p": p})
        np.testing.assert_allclose(row, want_z, rtol=1e-10)
        np.testing.assert_allclose(d_row, want_d, rtol=1e-9)


def test_second_derivatives_match_central_differences_of_the_gradient():
    data = problem()
    g, inputs, z = qp_graph(data)
    with g:
        (dp,) = grad(gk.sum(z * z), [inputs["p"]])
        second = grad(gk.sum(dp * WEIGHTS), [inputs["Q"], inputs["G"], inputs["h"]])
    got = gk.compile(g, second)(**data)
    numeric = numeric_grads(gk.compile(g, dp), data, ["Q", "G", "h"], WEIGHTS)
    for name, value in zip(["Q", "G", "h"], got):
        np.testing.assert_allclose(value, numeric[name], atol=1e-6, err_msg=name)


def test_a_constraint_given_twice_stays_finite_and_splits_its_gradient():
    """Dependent active constraints (z0 <= 1 twice, 2 z0 <= 2) make the KKT matrix singular at
    the limit; the iteration stops before it, and the bound's derivative is shared among them."""
    weights = np.array([1.0, 2.0, 3.0])
    with gk.Graph() as g:
        c = gk.input("c", (), "float64")
        p = gk.input("p", (3,), "float64")
        h = gk.stack([c, c, gk.constant(5.0, "float64"), 2 * c])
        rows = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [2.0, 0, 0]])
        z = gk.qp(np.eye(3), p, rows, h, iterations=200)
        dc, dp = grad(gk.sum(z * weights), [c, p])
    got_z, got_dc, got_dp = gk.compile(g, [z, dc, dp])(c=1.0, p=np.array([-3.0, 1.0, 0.5]))
    np.testing.assert_allclose(got_z, [1.0, -1.0, -0.5], atol=1e-14)  # z0 = min(3, 1); the rest -p
    np.testing.assert_allclose(got_dc, 1.0, rtol=1e-12)  # z0 = c
    np.testing.assert_allclose(got_dp, [0.0, -2.0, -3.0], atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_vertex_with_more_active_constraints_than_variables_stays_finite(dtype):
    """The projection onto {0 <= z <= 1/4, sum z = 1} of scores with four clear winners is the
    vertex (1/4, 1/4, 1/4, 1/4, 0, 0): seven active constraints on six variables, dependent; z
    is locally constant, so its gradient is 0. Iterating to a tiny mu made the KKT matrix
    singular here; the default tol stops before."""
    k = 6
    with gk.Graph() as g:
        scores = gk.input("scores", (2, k), dtype)
        rows = np.concatenate([-np.eye(k), np.eye(k)]).astype(dtype)
        bounds = np.concatenate([np.zeros(k), np.full(k, 0.25)]).astype(dtype)
        z = gk.qp(np.eye(k, dtype=dtype), -scores, rows, bounds, np.ones((1, k), dtype), np.ones(1, dtype), 40)
        (d_scores,) = grad(gk.sum(z * np.arange(k, dtype=dtype)), [scores])
    values = np.array([[3.0, 2.9, 2.8, 2.7, -5.0, -6.0], [0.3, 0.2, 0.1, 0.0, -0.1, -0.2]], dtype)
    got, got_d = gk.compile(g, [z, d_scores])(scores=values)
    accuracy = 1e-7 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(got[0], [0.25] * 4 + [0, 0], atol=accuracy)
    np.testing.assert_allclose(got[1], np.clip(values[1] + 0.175, 0, 0.25), atol=accuracy)
    np.testing.assert_allclose(got_d[0], 0.0, atol=accuracy)


@pytest.mark.parametrize("case", ["infeasible", "too few iterations"])
def test_an_element_that_did_not_converge_is_nan_not_a_plausible_value(case):
    data = problem(batch=2)
    iterations = 1 if case == "too few iterations" else 20
    if case == "infeasible":  # G z <= h asks z0 <= -1 and -z0 <= -1 in the second example
        data["G"] = np.stack([data["G"], data["G"]])
        data["h"] = np.stack([data["h"], data["h"]])
        data["G"][1, :2], data["h"][1, :2] = [[1, 0, 0, 0], [-1, 0, 0, 0]], [-1.0, -1.0]
    g, inputs, z = qp_graph(data, iterations)
    (dp,) = grad(gk.sum(z * WEIGHTS), [inputs["p"]])
    got, got_dp = gk.compile(g, [z, dp])(**data)
    failed = [True, True] if case == "too few iterations" else [False, True]
    np.testing.assert_array_equal(np.isnan(got).all(axis=1), failed)
    np.testing.assert_array_equal(np.isnan(got_dp).all(axis=1), failed)
    if case == "infeasible":
        np.testing.assert_allclose(got[0], kkt_point({**data, "G": data["G"][0], "h": data["h"][0]}, data["p"][0])[0])


def test_float32_solves_to_float32_accuracy():
    data = problem()
    g, inputs, z = qp_graph(data, dtype="float32")
    (dp,) = grad(gk.sum(z * WEIGHTS), [inputs["p"]])
    got, got_dp = gk.compile(g, [z, dp])(**{k: v.astype("float32") for k, v in data.items()})
    g64, inputs64, z64 = qp_graph(data)
    (dp64,) = grad(gk.sum(z64 * WEIGHTS), [inputs64["p"]])
    want, want_dp = gk.compile(g64, [z64, dp64])(**data)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got_dp, want_dp, atol=1e-3)


@pytest.mark.slow
def test_llvm_computes_what_numpy_computes():
    data = problem(batch=2)
    g, inputs, z = qp_graph(data, iterations=10)
    grads = grad(gk.sum(z * WEIGHTS), [inputs[k] for k in NAMES])
    want = gk.compile(g, [z, *grads])(**data)
    got = gk.compile(g, [z, *grads], target="llvm")(**data)
    for name, a, b in zip(("z", *NAMES), got, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


def test_onnx_export_runs_the_solver_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    data = problem(batch=2)
    g, _, z = qp_graph(data, iterations=10)
    session = ort.InferenceSession(gk.onnx_io.export(g, [z]).SerializeToString())
    got = session.run(None, {k: v for k, v in data.items() if k in {i.name for i in session.get_inputs()}})[0]
    np.testing.assert_allclose(got, gk.compile(g, z)(**data), rtol=1e-10, atol=1e-13)


def _build(**changes):
    data = {**problem(), **changes}
    with gk.Graph():
        args = [
            v if v is None or isinstance(v, (gk.Tensor, str)) else gk.constant(v, str(v.dtype))
            for v in (data[k] for k in NAMES)
        ]
        return gk.qp(*args, **data.get("options", {}))


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"h": None}, gk.ShapeError, "G and h come together; h is missing"),
        ({"A": None}, gk.ShapeError, "A and b come together; A is missing"),
        ({"p": np.zeros(5)}, gk.ShapeError, "p has shape f64[5], expected (4,)"),
        ({"Q": np.zeros((2, 2, 4, 4))}, gk.ShapeError, "Q has shape f64[2,2,4,4]; it must have rank 2"),
        ({"G": np.zeros((3, 6, 4)), "h": np.zeros((2, 6))}, gk.ShapeError, "batch dims differ: G has 3, h has 2"),
        ({"A": np.zeros((5, 4)), "b": np.zeros(5)}, gk.ShapeError, "5 equality constraints on 4 variables"),
        ({"Q": np.eye(4, dtype=np.int64)}, gk.DTypeError, "Q: int64, p: float64"),
        (
            {"p": np.zeros(4, np.float32)},
            gk.DTypeError,
            "must all be float32 or all float64, got Q: float64, p: float32",
        ),
        ({"options": {"iterations": 0}}, gk.GradientError, "iterations must be a positive int, got 0"),
        ({"options": {"tol": -1.0}}, gk.GradientError, "tol must be a non-negative number"),
    ],
)
def test_bad_inputs_raise_a_clear_error(changes, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _build(**changes)


def test_inputs_of_two_graphs_are_refused():
    with gk.Graph():
        q = gk.input("Q", (N, N), "float64")
    with gk.Graph(), pytest.raises(gk.GraphError, match="different graphs"):
        gk.qp(q, gk.input("p", (N,), "float64"))


def test_a_symbolic_problem_size_is_refused():
    with gk.Graph(), pytest.raises(gk.ShapeError, match="must be static"):
        gk.qp(gk.input("Q", ("n", "n"), "float64"), gk.input("p", ("n",), "float64"))
