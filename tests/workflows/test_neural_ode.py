"""examples/neural_ode.py: the neural ODE's loss and gradients equal torch.autograd's through the
same classical Runge-Kutta steps written in torch (float64): exactly (to rounding) for backprop
through the solver, to the solver's error for the adjoint method (rk4 and adaptive dopri5, which
integrate the adjoint system on steps of their own)."""

import itertools

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.testing.examples import load_example

torch = pytest.importorskip("torch")


neural_ode = load_example("neural_ode")


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    weights = neural_ode.init_weights(rng)
    weights = {name: w + 0.5 * rng.normal(size=w.shape) for name, w in weights.items()}  # a non-trivial field
    feeds = neural_ode.windows(neural_ode.spiral(), np.array([0, 40, 90, 200, 333]))
    return weights, feeds


def torch_rk4(f, y0, times, steps):
    """Classical Runge-Kutta, `steps` equal steps per interval of `times`, in torch."""
    ys, y = [y0], y0
    for t0, t1 in itertools.pairwise(times):
        h = (t1 - t0) / steps
        for k in range(steps):
            tau = t0 + k * h
            k1 = f(y, tau)
            k2 = f(y + h / 2 * k1, tau + h / 2)
            k3 = f(y + h / 2 * k2, tau + h / 2)
            k4 = f(y + h * k3, tau + h)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
    return torch.stack(ys)


def torch_loss_and_grads(weights, feeds, steps):
    w = {name: torch.tensor(value, requires_grad=True) for name, value in weights.items()}

    def field(y, t):
        return torch.tanh((y**3) @ w["w1"] + w["b1"]) @ w["w2"]

    ys = torch_rk4(field, torch.tensor(feeds["y0"]), neural_ode.TIMES[: neural_ode.WINDOW], steps)
    loss = torch.mean((ys - torch.tensor(feeds["targets"])) ** 2)
    loss.backward()
    return loss.item(), [w[name].grad.numpy() for name in neural_ode.SHAPES]


@pytest.mark.parametrize(
    "adjoint, method, rtol",
    [(False, "rk4", 1e-12), (True, "rk4", 1e-6), (True, "dopri5", 1e-8)],
    ids=["backprop-rk4", "adjoint-rk4", "adjoint-dopri5"],
)
def test_gradients_equal_torch_autograd_through_rk4(problem, adjoint, method, rtol):
    weights, feeds = problem
    g, loss, grads = neural_ode.build(adjoint=adjoint, steps=2, method=method)
    got_loss, *got = gk.compile(g, [loss, *grads])(**feeds, **weights)
    want_loss, want = torch_loss_and_grads(weights, feeds, steps=2 if method == "rk4" else 16)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12 if method == "rk4" else 1e-9)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
