"""The main job: train an MLP on scikit-learn's handwritten digits with a TVM-compiled step.

It walks every layer once: build the forward graph, derive its gradient graph symbolically,
compile the training step for the CPU with TVM, train with SGD, export the training step to
ONNX, and render the forward and gradient graphs with Graphviz.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import gradkiln as gk
from gradkiln import onnx_io, viz
from gradkiln.symbolic import grad


@dataclass
class DemoResult:
    test_accuracy: float
    losses: list[float]
    compile_seconds: float
    train_seconds: float
    files: list[Path] = field(default_factory=list)


def load_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1797 8x8 digits that ship inside scikit-learn, scaled to [0, 1], split 80/20."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    x = (digits.data[order] / 16.0).astype(np.float32)
    y = digits.target[order].astype(np.int64)
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


def build_mlp(hidden: int = 64, seed: int = 0) -> tuple[gk.Graph, dict[str, gk.Tensor]]:
    """x[N,64] -> linear -> relu -> linear -> logits[N,10]; mean cross entropy on int labels."""
    rng = np.random.default_rng(seed)
    with gk.Graph("mlp") as graph:
        x = gk.input("x", ("N", 64))
        labels = gk.input("labels", ("N",), "int64")
        w1 = gk.param("w1", rng.normal(0, np.sqrt(2 / 64), (64, hidden)).astype(np.float32))
        b1 = gk.param("b1", np.zeros(hidden, np.float32))
        w2 = gk.param("w2", rng.normal(0, np.sqrt(1 / hidden), (hidden, 10)).astype(np.float32))
        b2 = gk.param("b2", np.zeros(10, np.float32))
        logits = gk.relu(x @ w1 + b1) @ w2 + b2
        loss = gk.cross_entropy(logits, labels)
    return graph, {"x": x, "labels": labels, "logits": logits, "loss": loss, "w1": w1, "b1": b1, "w2": w2, "b2": b2}


def run_demo(
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.1,
    target: str = "llvm",
    out_dir: str | Path = "gradkiln-demo",
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train, evaluate, export and render; returns the accuracy, losses, timings and files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = load_digits()
    graph, t = build_mlp()
    names = ["w1", "b1", "w2", "b2"]
    forward = graph.copy("mlp_forward")
    grads = grad(t["loss"], [t[n] for n in names])
    log(f"graph: {len(forward)} forward nodes, {len(graph) - len(forward)} gradient nodes")

    start = time.perf_counter()
    step = gk.compile(graph, [t["loss"], *grads], target=target)
    predict = gk.compile(graph, t["logits"], target=target)
    compile_seconds = time.perf_counter() - start
    log(f"compiled the training step for {target} in {compile_seconds:.2f} s")

    params = {n: graph.by_name(n).attrs["value"].copy() for n in names}
    rng = np.random.default_rng(1)
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(y_train))
        epoch_loss = []
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            loss, *g = step(x=x_train[batch], labels=y_train[batch], **params)
            for n, gn in zip(names, g):
                params[n] -= lr * gn
            epoch_loss.append(float(loss))
        accuracy = float(np.mean(predict(x=x_test, **params).argmax(1) == y_test))
        losses.append(float(np.mean(epoch_loss)))
        log(f"epoch {epoch:2d}  loss {losses[-1]:.4f}  test accuracy {accuracy:.3f}")
    train_seconds = time.perf_counter() - start

    suffix = ".svg" if shutil.which("dot") else ".dot"
    if suffix == ".dot":
        log("Graphviz `dot` not found: writing DOT files (apt-get install graphviz, or brew install graphviz, for SVG)")
    files = [
        viz.render(forward, out / f"forward{suffix}", outputs=[t["loss"]]),
        viz.render(graph, out / f"gradient{suffix}", outputs=[t["loss"], *grads]),
        out / "train_step.onnx",
    ]
    onnx_io.export(graph, {"loss": t["loss"], **{f"grad_{n}": g for n, g in zip(names, grads)}}, path=files[-1])
    log(f"trained {epochs} epochs in {train_seconds:.2f} s; wrote {', '.join(str(f) for f in files)}")
    return DemoResult(accuracy, losses, compile_seconds, train_seconds, [Path(f) for f in files])
