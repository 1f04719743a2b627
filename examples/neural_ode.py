"""A neural ODE (Chen, Rubanova, Bettencourt and Duvenaud 2018) fitted to a spiral with
`gk.odeint(..., adjoint=True)`.

The data is torchdiffeq's demo spiral: y' = y**3 A, A = [[-0.1, 2], [-2, -0.1]], y(0) = (2, 0),
solved by scipy's solve_ivp at 400 times on [0, 10]. The model is y' = tanh(y**3 W1 + b1) W2:
a 2-16-2 network of y**3. Each training step takes 16 random windows of 10 consecutive
observations, integrates the model from each window's first point (one batch, one odeint: the
window's times relative to its start are the same for all), and takes the mean squared error
against the observations. The gradient comes from the adjoint method: the backward pass
integrates the augmented system [y, a, a_W] back in time, so its memory does not grow with the
number of solver steps. Adam, in numpy, applies it.

    python examples/neural_ode.py [--iterations 150] [--target llvm]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.integrate

import gradkiln as gk

TRUE_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
TIMES = np.linspace(0.0, 10.0, 400)
WINDOW, BATCH, HIDDEN = 10, 16, 16
SHAPES = {"w1": (2, HIDDEN), "b1": (HIDDEN,), "w2": (HIDDEN, 2)}


def spiral() -> np.ndarray:
    """The observed trajectory, (400, 2): the true system solved by scipy."""
    solution = scipy.integrate.solve_ivp(
        lambda t, y: (y**3) @ TRUE_A, (TIMES[0], TIMES[-1]), [2.0, 0.0], t_eval=TIMES, rtol=1e-10, atol=1e-10
    )
    return solution.y.T


def init_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w1": rng.normal(0, 0.1, SHAPES["w1"]),
        "b1": np.zeros(SHAPES["b1"]),
        "w2": rng.normal(0, 0.1, SHAPES["w2"]),
    }


def dynamics(y: gk.Tensor, t: gk.Tensor, w1: gk.Tensor, b1: gk.Tensor, w2: gk.Tensor) -> gk.Tensor:
    """The learned vector field: tanh(y**3 W1 + b1) W2 (autonomous: t is not read)."""
    return gk.tanh((y * y * y) @ w1 + b1) @ w2


def build(adjoint: bool = True, steps: int = 2, method: str = "rk4") -> tuple[gk.Graph, gk.Tensor, list[gk.Tensor]]:
    """The training graph: inputs y0 (N, 2) (each window's first point), targets (WINDOW, N, 2)
    and the weights; returns the graph, the loss and its gradient per weight (in SHAPES order)."""
    with gk.Graph("neural_ode") as g:
        y0 = gk.input("y0", ("N", 2), "float64")
        targets = gk.input("targets", (WINDOW, "N", 2), "float64")
        weights = [gk.input(name, shape, "float64") for name, shape in SHAPES.items()]
        ys = gk.odeint(dynamics, y0, TIMES[:WINDOW], weights, method=method, adjoint=adjoint, steps=steps)
        loss = gk.mean((ys - targets) ** 2)
        grads = gk.grad(loss, weights)
    return g, loss, grads


def windows(trajectory: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """The feeds of windows starting at `starts`: their first points and all their observations."""
    targets = np.stack([trajectory[starts + k] for k in range(WINDOW)])
    return {"y0": targets[0], "targets": targets}


def train(step: gk.Executable, weights: dict, trajectory: np.ndarray, iterations: int, lr: float) -> list[float]:
    """Adam (beta 0.9, 0.999) on random batches of windows; prints the loss every 25 steps."""
    rng = np.random.default_rng(1)
    moments = {name: (np.zeros_like(w), np.zeros_like(w)) for name, w in weights.items()}
    losses = []
    for i in range(1, iterations + 1):
        batch = windows(trajectory, rng.integers(0, len(trajectory) - WINDOW, BATCH))
        loss, *grads = step(**batch, **weights)
        for (name, w), g in zip(list(weights.items()), grads):
            m, v = moments[name]
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            moments[name] = m, v
            weights[name] = w - lr * (m / (1 - 0.9**i)) / (np.sqrt(v / (1 - 0.999**i)) + 1e-8)
        losses.append(float(loss))
        if i == 1 or i % 25 == 0:
            print(f"step {i:4d}  loss {loss:.5f}")
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--target", default="numpy", help="numpy or llvm")
    args = parser.parse_args()

    trajectory = spiral()
    weights = init_weights(np.random.default_rng(0))
    g, loss, grads = build(adjoint=True)
    start = time.perf_counter()
    step = gk.compile(g, [loss, *grads], target=args.target)
    print(f"{len(g)} nodes; compiled for {args.target} in {time.perf_counter() - start:.1f} s")
    held_out = windows(trajectory, np.arange(0, len(trajectory) - WINDOW, 13))
    before = float(step(**held_out, **weights)[0])
    start = time.perf_counter()
    losses = train(step, weights, trajectory, args.iterations, lr=0.01)
    print(f"{args.iterations} steps in {time.perf_counter() - start:.1f} s")
    after = float(step(**held_out, **weights)[0])
    print(f"held-out windows: loss {before:.5f} before training, {after:.5f} after")
    assert after < 0.2 * before and np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10]), "the fit did not improve"

    g_backprop, _, grads_backprop = build(adjoint=False)
    backprop = gk.compile(g_backprop, grads_backprop)(**held_out, **weights)
    adjoint = step(**held_out, **weights)[1:]
    worst = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(adjoint, backprop))
    print(f"adjoint vs backprop gradient at the trained weights: largest difference {worst:.1e} (relative)")
    assert worst < 1e-4


if __name__ == "__main__":
    main()
