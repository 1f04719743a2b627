"""Time full training steps (issue 7's workloads) in gradkiln and its peers, in one run.

    python benchmarks/train_step.py [--repeats 30] [--rounds 3] [--workloads W1,W2,W3,W4]

W1: MLP batch 64, 784-512-512-10, ReLU, softmax cross entropy: the loss and every parameter gradient.
W2: CNN batch 16, 3x32x32 (three 3x3 convs, max pool, global average pool, linear), cross entropy.
W3: transformer block batch 8, seq 128, d_model 256, 4 heads, FFN 1024, layer norm, MSE loss.
    (W2 and W3 are defined in train_models.py, for gradkiln and PyTorch with the same parameters.)
W4: 50 chained elementwise ops (tanh, x*0.9, x+0.1, sin, cycled) on 1024x1024, sum loss, gradient
    w.r.t. x.

Runners: gradkiln on TVM with our CPU schedules, also after the O3 pipeline (elementwise fusion
into sympy-expression kernels), and without our schedules (TVM's default loop nests),
gradkiln's numpy executor, the hand-written numpy W1 step of mlp_step.py, PyTorch eager and JAX
jit(grad) when installed. float32, all cores. Columns: median step time, compile time (first
call included for JAX), and the scheduled gradkiln time divided by the runner's (< 1: gradkiln
is faster). Waits for an idle machine before each workload and prints the load average it saw;
the runners then take turns (`--rounds`), each turn after a pause that lets the previous
runner's thread pools stop spinning.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from typing import Any, Callable

import numpy as np
import train_models
from mlp_step import gradkiln_step, make_params, numpy_step, sample_ms, torch_step, wait_for_idle

import gradkiln as gk

Runner = Callable[[], "tuple[Callable[[], Any], float | None] | None"]  # -> (step, compile seconds) or None
W1_WIDTHS, W1_BATCH = [784, 512, 512, 10], 64
W4_SIZE, W4_OPS = 1024, 50
REFERENCE = "gradkiln tvm scheduled"
ROUND_SECONDS = 2.0  # a slow runner (TVM's default schedules) takes fewer steps per round


def optional(module: str) -> Any:
    """The module, or None when it is not installed (peers are optional)."""
    try:
        return __import__(module)
    except ImportError:
        return None


def timed_compile(build: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = build()
    return result, time.perf_counter() - start


def w1_runners(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray) -> dict[str, Runner]:
    def gradkiln(target: str, **options: Any) -> Runner:
        def make() -> tuple[Callable[[], Any], float]:
            step, seconds = gradkiln_step(W1_WIDTHS, params, target, **options)
            check(step(x=x, labels=labels), numpy_step(params, x, labels))
            return partial(step, x=x, labels=labels), seconds

        return make

    def torch_eager() -> tuple[Callable[[], Any], None] | None:
        step = torch_step(params)
        return (partial(step, x, labels), None) if step else None

    return {
        REFERENCE: gradkiln("llvm"),
        "gradkiln tvm O3 (fused)": gradkiln("llvm", optimize="O3"),
        "gradkiln tvm unscheduled": gradkiln("llvm", schedule=False),
        "gradkiln numpy executor": gradkiln("numpy"),
        "hand-written numpy": lambda: (partial(numpy_step, params, x, labels), None),
        "torch eager": torch_eager,
        "jax jit(grad)": lambda: jax_w1(params, x, labels),
    }


def check(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """A runner is only timed once its numbers agree with the reference."""
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-4)


def jax_w1(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray) -> tuple[Callable[[], Any], float] | None:
    jax = optional("jax")
    if jax is None:
        return None
    jnp, layers = jax.numpy, len(params) // 2

    def loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        h = x
        for i in range(layers):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            h = jax.nn.relu(h) if i < layers - 1 else h
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], axis=1))

    step = jax.jit(jax.value_and_grad(loss))
    run = partial(lambda *a: jax.block_until_ready(step(*a)), params, x, labels)
    return run, timed_compile(run)[1]


def model_runners(model: str, rng: np.random.Generator) -> dict[str, Runner]:
    """W2 or W3: gradkiln on TVM (with and without our schedules) and numpy, and PyTorch eager,
    all checked against gradkiln's numpy executor before they are timed."""
    params = getattr(train_models, f"{model.lower()}_params")(rng)
    inputs = getattr(train_models, f"{model.lower()}_inputs")(rng)
    graph, outputs = getattr(train_models, f"{model.lower()}_graph")(params)
    reference = gk.compile(graph, outputs, target="numpy")(**inputs)

    def gradkiln(target: str, **options: Any) -> Runner:
        def make() -> tuple[Callable[[], Any], float]:
            step, seconds = timed_compile(lambda: gk.compile(graph, outputs, target=target, **options))
            check(step(**inputs), reference)
            return partial(step, **inputs), seconds

        return make

    def torch_eager() -> tuple[Callable[[], Any], None] | None:
        step = train_models.torch_step(model, params, inputs)
        if step is None:
            return None
        check(step(), reference)
        return step, None

    return {
        REFERENCE: gradkiln("llvm"),
        "gradkiln tvm O3 (fused)": gradkiln("llvm", optimize="O3"),
        "gradkiln tvm unscheduled": gradkiln("llvm", schedule=False),
        "gradkiln numpy executor": gradkiln("numpy"),
        "torch eager": torch_eager,
    }


def w4_chain(x: Any, ops: Any) -> Any:
    """W4's forward chain for any array library (`ops` has tanh and sin): tanh, x*0.9, x+0.1, sin,
    cycled over W4_OPS ops."""
    steps = [ops.tanh, lambda v: v * 0.9, lambda v: v + 0.1, ops.sin]
    for i in range(W4_OPS):
        x = steps[i % len(steps)](x)
    return x


def w4_runners(x: np.ndarray) -> dict[str, Runner]:
    with gk.Graph("chain") as g:
        xs = gk.input("x", x.shape)
        dx = gk.grad(gk.sum(w4_chain(xs, gk)), [xs])[0]

    reference = gk.compile(g, dx, target="numpy")(x=x)

    def gradkiln(target: str, **options: Any) -> Runner:
        def make() -> tuple[Callable[[], Any], float]:
            step, seconds = timed_compile(lambda: gk.compile(g, dx, target=target, **options))
            check([step(x=x)], [reference])
            return partial(step, x=x), seconds

        return make

    return {
        REFERENCE: gradkiln("llvm"),
        "gradkiln tvm O3 (fused)": gradkiln("llvm", optimize="O3"),
        "gradkiln tvm unscheduled": gradkiln("llvm", schedule=False),
        "gradkiln numpy executor": gradkiln("numpy"),
        "torch eager": lambda: torch_w4(x),
        "jax jit(grad)": lambda: jax_w4(x),
    }


def torch_w4(x: np.ndarray) -> tuple[Callable[[], Any], None] | None:
    torch = optional("torch")
    if torch is None:
        return None

    def step() -> Any:
        xt = torch.from_numpy(x).requires_grad_(True)
        return torch.autograd.grad(w4_chain(xt, torch).sum(), [xt])

    return step, None


def jax_w4(x: np.ndarray) -> tuple[Callable[[], Any], float] | None:
    jax = optional("jax")
    if jax is None:
        return None
    step = jax.jit(jax.grad(lambda v: w4_chain(v, jax.numpy).sum()))
    run = partial(lambda v: jax.block_until_ready(step(v)), x)
    return run, timed_compile(run)[1]


def measure(workload: str, runners: dict[str, Runner], repeats: int, rounds: int) -> None:
    """Wait for idle, build every available runner, then time them in turns, `rounds` times
    (`repeats` steps each, or as many as fit in ROUND_SECONDS), so that a passing load on the
    shared machine spreads over all runners; print one row each with the median of all steps."""
    print(f"{workload}: load average {wait_for_idle():.2f} before measuring")
    built = {}
    for name, make in runners.items():
        made = make()
        if made is None:
            print(f"  {name:26} not installed")
            continue
        built[name] = made
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (step, _) in built.items():
            times[name] += sample_ms(step, repeats, ROUND_SECONDS)
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    for name, (_, seconds) in built.items():
        compile_text = f"{seconds:10.2f}" if seconds is not None else f"{'-':>10}"
        print(f"  {name:26} {medians[name]:10.3f} {compile_text} {medians[REFERENCE] / medians[name]:12.2f}")
    print(f"  (load average after: {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="steps per runner and round")
    parser.add_argument("--rounds", type=int, default=3, help="turns of all runners")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    args = parser.parse_args()
    chosen = args.workloads.split(",")
    rng = np.random.default_rng(1)
    threads = os.environ.get("TVM_NUM_THREADS", f"{os.cpu_count()} (all cores)")
    print(f"{os.cpu_count()} cores, TVM_NUM_THREADS={threads}, median of {args.rounds} rounds of {args.repeats} steps")
    print(f"  {'runner':26} {'median ms':>10} {'compile s':>10} {'sched/runner':>12}")
    if "W1" in chosen:
        x = rng.normal(size=(W1_BATCH, W1_WIDTHS[0])).astype(np.float32)
        labels = rng.integers(0, W1_WIDTHS[-1], size=W1_BATCH)
        measure(
            "W1 MLP batch 64, 784-512-512-10", w1_runners(make_params(W1_WIDTHS), x, labels), args.repeats, args.rounds
        )
    if "W2" in chosen:
        measure("W2 CNN batch 16, 3x32x32", model_runners("W2", rng), args.repeats, args.rounds)
    if "W3" in chosen:
        measure(
            "W3 transformer block batch 8, seq 128, d_model 256", model_runners("W3", rng), args.repeats, args.rounds
        )
    if "W4" in chosen:
        x = rng.normal(size=(W4_SIZE, W4_SIZE)).astype(np.float32)
        label = f"W4 {W4_OPS} elementwise ops (tanh, *0.9, +0.1, sin) on {W4_SIZE}x{W4_SIZE}"
        measure(label, w4_runners(x), args.repeats, args.rounds)


if __name__ == "__main__":
    main()
