"""Model-agnostic meta-learning (MAML, Finn et al. 2017) on sine-wave regression.

Each task is a sine wave a * sin(x - phase), amplitude a in [0.1, 5], phase in [0, pi], x in
[-5, 5]. A 1-40-40-1 ReLU network adapts to a task by a few SGD steps on K support points; MAML
trains its initial weights so that the adapted network fits the task's query points. The inner
SGD steps are graph nodes: `gk.grad` of the support loss, then `w - lr * g`. The query loss of
the adapted weights is `gk.vmap`-ed over a meta-batch of tasks and differentiated once more with
respect to the initial weights: the meta-gradient differentiates through the inner gradients
(second order). First-order MAML puts `gk.stop_gradient` on the inner gradients. One compiled
graph gives the meta-loss and the meta-gradient; Adam in numpy applies it.

    python examples/maml.py [--first-order] [--target llvm]
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import gradkiln as gk

LAYERS = (1, 40, 40, 1)
TASKS, SHOTS, QUERIES, INNER_LR = 25, 10, 10, 0.01  # meta-batch size, K, query points, inner SGD step


TASK_INPUTS = ("x_support", "y_support", "x_query", "y_query")  # each of shape (T, points, 1)


def sample_tasks(rng: np.random.Generator, tasks: int, shots: int, queries: int, dtype=np.float32):
    """`tasks` sine waves drawn as in Finn et al., with `shots` support and `queries` query
    points each: a dict of arrays named as MAML's graph inputs, `TASK_INPUTS`."""
    amplitude = rng.uniform(0.1, 5.0, (tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, (tasks, 1, 1))
    x = rng.uniform(-5.0, 5.0, (tasks, shots + queries, 1))
    y = amplitude * np.sin(x - phase)
    x, y = x.astype(dtype), y.astype(dtype)
    return dict(zip(TASK_INPUTS, (x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])))


def init_weights(rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """Weights uniform in +-1/sqrt(fan_in) (torch.nn.Linear's bound) and zero biases, named
    `w0, b0, w1, b1, ...` (w_i has shape (in, out))."""
    weights = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(LAYERS)):
        bound = 1.0 / np.sqrt(fan_in)
        weights[f"w{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype)
        weights[f"b{i}"] = np.zeros(fan_out, dtype)
    return weights


def mlp(weights: list[gk.Tensor], x: gk.Tensor) -> gk.Tensor:
    """The network: (w0, b0, w1, b1, ...) applied to x of shape (N, 1), ReLU between layers."""
    h = x
    for i in range(0, len(weights), 2):
        h = h @ weights[i] + weights[i + 1]
        if i + 2 < len(weights):
            h = gk.relu(h)
    return h


def adapt(weights: list[gk.Tensor], x: gk.Tensor, y: gk.Tensor, steps: int, lr: float, first_order: bool):
    """`steps` SGD steps on the loss at (x, y), as graph nodes. Second order keeps the inner
    gradients differentiable; first order makes them constants to the outer gradient."""
    for _ in range(steps):
        grads = gk.grad(gk.mse_loss(mlp(weights, x), y), weights)
        if first_order:
            grads = [gk.stop_gradient(g) for g in grads]
        weights = [w - lr * g for w, g in zip(weights, grads)]
    return weights


@dataclass(frozen=True)
class MAMLGraph:
    """The meta-training graph and the tensors to compile: the mean query loss over the tasks
    before and after adaptation, and the meta-gradient of the latter for every weight."""

    graph: gk.Graph
    loss_before: gk.Tensor
    loss_after: gk.Tensor
    meta_grads: list[gk.Tensor]


def build_maml(
    weights: dict[str, np.ndarray],
    shots: int,
    queries: int,
    steps: int = 1,
    inner_lr: float = 0.01,
    first_order: bool = False,
) -> MAMLGraph:
    """MAML's graph: the weights are params (fed by name to update them), a meta-batch of T tasks
    the inputs `TASK_INPUTS` (T is a symbolic dim). One task's adaptation is built over per-task
    inputs and `gk.vmap` batches it over the meta-batch."""
    dtype = next(iter(weights.values())).dtype
    with gk.Graph("maml") as g:
        params = [gk.param(name, value) for name, value in weights.items()]
        sizes = (shots, shots, queries, queries)
        one_task = [gk.input(f"one_{name}", (n, 1), dtype) for name, n in zip(TASK_INPUTS, sizes)]
        batched = [gk.input(name, ("T", n, 1), dtype) for name, n in zip(TASK_INPUTS, sizes)]
        x_s, y_s, x_q, y_q = one_task
        adapted = adapt(params, x_s, y_s, steps, inner_lr, first_order)
        before, after = gk.vmap(
            [gk.mse_loss(mlp(params, x_q), y_q), gk.mse_loss(mlp(adapted, x_q), y_q)], one_task, batched
        )
        loss_before, loss_after = gk.mean(before), gk.mean(after)
        meta_grads = gk.grad(loss_after, params)
    return MAMLGraph(g, loss_before, loss_after, meta_grads)


class Adam:
    """Adam (Kingma and Ba) on a dict of numpy arrays."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, weights: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.t += 1
        new = {}
        for name, g in grads.items():
            self.m[name] = self.beta1 * self.m.get(name, 0.0) + (1 - self.beta1) * g
            self.v[name] = self.beta2 * self.v.get(name, 0.0) + (1 - self.beta2) * g * g
            m_hat = self.m[name] / (1 - self.beta1**self.t)
            v_hat = self.v[name] / (1 - self.beta2**self.t)
            new[name] = (weights[name] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(weights[name].dtype)
        return new


def meta_train(
    train_step: Callable[..., list[np.ndarray]],
    weights: dict[str, np.ndarray],
    rng: np.random.Generator,
    iterations: int,
) -> dict[str, np.ndarray]:
    """`iterations` Adam steps on the meta-gradient, each on a new meta-batch of tasks."""
    adam = Adam(lr=2e-3)
    for i in range(iterations):
        loss, *grads = train_step(**weights, **sample_tasks(rng, TASKS, SHOTS, QUERIES))
        weights = adam.step(weights, dict(zip(weights, grads)))
        if i % 250 == 0:
            print(f"meta-step {i:5d}  query loss after 1 step {loss:.3f}")
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-order", action="store_true", help="first-order MAML (no second derivatives)")
    parser.add_argument("--target", default="numpy", help="numpy or llvm")
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    weights = init_weights(rng)
    start = time.perf_counter()
    maml = build_maml(weights, SHOTS, QUERIES, steps=1, inner_lr=INNER_LR, first_order=args.first_order)
    train_step = gk.compile(maml.graph, [maml.loss_after, *maml.meta_grads], target=args.target)
    one_step = gk.compile(maml.graph, [maml.loss_before, maml.loss_after], target=args.target)
    ten = build_maml(weights, SHOTS, QUERIES, steps=10, inner_lr=INNER_LR)
    ten_steps = gk.compile(ten.graph, ten.loss_after, target=args.target)
    print(f"built and compiled for {args.target} in {time.perf_counter() - start:.1f} s")

    held_out = sample_tasks(np.random.default_rng(1), 200, SHOTS, QUERIES)

    def evaluate(weights: dict[str, np.ndarray]) -> list[float]:
        """The mean query loss on the held-out tasks: not adapted, after one and ten SGD steps."""
        before, after_one = one_step(**weights, **held_out)
        return [float(before), float(after_one), float(ten_steps(**weights, **held_out))]

    initial = evaluate(weights)
    start = time.perf_counter()
    weights = meta_train(train_step, weights, rng, args.iterations)
    print(f"{args.iterations} meta-steps in {time.perf_counter() - start:.1f} s")
    trained = evaluate(weights)
    print("mean query loss on 200 held-out tasks   not adapted   1 SGD step   10 SGD steps")
    for label, losses in (("initial weights", initial), ("meta-trained weights", trained)):
        print(f"  {label:36s}  {losses[0]:11.3f}  {losses[1]:11.3f}  {losses[2]:13.3f}")
    assert trained[1] < 0.5 * initial[1] and trained[2] < 0.5 * initial[2], (initial, trained)


if __name__ == "__main__":
    main()
