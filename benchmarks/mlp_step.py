"""Time one MLP training step (forward, loss, all parameter gradients) in gradkiln and its peers.

    python benchmarks/mlp_step.py [--repeats 50]

Prints median step times and ratios to the hand-written numpy step for: gradkiln's numpy
executor, gradkiln compiled with TVM for the CPU, and PyTorch eager when it is installed.
Waits for an idle machine first (a busy second core distorts 2-thread timings badly).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from itertools import pairwise

import numpy as np

import gradkiln as gk

SIZES = {"digits-demo 64-64-10 batch 32": (32, [64, 64, 10]), "W1 784-512-512-10 batch 64": (64, [784, 512, 512, 10])}


def wait_for_idle(threshold: float = 0.3, timeout: float = 120.0) -> float:
    start = time.time()
    while os.getloadavg()[0] > threshold and time.time() - start < timeout:
        time.sleep(2)
    return os.getloadavg()[0]


def make_params(widths: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(pairwise(widths)):
        params[f"w{i}"] = rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32)
        params[f"b{i}"] = np.zeros(b, np.float32)
    return params


def gradkiln_step(widths: list[int], params: dict[str, np.ndarray], target: str, **options):
    """The compiled training step (loss, then every parameter gradient) and its compile time in s."""
    with gk.Graph("mlp") as g:
        h = gk.input("x", ("N", widths[0]))
        labels = gk.input("labels", ("N",), "int64")
        tensors = {name: gk.param(name, value) for name, value in params.items()}
        for i in range(len(widths) - 1):
            h = h @ tensors[f"w{i}"] + tensors[f"b{i}"]
            h = gk.relu(h) if i < len(widths) - 2 else h
        loss = gk.cross_entropy(h, labels)
        grads = gk.grad(loss, list(tensors.values()))
    start = time.perf_counter()
    step = gk.compile(g, [loss, *grads], target=target, **options)
    return step, time.perf_counter() - start


def numpy_step(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The hand-written floor: forward, softmax cross entropy and backward in plain numpy."""
    layers = len(params) // 2
    acts = [x]
    for i in range(layers):
        z = acts[-1] @ params[f"w{i}"] + params[f"b{i}"]
        acts.append(np.maximum(z, 0) if i < layers - 1 else z)
    logits = acts[-1]
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = -log_p[np.arange(len(labels)), labels].mean()
    g = np.exp(log_p)
    g[np.arange(len(labels)), labels] -= 1
    g /= len(labels)
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(layers)):
        grads[f"w{i}"], grads[f"b{i}"] = acts[i].T @ g, g.sum(0)
        g = (g @ params[f"w{i}"].T) * (acts[i] > 0) if i else g
    return [loss, *(grads[name] for name in params)]


def torch_step(params: dict[str, np.ndarray]):
    try:
        import torch
    except ImportError:
        return None
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    layers = len(params) // 2

    def step(x: np.ndarray, labels: np.ndarray) -> None:
        h = torch.from_numpy(x)
        for i in range(layers):
            h = h @ tensors[f"w{i}"] + tensors[f"b{i}"]
            h = torch.relu(h) if i < layers - 1 else h
        loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(labels))
        torch.autograd.grad(loss, list(tensors.values()))

    return step


SETTLE_SECONDS = 0.5  # thread pools (OpenBLAS, OpenMP, TVM) spin ~0.1-0.2 s after their last call


def sample_ms(fn, repeats: int, max_seconds: float = float("inf")) -> list[float]:
    """Wall times of `repeats` calls of `fn` in ms (fewer, but at least 3, once `max_seconds` have
    passed), after one warm-up call. It first waits for the thread pools of whatever ran before to
    stop spinning: on 2 cores one spinning worker halves a 2-thread runner (a TVM step measured
    right after numpy's ran at 1.33 or 2.5 ms, depending)."""
    time.sleep(SETTLE_SECONDS)
    fn()
    times, begin = [], time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - begin < max_seconds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(fn, repeats: int) -> float:
    """The median of `sample_ms`."""
    return statistics.median(sample_ms(fn, repeats))


def measure(label: str, batch: int, widths: list[int], repeats: int) -> None:
    """Time every runner on one workload (checking gradkiln against the numpy floor first)."""
    params = make_params(widths)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, widths[0])).astype(np.float32)
    labels = rng.integers(0, widths[-1], size=batch)
    reference = numpy_step(params, x, labels)
    floor = median_ms(partial(numpy_step, params, x, labels), repeats)
    rows = [("hand-written numpy", floor, None)]
    for target in ("numpy", "llvm"):
        step, seconds = gradkiln_step(widths, params, target)
        for got, want in zip(step(x=x, labels=labels), reference):
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
        rows.append((f"gradkiln {target}", median_ms(partial(step, x=x, labels=labels), repeats), seconds))
    torch_fn = torch_step(params)
    if torch_fn is not None:
        rows.append(("torch eager", median_ms(partial(torch_fn, x, labels), repeats), None))
    for runner, ms, seconds in rows:
        compile_text = f"{seconds:10.2f}" if seconds is not None else f"{'-':>10}"
        print(f"{label:32} {runner:18} {ms:10.3f} {ms / floor:8.2f}x {compile_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"load average before measuring: {wait_for_idle():.2f}; TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')}")
    print(f"{'workload':32} {'runner':18} {'median ms':>10} {'vs numpy':>9} {'compile s':>10}")
    for label, (batch, widths) in SIZES.items():
        measure(label, batch, widths, args.repeats)


if __name__ == "__main__":
    main()
