"""examples/deq.py: the deep equilibrium model's gradient (gk.fixed_point, differentiated
implicitly by a loop of vector-Jacobian products) equals torch.autograd's through a torch
Function whose backward applies the implicit function theorem explicitly (the Jacobian at z*
materialized, (I - J)^T u = g solved by torch.linalg.solve, float64) and central finite
differences; the graph does not grow with the iteration counts; numpy and llvm agree."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.demo import load_digits
from gradkiln.testing import numeric_grads
from gradkiln.testing.examples import load_example

torch = pytest.importorskip("torch")


deq = load_example("deq")


@pytest.fixture(scope="module")
def problem():
    """float64 weights (biases nonzero) and a batch of 6 digits."""
    rng = np.random.default_rng(4)
    weights = deq.init_weights(rng, np.float64)
    weights["b"] = 0.3 * rng.normal(size=weights["b"].shape)
    weights["c"] = 0.3 * rng.normal(size=weights["c"].shape)
    x, labels, _, _ = load_digits()
    return weights, {"x": x[:6].astype(np.float64), "labels": labels[:6]}


@pytest.fixture(scope="module")
def converged():
    """The example's graph in float64, iterated to machine precision, on the numpy executor."""
    built = deq.build_deq("float64", iterations=200)
    return built, gk.compile(built.graph, [built.loss, *built.grads])


class ImplicitFixedPoint(torch.autograd.Function):
    """z* = tanh(z* W + injection) by plain iteration; backward by the implicit function theorem,
    written out: u = (I - J)^-T g with J = df/dz at z* materialized, then (W, injection) get
    u's vector-Jacobian product through one application of f."""

    @staticmethod
    def forward(ctx, w, injection):
        z = torch.zeros_like(injection)
        for _ in range(1000):
            z, previous = torch.tanh(z @ w + injection), z
            if torch.equal(z, previous):
                break
        ctx.save_for_backward(z, w, injection)
        return z

    @staticmethod
    def backward(ctx, g):
        z, w, injection = ctx.saved_tensors
        n = z.numel()
        jacobian = torch.autograd.functional.jacobian(lambda z: torch.tanh(z @ w + injection), z).reshape(n, n)
        u = torch.linalg.solve((torch.eye(n, dtype=z.dtype) - jacobian).T, g.reshape(n)).reshape(z.shape)
        with torch.enable_grad():
            w_, injection_ = w.detach().requires_grad_(), injection.detach().requires_grad_()
            return torch.autograd.grad(torch.tanh(z @ w_ + injection_), [w_, injection_], u)


def torch_gradients(weights, data):
    v, u, b, r, c = (torch.tensor(weights[name], requires_grad=True) for name in deq.WEIGHTS)
    x, labels = torch.tensor(data["x"]), torch.tensor(data["labels"])
    w = v * (deq.RADIUS / torch.linalg.norm(v))
    z = ImplicitFixedPoint.apply(w, x @ u + b)
    loss = torch.nn.functional.cross_entropy(z @ r + c, labels)
    loss.backward()
    return loss.item(), [t.grad.numpy() for t in (v, u, b, r, c)]


def test_gradient_equals_torch_with_the_implicit_function_theorem_written_out(problem, converged):
    weights, data = problem
    _, run = converged
    loss, *grads = run(**weights, **data)
    want_loss, want_grads = torch_gradients(weights, data)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-13)
    for name, got, want in zip(deq.WEIGHTS, grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13, err_msg=name)


def test_gradient_equals_central_finite_differences(problem, converged):
    """Every element of b and c; one random direction through all the weights at once."""
    weights, data = problem
    built, run = converged
    loss_of = gk.compile(built.graph, built.loss)
    _, *grads = run(**weights, **data)
    grads = dict(zip(deq.WEIGHTS, grads))
    numeric = numeric_grads(lambda feeds: loss_of(**feeds), {**weights, **data}, ["b", "c"], np.ones(()))
    for name in ("b", "c"):
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-9, err_msg=name)
    rng = np.random.default_rng(5)
    direction = {name: rng.normal(size=w.shape) for name, w in weights.items()}
    eps = 1e-6
    shifted = [loss_of(**{n: w + s * eps * direction[n] for n, w in weights.items()}, **data) for s in (1, -1)]
    want = (shifted[0] - shifted[1]) / (2 * eps)
    np.testing.assert_allclose(sum(np.sum(grads[n] * direction[n]) for n in deq.WEIGHTS), want, rtol=1e-6)


def _sizes(built):
    """Node count of the graph, and each loop's body size, sorted."""
    nodes = list(built.graph.nodes())
    return len(nodes), sorted(len(n.attrs["body"].nodes()) for n in nodes if n.op == "scan")


def test_the_graph_does_not_grow_with_the_iteration_count():
    few, many = deq.build_deq("float64", iterations=5), deq.build_deq("float64", iterations=5000)
    assert _sizes(few) == _sizes(many)
    assert len(_sizes(few)[1]) == 2, "one loop solves for z*, one for the adjoint u"
    trips = sorted(n.attrs["length"] for n in many.graph.nodes() if n.op == "scan")
    assert trips == [5000, 5000]


def test_a_tolerance_stops_the_loops_early_with_a_residual_within_it(problem, converged):
    weights, data = problem
    _, run = converged
    loose = deq.build_deq("float64", iterations=200, tol=1e-7)
    z, *grads = gk.compile(loose.graph, [loose.z, *loose.grads])(**weights, **data)
    residual = deq.residual(weights, data["x"], z)
    assert 0 < residual <= 1e-7, residual  # stopped early, once within the tolerance
    _, *exact = run(**weights, **data)
    for name, got, want in zip(deq.WEIGHTS, grads, exact):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.slow
def test_llvm_computes_what_the_numpy_executor_computes(problem):
    weights, data = problem
    built = deq.build_deq("float64", iterations=8, tol=1e-9)
    outputs = [built.loss, *built.grads]
    want = gk.compile(built.graph, outputs)(**weights, **data)
    got = gk.compile(built.graph, outputs, target="llvm")(**weights, **data)
    for name, ours, theirs in zip(("loss", *deq.WEIGHTS), want, got):
        np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-14, err_msg=name)
