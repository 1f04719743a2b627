"""A deep equilibrium model (DEQ, Bai, Kolter and Koltun 2019) trained on scikit-learn's digits.

The hidden state is not the output of a stack of layers but the fixed point of one layer:
z* = tanh(z* W + x U + b), read out linearly, logits = z* R + c. `gk.fixed_point` finds z* with
a `while_loop` (until no element of z changes by more than `tol`, at most `iterations` steps)
and differentiates it implicitly: the gradient solves (I - df/dz)^T u = dloss/dz* by a loop of
vector-Jacobian products at z*, so the gradient graph holds no unrolled iteration and does not
grow with the iteration counts. W = 0.9 V / ||V||_F keeps the layer a contraction (its spectral
norm is at most its Frobenius norm 0.9, and tanh is 1-Lipschitz), so the fixed point exists and
both loops converge. Minibatch gradient descent with momentum, in numpy, applies the gradients.

    python examples/deq.py [--target llvm] [--epochs 8]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

import gradkiln as gk
from gradkiln.demo import load_digits

FEATURES, HIDDEN, CLASSES = 64, 32, 10
BATCH = 256
RADIUS = 0.9  # the Frobenius norm of W: a bound on the layer's Lipschitz constant in z
WEIGHTS = ("v", "u", "b", "r", "c")


def init_weights(rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """V (the direction of W), the input injection U and b, and the read-out R and c."""
    return {
        "v": rng.normal(size=(HIDDEN, HIDDEN)).astype(dtype),
        "u": rng.normal(0, 1 / np.sqrt(FEATURES), (FEATURES, HIDDEN)).astype(dtype),
        "b": np.zeros(HIDDEN, dtype),
        "r": rng.normal(0, 1 / np.sqrt(HIDDEN), (HIDDEN, CLASSES)).astype(dtype),
        "c": np.zeros(CLASSES, dtype),
    }


def layer(z: gk.Tensor, w: gk.Tensor, injection: gk.Tensor) -> gk.Tensor:
    """The equilibrium layer f(z) = tanh(z W + x U + b), with x U + b computed once, outside the loop."""
    return gk.tanh(z @ w + injection)


@dataclass(frozen=True)
class DEQGraph:
    """The training graph: weights and data are inputs (fed by name), z* the equilibrium, the
    logits, the mean cross-entropy loss and its gradient for each weight (in `WEIGHTS` order)."""

    graph: gk.Graph
    weights: list[gk.Tensor]
    z: gk.Tensor
    logits: gk.Tensor
    loss: gk.Tensor
    grads: list[gk.Tensor]


def build_deq(dtype: str = "float32", iterations: int = 30, tol: float = 0.0) -> DEQGraph:
    """The DEQ over a batch of N examples (a symbolic dim): inputs `x` (N, 64) and `labels` (N,)."""
    with gk.Graph("deq") as g:
        x, labels = gk.input("x", ("N", FEATURES), dtype), gk.input("labels", ("N",), "int64")
        v, u, b, r, c = weights = [gk.input(name, shape, dtype) for name, shape in _shapes()]
        w = v * (RADIUS / gk.norm(v))
        z0 = gk.zeros(("N", HIDDEN), dtype)
        z = gk.fixed_point(layer, z0, [w, x @ u + b], iterations=iterations, tol=tol)
        logits = z @ r + c
        loss = gk.cross_entropy(logits, labels)
        grads = gk.grad(loss, weights)
    return DEQGraph(g, weights, z, logits, loss, grads)


def _shapes() -> list[tuple[str, tuple[int, ...]]]:
    shapes = [(HIDDEN, HIDDEN), (FEATURES, HIDDEN), (HIDDEN,), (HIDDEN, CLASSES), (CLASSES,)]
    return list(zip(WEIGHTS, shapes))


def residual(weights: dict[str, np.ndarray], x: np.ndarray, z: np.ndarray) -> float:
    """max |z - f(z)| in numpy: how far z is from the layer's fixed point."""
    w = RADIUS * weights["v"] / np.linalg.norm(weights["v"])
    return float(np.max(np.abs(z - np.tanh(z @ w + x @ weights["u"] + weights["b"]))))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def train(
    step: gk.Executable, weights: dict[str, np.ndarray], data: dict[str, np.ndarray], epochs: int, lr: float
) -> dict[str, np.ndarray]:
    """Minibatch gradient descent with momentum 0.9 (batches of `BATCH`); prints the mean loss per epoch."""
    velocity = {name: np.zeros_like(w) for name, w in weights.items()}
    rng = np.random.default_rng(1)
    for epoch in range(epochs):
        losses = []
        order = rng.permutation(len(data["labels"]))
        for start in range(0, len(order), BATCH):
            batch = {name: values[order[start : start + BATCH]] for name, values in data.items()}
            loss, *grads = step(**weights, **batch)
            for (name, w), g in zip(weights.items(), grads):
                velocity[name] = 0.9 * velocity[name] - lr * g
                weights[name] = w + velocity[name]
            losses.append(loss)
        print(f"epoch {epoch}  mean training loss {np.mean(losses):.4f}")
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="numpy", help="numpy or llvm")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    x_train, y_train, x_test, y_test = load_digits()
    train_data, test_data = {"x": x_train, "labels": y_train}, {"x": x_test, "labels": y_test}
    weights = init_weights(np.random.default_rng(0))
    start = time.perf_counter()
    deq = build_deq(iterations=30, tol=1e-5)
    step = gk.compile(deq.graph, [deq.loss, *deq.grads], target=args.target)
    evaluate = gk.compile(deq.graph, [deq.loss, deq.logits, deq.z], target=args.target)
    loops = [n for n in deq.graph.nodes() if n.op == "scan"]
    print(
        f"{len(list(deq.graph.nodes()))} nodes, {len(loops)} of them loops; compiled for {args.target} in "
        f"{time.perf_counter() - start:.1f} s"
    )

    def report(label: str) -> tuple[float, float]:
        loss, logits, z = evaluate(**weights, **test_data)
        correct = accuracy(logits, y_test)
        distance = residual(weights, x_test, z)
        print(f"{label}: test loss {loss:.4f}, test accuracy {correct:.3f}, max |z* - f(z*)| {distance:.1e}")
        return float(loss), correct

    loss_before, accuracy_before = report("before training")
    start = time.perf_counter()
    weights = train(step, weights, train_data, args.epochs, lr=0.2)
    print(f"{args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    loss_after, accuracy_after = report("after training ")
    assert loss_after < 0.2 * loss_before and accuracy_after > 0.9 > accuracy_before, (loss_after, accuracy_after)


if __name__ == "__main__":
    main()
